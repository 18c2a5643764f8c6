"""Contract checks for components: ``check_component(cls)`` runs the same checks on a plugin's component
that every built-in one passes in reflow's CI (like scikit-learn's ``check_estimator``).

In a plugin's test suite::

    from reflow.testing import check_component

    def test_contract(tmp_path):
        check_component(MyEvaluator, tmp_path=tmp_path)
        check_component(MyModel, data=my_small_dataset, features=["x"], targets=["y"], tmp_path=tmp_path)

Each check raises ``AssertionError`` with a message saying which rule the component broke.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ValidationError
from reflow.components import MODEL_FAMILIES, DataSource, Design, Evaluator, Model, Optimizer, Task, Variable
from reflow.context import RunContext


class _NoRun:
    """Stands in for a run in checks that need none."""

    executor = None

    def hook(self, *args: Any, **kwargs: Any) -> None:
        return None


def test_context(folder: Path, seed: int = 0) -> RunContext:
    """A RunContext for unit tests: CPU, quiet, in-process executor, folder as stage and study folder."""
    from reflow.executors import InProcessExecutor

    run = _NoRun()
    run.executor = InProcessExecutor()
    return RunContext(run=run, stage="check", seed=seed, device="cpu", folder=Path(folder), study_dir=Path(folder),
                      quiet=True)


test_context.__test__ = False  # not a pytest test


def check_component(cls: type, params: dict[str, Any] | None = None, *, tmp_path: Path | None = None,
                    data: Any = None, features: list[str] | None = None, targets: list[str] | None = None,
                    space: Any = None) -> None:
    """Run every contract check that applies to ``cls``; raise AssertionError on the first broken rule."""
    folder = Path(tmp_path) if tmp_path is not None else Path(tempfile.mkdtemp(prefix="reflow-check-"))
    instance = check_params(cls, params)
    if isinstance(instance, Evaluator):
        check_evaluator(instance, folder)
    elif isinstance(instance, Model):
        if data is None or not features or not targets:
            raise ValueError("checking a Model needs data, features and targets")
        check_model(instance, data, features, targets, folder)
    elif isinstance(instance, Design):
        check_design(instance, space)
    elif isinstance(instance, Task):
        assert instance.outputs and all(isinstance(o, str) for o in instance.outputs), \
            f"{cls.__name__}.outputs must name at least one output"
    elif isinstance(instance, DataSource):
        ds = instance.load(test_context(folder))
        _assert_dataset(ds, f"{cls.__name__}.load")
    elif not isinstance(instance, Optimizer):
        raise AssertionError(f"{cls.__name__} is not a reflow component")


def check_params(cls: type, params: dict[str, Any] | None = None) -> Any:
    """Params is a pydantic model that rejects unknown keys and round-trips through JSON."""
    assert isinstance(getattr(cls, "Params", None), type) and issubclass(cls.Params, BaseModel), \
        f"{cls.__name__}.Params must be a pydantic model (subclass reflow.Params)"
    validated = cls.Params(**(params or {}))
    try:
        cls.Params(**{**(params or {}), "__no_such_param__": 1})
    except ValidationError:
        pass
    else:
        raise AssertionError(f"{cls.__name__}.Params accepts unknown keys; derive it from reflow.Params")
    again = cls.Params(**validated.model_dump(mode="json"))
    assert again == validated, f"{cls.__name__}.Params does not round-trip through JSON"
    for name, field in cls.Params.model_fields.items():
        assert field.description, f"{cls.__name__}.Params.{name} has no description (shown by `reflow plugins show`)"
    return cls(validated)


def check_evaluator(evaluator: Evaluator, folder: Path) -> None:
    """Declared variables are well formed; a trial at the defaults succeeds; a poisoned one fails cleanly."""
    from reflow.evaluation import evaluate_trials

    name = type(evaluator).__name__
    inputs, outputs = evaluator.input_variables(), evaluator.output_variables()
    for group in (inputs, outputs):
        names = [v.name for v in group]
        assert all(isinstance(v, Variable) for v in group), f"{name}: inputs/outputs must be reflow.Variable"
        assert len(set(names)) == len(names), f"{name}: duplicate variable names {names}"
    if evaluator.accepts_any_inputs:
        return
    assert outputs, f"{name} declares no outputs"
    missing_default = [v.name for v in inputs if v.default is None]
    ctx = test_context(folder)
    evaluator.setup(ctx)
    row = {v.name: v.default for v in inputs}
    if missing_default:
        row.update({v.name: (v.low + v.high) / 2 for v in inputs
                    if v.default is None and v.low is not None and v.high is not None})
    records = evaluate_trials(evaluator, [(0, row)], ctx)
    assert records[0]["status"] == "ok", f"{name} failed at its default inputs: {records[0]['error']}"
    for v in outputs:
        value = records[0]["outputs"][v.name]
        assert isinstance(value, str) or math.isfinite(value), f"{name}: output {v.name} is {value}"
    numeric = [v.name for v in inputs if isinstance(row.get(v.name), (int, float))]
    if numeric:
        poisoned = {**row, numeric[0]: float("nan")}
        rec = evaluate_trials(evaluator, [(1, poisoned)], ctx)[0]
        assert rec["status"] in ("ok", "failed"), f"{name}: a NaN input must fail the trial, not the study"


def check_model(model: Model, data: Any, features: list[str], targets: list[str], folder: Path) -> None:
    """fit returns self, fitted state ends in '_', predict gives <target>_mean (a detector: <target>_pred, the
    per-image label), save/load round-trips."""
    name = type(model).__name__
    assert model.family in MODEL_FAMILIES, f"{name}.family must be one of {MODEL_FAMILIES}"
    ctx = test_context(folder)
    before = set(vars(model))
    fitted = model.configure(features, targets).fit(data, ctx)
    assert fitted is model, f"{name}.fit must return self"
    new = [k for k in set(vars(model)) - before if not k.startswith("_")]
    bad = [k for k in new if not k.endswith("_")]
    assert not bad, f"{name}: state set by fit must end in '_' (scikit-learn rule): {bad}"
    pred = model.predict(data, ctx)
    _assert_dataset(pred, f"{name}.predict")
    dim = next(iter(data[features[0]].dims))
    suffix = "_pred" if model.family == "detector" else "_mean"
    for t in targets:
        assert f"{t}{suffix}" in pred, f"{name}.predict must return {t}{suffix} (has {list(pred.data_vars)})"
        assert pred[f"{t}{suffix}"].sizes.get(dim) == data.sizes[dim], f"{name}: {t}{suffix} has the wrong length"
    model.save(folder / "model")
    saved = list((folder / "model").iterdir())
    assert not [p for p in saved if p.suffix in (".pkl", ".pickle")], f"{name} saved a pickle: {saved}"
    loaded = type(model).load(folder / "model")
    again = loaded.predict(data, ctx)
    for t in targets:
        if suffix == "_pred":
            np.testing.assert_array_equal(again[f"{t}_pred"].values, pred[f"{t}_pred"].values,
                                          err_msg=f"{name}: predictions change after save/load")
            continue
        np.testing.assert_allclose(again[f"{t}_mean"].values, pred[f"{t}_mean"].values, rtol=1e-6,
                                   err_msg=f"{name}: predictions change after save/load")


def check_design(design: Design, space: Any = None) -> None:
    """A design over a small space returns a trial dataset whose values lie in the space."""
    from reflow.space import ParameterSpec, Space

    if space is None:
        space = Space.from_specs({
            "a": ParameterSpec(low=0.0, high=1.0), "b": ParameterSpec(low=1.0, high=5.0, type="int"),
            "c": ParameterSpec(low=10.0, high=100.0, log=True), "d": ParameterSpec(value=3.0),
            "e": ParameterSpec(low=-1.0, high=1.0),
        })
    problems = design.space_problems(space)
    assert not problems, f"{type(design).__name__} rejects the check space: {problems}"
    ds = design.generate(space, np.random.default_rng(0))
    _assert_dataset(ds, f"{type(design).__name__}.generate")
    assert "trial" in ds.dims and ds.sizes["trial"] > 0, "a design must return points on dim 'trial'"
    for p in space.parameters:
        assert p.name in ds, f"the design lacks factor {p.name}"
        assert all(p.contains(v) for v in ds[p.name].values), f"factor {p.name} leaves its range"


def _assert_dataset(ds: Any, where: str) -> None:
    import xarray as xr

    assert isinstance(ds, xr.Dataset), f"{where} must return an xarray.Dataset, got {type(ds).__name__}"
