"""Evaluator ``python``: a user's function in a file next to the study.

``{python: {function: "beam:evaluate"}}`` loads ``beam.py`` from the study's folder and calls
``evaluate(**inputs) -> dict`` once per trial; with ``batch: true`` it calls ``evaluate(dataset)`` once per
batch and expects a dataset with one value per trial for each output. The module is a dotted name under the
study's folder (``models.plate``) or a file path relative to it (``../shared/model``, ``models/plate.py``).
While it loads and runs, its own folder and the study's folder are on the import path, so ``import helper``
finds ``helper.py`` next to it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path

import reflow
from pydantic import Field, field_validator
from reflow.components import Variable
from reflow.errors import UserInputError

_cache: dict[tuple[str, str], object] = {}
_path_lock = threading.Lock()
_path_users: dict[str, int] = {}


@contextlib.contextmanager
def import_path(folders: tuple[str, ...]) -> Iterator[None]:
    """``folders`` at the front of ``sys.path`` while the user's module loads or runs, then taken out again.

    Why: ``import helper`` in the user's module finds ``helper.py`` next to it (or next to the study) without
    leaving the study's folder on the import path of the whole process. Reference-counted, so trials running
    in threads at once do not take a folder out from under each other.
    """
    added: list[str] = []
    with _path_lock:
        for folder in folders:
            if _path_users.get(folder, 0) == 0 and folder in sys.path:
                continue  # already on the path for its own reasons: leave it alone
            _path_users[folder] = _path_users.get(folder, 0) + 1
            if _path_users[folder] == 1:
                sys.path.insert(0, folder)
            added.append(folder)
    try:
        yield
    finally:
        with _path_lock:
            for folder in added:
                _path_users[folder] -= 1
                if _path_users[folder] == 0:
                    del _path_users[folder]
                    with contextlib.suppress(ValueError):
                        sys.path.remove(folder)


def module_file(module: str) -> Path:
    """The file a ``module`` reference names, relative to the study's folder unless absolute.

    A path (``../shared/model``, ``models/plate.py``, ``~/lib/beam``) is a file path, ``.py`` added when
    missing; a dotted name (``models.plate``) is a module path under the study's folder.
    """
    if module.endswith(".py") or "/" in module or "\\" in module or module.startswith((".", "~")):
        return Path(module if module.endswith(".py") else module + ".py")
    return Path(module.replace(".", "/") + ".py")


def _folders(path: Path, study_dir: str | None) -> tuple[str, ...]:
    folders = [str(path.parent)]
    if study_dir and study_dir not in folders:
        folders.append(study_dir)
    return tuple(folders)


def load_function(module_path: str, function: str, study_dir: str | None = None):
    """Import ``function`` from the file ``module_path`` (cached per process, so workers import once).

    The module's folder and the study's folder are on the import path while it loads, so its own imports of
    modules next to it work.
    """
    key = (module_path, function)
    if key not in _cache:
        path = Path(module_path)
        if not path.is_file():
            where = f" (relative paths start at the study's folder {study_dir})" if study_dir else ""
            raise UserInputError(f"python: module file not found: {path}{where}; the module is looked up "
                                 "next to the study file")
        name = f"reflow_user_{path.stem}_{abs(hash(str(path)))}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            with import_path(_folders(path, study_dir)):
                spec.loader.exec_module(module)
        except Exception as exc:  # any error in the user's module is reported as such, not as a traceback
            sys.modules.pop(name, None)
            frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<frozen")]
            at = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
            raise UserInputError(f"python: importing {path} failed: {type(exc).__name__}: {exc}{at}") from None
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
        self._study_dir: str | None = None

    def output_variables(self):
        return tuple(Variable(n, self.params.units.get(n, "")) for n in self.params.outputs)

    @property
    def is_batch(self) -> bool:
        return self.params.batch

    def setup(self, ctx):
        module, _, fn = self.params.function.rpartition(":")
        self._module_path = str(ctx.resolve_path(module_file(module)))
        self._study_dir = str(ctx.study_dir)
        load_function(self._module_path, fn, self._study_dir)  # fail now, with a clear error, not in every trial

    def _fn(self):
        if self._module_path is None:
            raise UserInputError("python evaluator used before setup(ctx)")
        return load_function(self._module_path, self.params.function.rpartition(":")[2], self._study_dir)

    def _folders(self) -> tuple[str, ...]:
        return _folders(Path(self._module_path), self._study_dir)

    def source_function(self):
        """The user's function: a bad output it returns (NaN, a missing name) is reported at its file and line."""
        return self._fn()

    def evaluate_one(self, inputs):
        fn = self._fn()
        params = inspect.signature(fn).parameters
        if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
            inputs = {k: v for k, v in inputs.items() if k in params}
        with import_path(self._folders()):  # imports made inside the function find the same modules
            return fn(**inputs)

    def evaluate(self, designs, ctx):
        if not self.params.batch:
            return super().evaluate(designs, ctx)
        fn = self._fn()
        with import_path(self._folders()):
            return fn(designs)
