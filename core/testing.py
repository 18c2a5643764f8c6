"""Contract checks for components: ``check_component(cls)`` runs the same checks on a plugin's component
that every built-in one passes in reflow's CI (like scikit-learn's ``check_estimator``).

In a plugin's test suite::

    from reflow.testing import check_component

    def test_contract(tmp_path):
        check_component(MyEvaluator, tmp_path=tmp_path)
        check_component(MyModel, data=my_small_dataset, features=["x"], targets=["y"], tmp_path=tmp_path)
        check_component(MyOptimizer, tmp_path=tmp_path)  # on a small built-in problem, or problem=...

What is checked is what the base classes in :mod:`reflow.components` declare, rule by rule:

- every component: ``Params`` is a :class:`reflow.Params` model whose fields have descriptions;
- :class:`~reflow.Model`: ``fit(data, ctx, validation=None)`` takes a validation set and None and returns
  ``self``; state set by ``fit`` ends in ``_``; ``predict`` gives ``<target>_mean`` (a detector
  ``<target>_pred``) on every row; ``score(data, ctx, predictions=...)`` gives a dict of name -> number;
  ``plot(folder)`` gives figures that exist; save/load round-trips without a pickle; ``uses_images`` is a bool;
- :class:`~reflow.Generator`: as a model, but instead of ``predict``: ``fit`` sets ``classes_``,
  ``generate({class: n}, seed)`` gives n samples of each class on dim ``sample``, the same seed the same
  samples, also after save/load;
- :class:`~reflow.Optimizer`: ``ask(n)`` gives n points of the space on dim ``trial``; ``tell`` takes them
  (a failed trial among them); ``state()`` is JSON-able and a fresh optimizer restored from it (and told the
  same trials) asks the same next points; ``max_objectives``, ``min_initial`` and ``report()`` are well formed;
- :class:`~reflow.Design`: points on dim ``trial`` inside the space;
- :class:`~reflow.Evaluator`: variables well formed; a trial at the defaults succeeds; a NaN input fails its
  trial (or gives finite outputs) without raising out of the evaluation; ``evaluate_arrays``, where given,
  agrees with ``evaluate_one``;
- :class:`~reflow.Task`: outputs named, ``produces_model`` a bool, a :class:`~reflow.LabTask` implements the
  lab protocol; :class:`~reflow.DataSource`: ``load`` gives a Dataset, ``plot`` a list of figures.

Each check raises ``AssertionError`` with a message saying which rule the component broke.
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
import tempfile
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ValidationError
from reflow.components import (
    MODEL_FAMILIES,
    Component,
    DataSource,
    Design,
    Evaluator,
    Generator,
    LabTask,
    Model,
    Optimizer,
    Task,
    Variable,
)
from reflow.context import RunContext
from reflow.tables import row_dim

if TYPE_CHECKING:
    import xarray as xr
    from reflow.problem import OptimizationProblem

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".dill")
"""File kinds a saved model must not contain (loading them runs code)."""


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
                    space: Any = None, problem: OptimizationProblem | None = None) -> None:
    """Run every contract check that applies to ``cls``; raise AssertionError on the first broken rule.

    A model or generator needs ``data`` with ``features`` and ``targets`` (a generator's first feature is its
    class variable); a design may take a ``space`` and an optimizer a ``problem`` (each has a small default).
    """
    folder = Path(tmp_path) if tmp_path is not None else Path(tempfile.mkdtemp(prefix="reflow-check-"))
    instance = check_params(cls, params)
    if isinstance(instance, Evaluator):
        check_evaluator(instance, folder)
    elif isinstance(instance, Model):
        if data is None or not features or not targets:
            raise ValueError("checking a Model needs data, features and targets")
        if isinstance(instance, Generator):
            check_generator(instance, data, features, targets, folder)
        else:
            check_model(instance, data, features, targets, folder)
    elif isinstance(instance, Design):
        check_design(instance, space)
    elif isinstance(instance, Optimizer):
        check_optimizer(instance, folder, problem)
    elif isinstance(instance, Task):
        check_task(instance)
    elif isinstance(instance, DataSource):
        check_data_source(instance, folder)
    else:
        raise AssertionError(f"{cls.__name__} is not a model, generator, evaluator, design, optimizer, task or "
                             "data source")


def check_params(cls: type, params: dict[str, Any] | None = None) -> Any:
    """Params is a pydantic model that rejects unknown keys and round-trips through JSON."""
    assert isinstance(cls, type) and issubclass(cls, Component), f"{cls!r} is not a reflow component"
    assert isinstance(cls.Params, type) and issubclass(cls.Params, BaseModel), \
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


# ---- evaluators -----------------------------------------------------------------------------------------------


def check_evaluator(evaluator: Evaluator, folder: Path) -> None:
    """Declared variables are well formed; a trial at the defaults succeeds; a NaN input fails that trial (or
    gives finite outputs) and never the study; ``evaluate_arrays`` agrees with ``evaluate_one``."""
    from reflow.evaluation import evaluate_trials

    name = type(evaluator).__name__
    inputs, outputs = evaluator.input_variables(), evaluator.output_variables()
    for group in (inputs, outputs):
        names = [v.name for v in group]
        assert all(isinstance(v, Variable) for v in group), f"{name}: inputs/outputs must be reflow.Variable"
        assert len(set(names)) == len(names), f"{name}: duplicate variable names {names}"
    cls = type(evaluator)
    flags = {"accepts_any_inputs": cls.accepts_any_inputs, "manual": cls.manual, "any_batch_size": cls.any_batch_size}
    bad = [flag for flag, value in flags.items() if not isinstance(value, bool)]
    assert not bad, f"{name}: {', '.join(bad)} must be a bool"
    if evaluator.accepts_any_inputs:
        return
    assert outputs, f"{name} declares no outputs"
    ctx = test_context(folder)
    evaluator.setup(ctx)
    row = {v.name: v.default for v in inputs}
    row.update({v.name: (v.low + v.high) / 2 for v in inputs
                if v.default is None and v.low is not None and v.high is not None})
    records = evaluate_trials(evaluator, [(0, row)], ctx)
    assert records[0]["status"] == "ok", f"{name} failed at its default inputs: {records[0]['error']}"
    for v in outputs:
        value = records[0]["outputs"][v.name]
        assert isinstance(value, str) or math.isfinite(value), f"{name}: output {v.name} is {value}"
    if evaluator.has_arrays:
        _check_arrays_agree(evaluator, row, "at its default inputs", strict=True)
    numeric = [v.name for v in inputs if isinstance(row.get(v.name), (int, float))]
    if numeric:
        _check_nan_input(evaluator, {**row, numeric[0]: float("nan")}, numeric[0], ctx)


def _check_nan_input(evaluator: Evaluator, poisoned: dict[str, Any], which: str, ctx: RunContext) -> None:
    """A NaN input fails its trial with an error, or gives finite outputs: never NaN counted as a result, never
    an exception that ends the study, and the same whether the trial runs alone or in an array chunk."""
    from reflow.evaluation import evaluate_trials

    name = type(evaluator).__name__
    try:
        rec = evaluate_trials(evaluator, [(1, poisoned)], ctx)[0]
    except (Exception, SystemExit) as exc:  # SystemExit too: sys.exit in a plugin ends a study like a crash
        raise AssertionError(f"{name}: a NaN input ({which}) must fail that trial, not raise out of the "
                             f"evaluation ({type(exc).__name__}: {exc})") from exc
    if rec["status"] == "ok":
        bad = {k: v for k, v in rec["outputs"].items() if not isinstance(v, str) and not math.isfinite(v)}
        assert not bad, f"{name}: a NaN input ({which}) must fail that trial or give finite outputs, got {bad}"
    else:
        assert rec["status"] == "failed" and rec["error"], \
            f"{name}: a NaN input ({which}) must fail that trial with an error saying why, got {rec}"
    if evaluator.has_arrays:
        _check_arrays_agree(evaluator, poisoned, f"with a NaN input ({which})", strict=False)


def _check_arrays_agree(evaluator: Evaluator, row: dict[str, Any], where: str, strict: bool) -> None:
    """``evaluate_arrays`` on one row gives what ``evaluate_one`` gives: reflow runs a trial through either (a
    chunk as arrays; a row the arrays leave non-finite again alone), so a difference makes a trial's result
    depend on the chunking. ``strict``: the arrays must give this row (at the defaults they must work)."""
    from reflow.evaluation import run_step

    name = type(evaluator).__name__
    names = [v.name for v in evaluator.output_variables()]
    try:
        with np.errstate(all="ignore"):
            raw = evaluator.evaluate_arrays({k: np.asarray([v]) for k, v in row.items()})
        arrays = {k: np.broadcast_to(np.asarray(raw[k], dtype=float), (1,))[0] for k in names}
    except Exception as exc:  # reflow then evaluates the row alone: consistent, but slow where it should not be
        if strict:
            raise AssertionError(f"{name}.evaluate_arrays fails {where}: {type(exc).__name__}: {exc}") from exc
        return
    if not all(math.isfinite(v) for v in arrays.values()):
        assert not strict, f"{name}.evaluate_arrays gives non-finite outputs {where}: {arrays}"
        return  # reflow evaluates such a row again through evaluate_one
    try:
        expected = run_step(evaluator, row)
    except Exception as exc:
        raise AssertionError(f"{name}: evaluate_arrays gives finite outputs {where} where evaluate_one fails "
                             f"({type(exc).__name__}: {exc}); a trial's result would depend on the chunking") from exc
    for k, v in arrays.items():
        assert math.isclose(v, float(expected[k]), rel_tol=1e-9, abs_tol=1e-12), \
            f"{name}: evaluate_arrays and evaluate_one disagree {where}: {k} = {v!r} vs {expected[k]!r}"


# ---- models and generators ------------------------------------------------------------------------------------


def check_model(model: Model, data: Any, features: list[str], targets: list[str], folder: Path) -> None:
    """fit takes ``validation`` and returns self, fitted state ends in '_', predict gives <target>_mean (a
    detector: <target>_pred, the per-image label) on every row, score gives numbers, plot gives figures that
    exist, save/load round-trips without a pickle."""
    name = type(model).__name__
    ctx = test_context(folder)
    _check_model_class(model)
    _check_fit(model, data, features, targets, ctx)
    pred = model.predict(data, ctx)
    _assert_dataset(pred, f"{name}.predict")
    dim = row_dim(data)
    suffix = "_pred" if model.family == "detector" else "_mean"
    for t in targets:
        assert f"{t}{suffix}" in pred, f"{name}.predict must return {t}{suffix} (has {list(pred.data_vars)})"
        assert pred[f"{t}{suffix}"].sizes.get(dim) == data.sizes[dim], f"{name}: {t}{suffix} has the wrong length"
    _check_score(model, data, ctx, pred)
    loaded = _save_and_load(model, folder / "model")
    again = loaded.predict(data, ctx)
    for t in targets:
        if suffix == "_pred":
            np.testing.assert_array_equal(again[f"{t}_pred"].values, pred[f"{t}_pred"].values,
                                          err_msg=f"{name}: predictions change after save/load")
            continue
        np.testing.assert_allclose(again[f"{t}_mean"].values, pred[f"{t}_mean"].values, rtol=1e-6,
                                   err_msg=f"{name}: predictions change after save/load")
    _check_plot(loaded, folder / "figures")


def check_generator(generator: Generator, data: Any, features: list[str], targets: list[str],
                    folder: Path) -> None:
    """A generator's contract: fit as a model's (``validation`` taken, returns self, state ends in '_') and
    sets ``classes_``; ``generate({class: n}, seed)`` gives n samples per class on dim ``sample`` (their class
    in the first feature), the same seed the same samples, also after save/load. No ``predict`` needed."""
    name = type(generator).__name__
    ctx = test_context(folder)
    _check_model_class(generator)
    _check_fit(generator, data, features, targets, ctx)
    classes = generator.classes_
    assert isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes), \
        f"{name}.fit must set classes_ to the list of classes it can make, got {classes!r}"
    request = {c: 1 + i % 2 for i, c in enumerate(classes)}
    first = _generate(generator, request, data, f"{name}.generate")
    label = features[0]
    assert label in first, f"{name}.generate must give each sample's class as {label!r} (has {list(first.data_vars)})"
    counts = Counter(str(v) for v in np.asarray(first[label].values).ravel())
    assert counts == Counter(request), f"{name}.generate({request}) must give n samples per class, got {dict(counts)}"
    again = _generate(generator, request, data, f"{name}.generate")
    _assert_same_samples(first, again, f"{name}.generate: the same seed must give the same samples")
    _check_score(generator, data, ctx, None)
    loaded = _save_and_load(generator, folder / "model")
    assert loaded.classes_ == classes, f"{name}: classes_ change after save/load ({classes} -> {loaded.classes_})"
    after = _generate(loaded, request, data, f"{name}.generate after save/load")
    _assert_same_samples(first, after, f"{name}: generated samples change after save/load")
    _check_plot(loaded, folder / "figures")


def _generate(generator: Generator, request: dict[str, int], data: Any, where: str) -> xr.Dataset:
    out = generator.generate(request, seed=7, source=data)
    _assert_dataset(out, where)
    total = sum(request.values())
    assert "sample" in out.dims and out.sizes["sample"] == total, \
        f"{where} must give {total} samples on dim 'sample', got sizes {dict(out.sizes)}"
    return out


def _check_model_class(model: Model) -> None:
    name = type(model).__name__
    assert model.family in MODEL_FAMILIES, f"{name}.family must be one of {MODEL_FAMILIES}"
    assert isinstance(type(model).uses_images, bool), \
        f"{name}.uses_images must be a bool, got {type(model).uses_images!r}"


def _check_fit(model: Model, data: Any, features: list[str], targets: list[str], ctx: RunContext) -> None:
    """fit(data, ctx, validation=None) on every row, and on a fresh instance fit(train rows, ctx,
    validation=held-out rows) as the ``train`` task calls it with a split: both return self; the first fit's new
    public attributes all end in '_'."""
    name = type(model).__name__
    parameter = inspect.signature(type(model).fit).parameters.get("validation")
    assert parameter is not None and parameter.default is None, \
        f"{name}.fit must take validation=None (the rows a study's split holds out, or None)"
    before = set(vars(model))
    fitted = _call(f"{name}.fit(data, ctx, validation=None)", model.configure(features, targets).fit, data, ctx,
                   validation=None)
    assert fitted is model, f"{name}.fit must return self"
    new = [k for k in set(vars(model)) - before if not k.startswith("_")]
    bad = sorted(k for k in new if not k.endswith("_"))
    assert not bad, f"{name}: state set by fit must end in '_' (scikit-learn rule): {bad}"
    dim = row_dim(data)
    n = data.sizes[dim]
    held = max(1, n // 4)
    fresh = type(model)(model.params.model_copy()).configure(features, targets)
    fitted = _call(f"{name}.fit(data, ctx, validation=held-out rows)", fresh.fit, data.isel({dim: slice(0, n - held)}),
                   ctx, validation=data.isel({dim: slice(n - held, n)}))
    assert fitted is fresh, f"{name}.fit(data, ctx, validation=...) must return self"


def _call(call: str, method: Any, *args: Any, **kwargs: Any) -> Any:
    """``method(*args, **kwargs)``; an exception from it breaks the rule that the contract allows this call."""
    try:
        return method(*args, **kwargs)
    except Exception as exc:
        raise AssertionError(f"{call} failed: {type(exc).__name__}: {exc}") from exc


def _check_score(model: Model, data: Any, ctx: RunContext, predictions: Any) -> None:
    name = type(model).__name__
    scores = _call(f"{name}.score(data, ctx, predictions=...)", model.score, data, ctx, predictions=predictions)
    assert isinstance(scores, dict), f"{name}.score must return a dict of name -> number, got {type(scores).__name__}"
    bad = {k: v for k, v in scores.items() if not isinstance(k, str) or not _is_number(v)}
    assert not bad, f"{name}.score must return a dict of name -> number, got {bad}"
    summary = model.summary()
    assert isinstance(summary, dict) and all(isinstance(k, str) for k in summary), \
        f"{name}.summary must return a dict keyed by name, got {summary!r}"


def _check_plot(model: Model, folder: Path) -> None:
    """The figures the (saved and loaded, as the train task plots it) model draws exist."""
    name = type(model).__name__
    folder.mkdir(parents=True, exist_ok=True)
    paths = model.plot(folder)
    assert isinstance(paths, list), f"{name}.plot must return a list of paths, got {type(paths).__name__}"
    missing = [str(p) for p in paths if not isinstance(p, (str, Path)) or not Path(p).is_file()]
    assert not missing, f"{name}.plot returned paths that do not exist: {missing}"


def _save_and_load(model: Model, directory: Path) -> Model:
    name = type(model).__name__
    model.save(directory)
    pickles = [str(p) for p in directory.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES]
    assert not pickles, f"{name} saved a pickle: {pickles}"
    loaded = type(model).load(directory)
    assert isinstance(loaded, type(model)), f"{name}.load must return a {name}, got {type(loaded).__name__}"
    return loaded


def _assert_same_samples(a: xr.Dataset, b: xr.Dataset, message: str) -> None:
    assert sorted(a.data_vars) == sorted(b.data_vars), \
        f"{message}: variables {list(a.data_vars)} vs {list(b.data_vars)}"
    for k in a.data_vars:
        x, y = np.asarray(a[k].values), np.asarray(b[k].values)
        assert x.shape == y.shape, f"{message}: {k} has shape {x.shape} vs {y.shape}"
        if x.dtype.kind in "fc":
            np.testing.assert_allclose(y, x, rtol=1e-6, atol=1e-7, err_msg=f"{message} ({k} differs)")
        else:
            assert np.array_equal(x, y), f"{message} ({k} differs)"


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


# ---- designs and optimizers -----------------------------------------------------------------------------------


def check_design(design: Design, space: Any = None) -> None:
    """A design over a small space returns a trial dataset whose values lie in the space."""
    from reflow.space import ParameterSpec, Space

    name = type(design).__name__
    assert type(design).role == "design", f"{name}.role must be 'design' (it derives from reflow.Design)"
    assert isinstance(type(design).supports_categorical, bool), f"{name}.supports_categorical must be a bool"
    if space is None:
        space = Space.from_specs({
            "a": ParameterSpec(low=0.0, high=1.0), "b": ParameterSpec(low=1.0, high=5.0, type="int"),
            "c": ParameterSpec(low=10.0, high=100.0, log=True), "d": ParameterSpec(value=3.0),
            "e": ParameterSpec(low=-1.0, high=1.0),
        })
    problems = design.space_problems(space)
    assert not problems, f"{name} rejects the check space: {problems}"
    ds = design.generate(space, np.random.default_rng(0))
    _assert_dataset(ds, f"{name}.generate")
    assert "trial" in ds.dims and ds.sizes["trial"] > 0, "a design must return points on dim 'trial'"
    for p in space.parameters:
        assert p.name in ds, f"the design lacks factor {p.name}"
        assert all(p.contains(v) for v in ds[p.name].values), f"factor {p.name} leaves its range"


def check_problem(objectives: int = 1) -> OptimizationProblem:
    """The small problem optimizers are checked on: a continuous, an integer and a fixed parameter;
    ``objectives`` of ``f`` (min) and ``g`` (max). (A categorical parameter makes a Bayesian optimizer's asks
    several times slower; pass ``problem=`` to check_component to check one.)"""
    from reflow.problem import Objective, OptimizationProblem
    from reflow.space import ParameterSpec, Space

    space = Space.from_specs({"x": ParameterSpec(low=0.0, high=1.0), "k": ParameterSpec(low=1, high=4, type="int"),
                              "d": ParameterSpec(value=3.0)})
    return OptimizationProblem(space, [Objective("f", "min"), Objective("g", "max")][:objectives])


def _measure(problem: OptimizationProblem, inputs: dict[str, Any]) -> dict[str, float]:
    """Smooth made-up outcomes of a point of any problem: each metric a bowl in the unit encoding, centred
    elsewhere, so that several objectives conflict."""
    unit = problem.encode({p: [v] for p, v in inputs.items()})[0]
    return {name: float(np.sum((unit - (0.3 if j % 2 == 0 else 0.7)) ** 2) + 0.1 * j)
            for j, name in enumerate(problem.metric_names)}


def _trials(problem: OptimizationProblem, values: dict[str, np.ndarray], first: int, batch: int,
            failed: tuple[int, ...] = ()) -> list[dict[str, Any]]:
    """Finished trial records (as the optimize task journals them) for the points ``values``."""
    n = len(next(iter(values.values())))
    records = []
    for i in range(n):
        inputs = {p: np.asarray(values[p]).tolist()[i] for p in problem.space.names}
        ok = i not in failed
        measured = _measure(problem, inputs) if ok else {}
        records.append({"trial": first + i, "status": "ok" if ok else "failed", "inputs": inputs,
                        "error": "" if ok else "ValueError: the check's failing trial",
                        "outputs": {o: measured.get(o) for o in problem.metric_names},
                        "batch": batch, "started": 0.0, "finished": 0.0})
    return records


def _told(problem: OptimizationProblem, records: list[dict[str, Any]]) -> xr.Dataset:
    from reflow.evaluation import records_to_dataset

    return records_to_dataset(records, problem.space.names, problem.metric_names)


def check_optimizer(optimizer: Optimizer, folder: Path, problem: OptimizationProblem | None = None,
                    seed: int = 0, n: int = 2) -> None:
    """Traits well formed; ``ask(n)`` gives n points of the space on dim ``trial``; ``tell`` takes them (a failed
    trial among them, as among the initial ones); ``state()`` is JSON-able, and a fresh optimizer set up alike,
    restored from it and told the same trials (as a resumed ``optimize`` stage does) asks the same next points."""
    cls = type(optimizer)
    name = cls.__name__
    assert cls.role == "optimizer", f"{name}.role must be 'optimizer' (it derives from reflow.Optimizer)"
    most = cls.max_objectives
    assert most is None or (isinstance(most, int) and not isinstance(most, bool) and most > 0), \
        f"{name}.max_objectives must be None or a positive int, got {most!r}"
    least = cls.min_initial
    assert isinstance(least, int) and not isinstance(least, bool) and least >= 0, \
        f"{name}.min_initial must be an int >= 0 (trials needed before the first ask), got {least!r}"
    if problem is None:
        problem = check_problem(1 if most == 1 else 2)
    ctx = test_context(folder, seed)
    initial = problem.decode(np.random.default_rng(seed).random((max(least, 4) + 1, problem.dim)))
    first_records = _trials(problem, initial, 0, 0, failed=(1,))

    optimizer.setup(problem, seed)
    _tell(optimizer, _told(problem, first_records), "the initial trials (one failed)")
    asked = _ask(optimizer, n, ctx, problem)
    second_records = _trials(problem, {p: asked[p].values for p in problem.space.names}, len(first_records), 1,
                             failed=(0,))
    _tell(optimizer, _told(problem, second_records), "the trials of its own ask (one failed)")
    state = optimizer.state()
    assert isinstance(state, dict), f"{name}.state() must return a dict, got {type(state).__name__}"
    try:
        saved = json.loads(json.dumps(state))
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{name}.state() must be JSON-able (it is saved as JSON for a resume): {exc}") from None
    report = optimizer.report()
    assert isinstance(report, dict), f"{name}.report() must return a dict, got {type(report).__name__}"
    try:
        json.dumps(report)
    except (TypeError, ValueError) as exc:
        raise AssertionError(f"{name}.report() must be JSON-able (it goes into the stage's metrics): {exc}") from None
    expected = _ask(optimizer, 1, ctx, problem)  # one point tells a resumed optimizer apart as well as n, faster

    resumed = cls(optimizer.params.model_copy())
    resumed.setup(problem, seed)
    resumed.restore(saved)
    _tell(resumed, _told(problem, first_records + second_records), "every finished trial at once (a resume)")
    got = _ask(resumed, 1, ctx, problem)
    for p in problem.space.names:
        a, b = np.asarray(expected[p].values), np.asarray(got[p].values)
        if a.dtype.kind in "fiu" and b.dtype.kind in "fiu":
            same = np.allclose(a.astype(float), b.astype(float), rtol=1e-9, atol=1e-12)
        else:
            same = np.array_equal(a.astype(str), b.astype(str))
        assert same, (f"{name}: restore(state()) on a fresh optimizer told the same trials asks other points "
                      f"({p}: {a.tolist()} vs {b.tolist()}); state() must hold what the next ask depends on")


def _tell(optimizer: Optimizer, trials: xr.Dataset, what: str) -> None:
    try:
        optimizer.tell(trials)
    except Exception as exc:
        raise AssertionError(f"{type(optimizer).__name__}.tell must take {what}: {type(exc).__name__}: {exc}") from exc


def _ask(optimizer: Optimizer, n: int, ctx: RunContext, problem: OptimizationProblem) -> xr.Dataset:
    where = f"{type(optimizer).__name__}.ask({n})"
    ds = optimizer.ask(n, ctx)
    _assert_dataset(ds, where)
    assert "trial" in ds.dims and ds.sizes["trial"] == n, \
        f"{where} must return {n} points on dim 'trial', got sizes {dict(ds.sizes)}"
    for p in problem.space.parameters:
        assert p.name in ds, f"{where} lacks parameter {p.name}"
        outside = [v for v in np.asarray(ds[p.name].values).tolist() if not p.contains(v)]
        assert not outside, f"{where}: {p.name} leaves the space ({outside})"
    return ds


# ---- tasks and data sources -----------------------------------------------------------------------------------


def check_task(task: Task) -> None:
    """Outputs named, ``produces_model`` a bool, a lab task implements the whole lab protocol."""
    cls = type(task)
    name = cls.__name__
    assert task.outputs and all(isinstance(o, str) for o in task.outputs), \
        f"{name}.outputs must name at least one output"
    assert isinstance(cls.produces_model, bool), f"{name}.produces_model must be a bool, got {cls.produces_model!r}"
    if isinstance(task, LabTask):
        protocol = {"lab_columns": (cls.lab_columns, LabTask.lab_columns), "lab_ask": (cls.lab_ask, LabTask.lab_ask),
                    "lab_tell": (cls.lab_tell, LabTask.lab_tell),
                    "lab_journals": (cls.lab_journals, LabTask.lab_journals)}
        missing = [m for m, (own, base) in protocol.items() if own is base]
        assert not missing, f"{name} is a LabTask but does not implement {', '.join(missing)}"


def check_data_source(source: DataSource, folder: Path) -> None:
    """``load`` gives an xarray Dataset; ``plot`` gives a list of figures that exist."""
    name = type(source).__name__
    ds = source.load(test_context(folder))
    _assert_dataset(ds, f"{name}.load")
    figures = folder / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    paths = source.plot(ds, figures)
    assert isinstance(paths, list), f"{name}.plot must return a list of paths, got {type(paths).__name__}"
    missing = [str(p) for p in paths if not isinstance(p, (str, Path)) or not Path(p).is_file()]
    assert not missing, f"{name}.plot returned paths that do not exist: {missing}"


def _assert_dataset(ds: Any, where: str) -> None:
    import xarray as xr

    assert isinstance(ds, xr.Dataset), f"{where} must return an xarray.Dataset, got {type(ds).__name__}"
