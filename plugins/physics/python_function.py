"""Evaluator ``python``: a user's function in a file next to the study.

``{python: {function: "beam:evaluate"}}`` loads ``beam.py`` from the study's folder and calls
``evaluate(**inputs) -> dict`` once per trial; with ``batch: true`` it calls ``evaluate(dataset)`` once per
batch and expects a dataset with one value per trial for each output.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

import reflow
from pydantic import Field, field_validator
from reflow.components import Variable
from reflow.errors import UserInputError

_cache: dict[tuple[str, str], object] = {}


def load_function(module_path: str, function: str):
    """Import ``function`` from the file ``module_path`` (cached per process, so workers import once)."""
    key = (module_path, function)
    if key not in _cache:
        path = Path(module_path)
        if not path.is_file():
            raise UserInputError(f"python: no file {path} (the module is looked up next to the study file)")
        name = f"reflow_user_{path.stem}_{abs(hash(str(path)))}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        fn = getattr(module, function, None)
        if not callable(fn):
            raise UserInputError(f"python: {path.name} has no function {function!r}")
        _cache[key] = fn
    return _cache[key]


class PythonEvaluator(reflow.Evaluator):
    """Call a Python function from a file next to the study, per trial or per batch."""

    accepts_any_inputs = True

    class Params(reflow.Params):
        function: str = Field(description="'module:function'; module.py sits next to the study (or a path)")
        batch: bool = Field(False, description="call once per batch with a Dataset instead of per trial")
        outputs: list[str] = Field(default_factory=list, description="output names (checked on every trial)")
        units: dict[str, str] = Field(default_factory=dict, description="units of the outputs")

        @field_validator("function")
        @classmethod
        def _ref(cls, v: str) -> str:
            module, sep, fn = v.rpartition(":")
            if not sep or not module or not fn.isidentifier():
                raise ValueError(f"write it as 'module:function' (like 'beam:evaluate'), got {v!r}")
            return v

    def __init__(self, params=None, **kwargs):
        super().__init__(params, **kwargs)
        self._module_path: str | None = None

    def output_variables(self):
        return tuple(Variable(n, self.params.units.get(n, "")) for n in self.params.outputs)

    @property
    def is_batch(self) -> bool:
        return self.params.batch

    def setup(self, ctx):
        module, _, fn = self.params.function.rpartition(":")
        path = Path(module if module.endswith(".py") else module.replace(".", "/") + ".py")
        self._module_path = str(ctx.resolve_path(path))
        load_function(self._module_path, fn)  # fail now, with a clear error, not in every trial

    def _fn(self):
        if self._module_path is None:
            raise UserInputError("python evaluator used before setup(ctx)")
        return load_function(self._module_path, self.params.function.rpartition(":")[2])

    def evaluate_one(self, inputs):
        fn = self._fn()
        params = inspect.signature(fn).parameters
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            inputs = {k: v for k, v in inputs.items() if k in params}
        return fn(**inputs)

    def evaluate(self, designs, ctx):
        if not self.params.batch:
            return super().evaluate(designs, ctx)
        return self._fn()(designs)
