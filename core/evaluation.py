"""Running evaluators over trials: pipelines, input defaults, output checks and failure capture.

A trial fails, and the study goes on, when its evaluator raises, times out, returns a non-number or NaN,
or leaves out a declared output. The failure is kept as the trial's ``status``/``error``, located in the
plugin's code (:mod:`reflow.frames`). What a stage says about its failures as a whole (every evaluation
failed: the stage fails; more than ``max_failed``: a warning) is summarized here and kept in
``<stage>/failures.json`` for the report and for ``--resume``.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from reflow.components import Evaluator, Variable
from reflow.errors import EvaluationError, ReflowError
from reflow.executors import call_safely
from reflow.frames import describe, source_location

if TYPE_CHECKING:
    import xarray as xr
    from reflow.context import RunContext


class Pipeline:
    """Evaluators in a row: each step's outputs join the namespace the next step's inputs come from."""

    def __init__(self, steps: list[Evaluator], labels: list[str] | None = None):
        if not steps:
            raise ValueError("a pipeline needs at least one evaluator")
        self.steps = list(steps)
        self.labels = labels or [type(s).__name__ for s in steps]

    def input_variables(self) -> tuple[Variable, ...]:
        """Inputs a design may set: every step's inputs not produced by an earlier step."""
        produced: set[str] = set()
        out: dict[str, Variable] = {}
        for step in self.steps:
            for v in step.input_variables():
                if v.name not in produced and v.name not in out:
                    out[v.name] = v
            produced.update(v.name for v in step.output_variables())
        return tuple(out.values())

    def output_variables(self) -> tuple[Variable, ...]:
        out: dict[str, Variable] = {}
        for step in self.steps:
            for v in step.output_variables():
                out[v.name] = v
        return tuple(out.values())

    @property
    def accepts_any_inputs(self) -> bool:
        return any(s.accepts_any_inputs for s in self.steps)

    @property
    def is_batch(self) -> bool:
        return any(s.is_batch for s in self.steps)

    def setup(self, ctx: RunContext) -> None:
        for step in self.steps:
            step.setup(ctx)

    def evaluate_one(self, namespace: Mapping[str, Any]) -> dict[str, Any]:
        """Run every step on one trial (per-trial steps only)."""
        ns = dict(namespace)
        outputs: dict[str, Any] = {}
        for label, step in zip(self.labels, self.steps, strict=True):
            try:
                out = run_step(step, ns)
            except Exception as exc:
                kind = "" if isinstance(exc, EvaluationError) else f"{type(exc).__name__}: "
                raise EvaluationError(f"step {label!r}: {kind}{exc}") from exc
            ns.update(out)
            outputs.update(out)
        return outputs


def step_inputs(step: Evaluator, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The inputs ``step`` takes from ``namespace``, with its declared defaults for the rest."""
    if step.accepts_any_inputs:
        return dict(namespace)
    args: dict[str, Any] = {}
    missing = []
    for v in step.input_variables():
        if v.name in namespace:
            args[v.name] = namespace[v.name]
        elif v.default is not None:
            args[v.name] = v.default
        else:
            missing.append(v.name)
    if missing:
        raise EvaluationError(f"missing inputs {', '.join(missing)} (no default; add them to the space)")
    return args


def check_outputs(step: Any, out: Any) -> dict[str, Any]:
    """Outputs as a dict of floats; declared outputs present; NaN, inf and non-numbers rejected.

    A string is kept only for an output declared categorical (a :class:`Variable` with ``choices``);
    anywhere else it would turn the whole output column of the trials into text.
    """
    if not isinstance(out, Mapping):
        raise EvaluationError(f"an evaluator must return a mapping of outputs, got {type(out).__name__}")
    variables = {v.name: v for v in step.output_variables()}
    missing = [n for n in variables if n not in out]
    if missing:
        raise EvaluationError(f"missing outputs: {', '.join(missing)} ({_returned(missing, out, variables)})")
    clean: dict[str, Any] = {}
    for name, value in out.items():
        var = variables.get(name)
        if isinstance(value, str) and var is not None and var.choices:
            if value not in var.choices:
                raise EvaluationError(f"output {name!r} is {value!r}, not one of {list(var.choices)}")
            clean[str(name)] = value
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise EvaluationError(f"output {name!r} is not a number: {value!r}") from None
        if not math.isfinite(number):
            raise EvaluationError(f"output {name!r} is {number}")
        clean[str(name)] = number
    return clean


def _returned(missing: list[str], out: Mapping[str, Any], declared: Mapping[str, Any]) -> str:
    """What the evaluator did return, and the closest returned name for each missing one."""
    returned = [str(k) for k in out]
    spare = [r for r in returned if r not in declared] or returned
    hints = []
    for name in missing:
        close = difflib.get_close_matches(name, spare, n=1, cutoff=0.6)
        if close:
            hints.append(f"did you mean {close[0]!r}" + (f" for {name!r}" if len(missing) > 1 else "") + "?")
    text = f"the evaluator returned: {', '.join(returned)}" if returned else "the evaluator returned nothing"
    return "; ".join([text, *hints])


def run_step(step: Evaluator, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """One step on one trial: its inputs from ``namespace``, its outputs checked.

    A bad output (missing, NaN, not a number) is located at the function that returned it, not here.
    """
    out = step.evaluate_one(step_inputs(step, namespace))
    try:
        return check_outputs(step, out)
    except EvaluationError as exc:
        exc.location = source_location(step)
        raise


def _run_trial(evaluator: Any, row: dict[str, Any]) -> dict[str, Any]:
    """What a worker runs for one trial (module-level so it pickles)."""
    if isinstance(evaluator, Pipeline):
        return evaluator.evaluate_one(row)
    return run_step(evaluator, row)


def design_rows(designs: xr.Dataset) -> list[tuple[int, dict[str, Any]]]:
    """(trial id, {input: python scalar}) for every trial of a design dataset."""
    dim = "trial" if "trial" in designs.dims else next(iter(designs.dims))
    ids = designs[dim].values if dim in designs.coords else np.arange(designs.sizes[dim])
    names = [n for n in designs.data_vars if designs[n].dims == (dim,)]
    columns = {n: designs[n].values for n in names}
    rows = []
    for i, tid in enumerate(ids):
        rows.append((int(tid), {n: _scalar(columns[n][i]) for n in names}))
    return rows


def _scalar(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


TrialRecord = dict[str, Any]


def evaluate_trials(evaluator: Any, designs: xr.Dataset | list[tuple[int, dict[str, Any]]], ctx: RunContext,
                    *, on_done: Callable[[list[TrialRecord]], None] | None = None,
                    timeout: float | None = None, batch: int = 0, bar: Any = None) -> list[TrialRecord]:
    """Evaluate trials through ``ctx.executor``; return one record per trial, failures included.

    Per-trial evaluators and pipelines run trial by trial and ``on_done`` sees each finished trial at
    once; a pipeline with a batch step runs step by step and ``on_done`` sees the batch at its end.
    """
    rows = design_rows(designs) if not isinstance(designs, list) else designs
    if not rows:
        return []
    if timeout is None:
        timeout = ctx.timeout
    records: list[TrialRecord] = []

    def finish(recs: list[TrialRecord]) -> None:
        records.extend(recs)
        if on_done is not None:
            on_done(recs)

    if not _has_batch_step(evaluator):
        items = [(evaluator, row) for _, row in rows]
        with contextlib.ExitStack() as stack:
            if bar is None:
                bar = stack.enter_context(ctx.progress(total=len(rows), description=f"{ctx.stage}: evaluating"))
            for i, outcome in ctx.executor.map(_run_trial, items, timeout):
                tid, row = rows[i]
                finish([_record(tid, row, outcome.value, outcome.error, outcome.started, outcome.finished,
                                batch)])
                bar.advance()
        return records
    finish(_evaluate_stepwise(evaluator, rows, ctx, timeout, batch))
    if bar is not None:
        bar.advance(len(rows))
    return records


def _has_batch_step(evaluator: Any) -> bool:
    return evaluator.is_batch


def _evaluate_stepwise(evaluator: Any, rows: list[tuple[int, dict[str, Any]]], ctx: RunContext,
                       timeout: float | None, batch: int) -> list[TrialRecord]:
    steps = evaluator.steps if isinstance(evaluator, Pipeline) else [evaluator]
    labels = evaluator.labels if isinstance(evaluator, Pipeline) else [type(evaluator).__name__]
    started = time.time()
    alive = {tid: dict(row) for tid, row in rows}
    outputs: dict[int, dict[str, Any]] = {tid: {} for tid, _ in rows}
    errors: dict[int, str] = {}
    prefix = len(steps) > 1
    for label, step in zip(labels, steps, strict=True):
        ids = list(alive)
        if not ids:
            break
        tag = f"step {label!r}: " if prefix else ""
        if step.is_batch:
            results = _batch_step(step, ids, alive, ctx, timeout)
        else:
            items = [(step, alive[t]) for t in ids]
            results = {}
            for i, outcome in ctx.executor.map(run_step, items, timeout):
                results[ids[i]] = (outcome.value, outcome.error)
        for tid, (value, error) in results.items():
            if error is not None:
                errors[tid] = tag + error
                alive.pop(tid)
            else:
                alive[tid].update(value)
                outputs[tid].update(value)
    finished = time.time()
    return [_record(tid, row, outputs[tid] if tid not in errors else None, errors.get(tid), started,
                    finished, batch) for tid, row in rows]


def _batch_step(step: Evaluator, ids: list[int], alive: dict[int, dict[str, Any]], ctx: RunContext,
                timeout: float | None) -> dict[int, tuple[Any, str | None]]:
    import xarray as xr

    try:
        table = {n: [step_inputs(step, alive[t])[n] for t in ids] for n in step_inputs(step, alive[ids[0]])}
    except Exception as exc:
        return {t: (None, str(exc)) for t in ids}
    ds = xr.Dataset({n: ("trial", np.asarray(v)) for n, v in table.items()}, coords={"trial": ids})
    outcome = call_safely(step.evaluate, (ds, ctx), timeout)
    if not outcome.ok:
        return {t: (None, f"batch failed: {outcome.error}") for t in ids}
    result = outcome.value
    if not isinstance(result, xr.Dataset):
        return {t: (None, f"a batch evaluator must return an xarray.Dataset, got {type(result).__name__}")
                for t in ids}
    if "trial" not in result.indexes:  # rows in the order given: label them, never match by position later
        if result.sizes.get("trial") != len(ids):
            return {t: (None, f"the batch result has {result.sizes.get('trial', 0)} rows on dim 'trial' "
                              f"for {len(ids)} trials") for t in ids}
        result = result.assign_coords(trial=ids)
    declared = [v.name for v in step.output_variables()]
    names = declared or [n for n in result.data_vars if n not in ("status", "error") and n not in ds.data_vars]
    out: dict[int, tuple[Any, str | None]] = {}
    for t in ids:
        try:
            sel = result.sel(trial=t)
            row_status = str(sel["status"].values) if "status" in result else "ok"
            if row_status == "failed":
                out[t] = (None, str(sel["error"].values) if "error" in result else "failed")
                continue
            values = {n: _scalar(sel[n].values) for n in names if n in result}
            out[t] = (check_outputs(step, values), None)
        except Exception as exc:
            exc.location = source_location(step)
            out[t] = (None, describe(exc))
    return out


def _record(tid: int, row: dict[str, Any], outputs: dict[str, Any] | None, error: str | None,
            started: float, finished: float, batch: int) -> TrialRecord:
    return {
        "trial": tid, "inputs": row, "outputs": outputs or {},
        "status": "ok" if error is None else "failed", "error": error or "",
        "batch": batch, "started": started, "finished": finished,
    }


def records_to_dataset(records: list[TrialRecord], input_names: list[str] | None = None,
                       output_names: list[str] | None = None, units: dict[str, str] | None = None):
    """Trial records -> the trials dataset of DESIGN.md (dim ``trial``; params, metrics, status, ...)."""
    import xarray as xr

    records = sorted(records, key=lambda r: r["trial"])
    units = units or {}
    if input_names is None:
        input_names = list(dict.fromkeys(k for r in records for k in r["inputs"]))
    if output_names is None:
        output_names = list(dict.fromkeys(k for r in records for k in r["outputs"]))
    ids = np.array([r["trial"] for r in records], dtype=int)
    data: dict[str, Any] = {}
    for name in input_names:
        vals = [r["inputs"].get(name) for r in records]
        data[name] = ("trial", _column(vals), {"units": units.get(name, ""), "role": "parameter"})
    for name in output_names:
        vals = [r["outputs"].get(name, np.nan) for r in records]
        data[name] = ("trial", _column(vals), {"units": units.get(name, ""), "role": "metric"})
    data["status"] = ("trial", np.array([r["status"] for r in records], dtype=str))
    data["error"] = ("trial", np.array([r["error"] for r in records], dtype=str))
    data["batch"] = ("trial", np.array([r.get("batch", 0) for r in records], dtype=int))
    for key in ("started", "finished"):
        stamps = np.array([int(r[key] * 1e9) for r in records], dtype="int64").astype("datetime64[ns]")
        data[key] = ("trial", stamps)
    return xr.Dataset(data, coords={"trial": ids})


def _column(values: list[Any]) -> np.ndarray:
    if any(isinstance(v, str) for v in values):
        return np.array(["" if v is None else str(v) for v in values], dtype=str)
    return np.array([np.nan if v is None else v for v in values], dtype=float)


class ModelEvaluator(Evaluator):
    """A trained model used as an evaluator (``{stage: name}``): features in, predicted targets out."""

    def __init__(self, model: Any, ctx: RunContext | None = None):
        super().__init__()
        self.model = model
        self._ctx = ctx

    def input_variables(self) -> tuple[Variable, ...]:
        return tuple(Variable(f) for f in self.model.features)

    def output_variables(self) -> tuple[Variable, ...]:
        out = []
        for t in self.model.targets:
            out.append(Variable(t))
        return tuple(out)

    def source_function(self) -> Callable[..., Any]:
        """The model's ``predict``: a NaN prediction is located there."""
        return self.model.predict

    def evaluate(self, designs: xr.Dataset, ctx: RunContext) -> xr.Dataset:
        pred = self.model.predict(designs, ctx)
        out = designs.copy()
        for t in self.model.targets:
            name = f"{t}_mean" if f"{t}_mean" in pred else t
            out[t] = ("trial", np.asarray(pred[name].values, dtype=float))
            if f"{t}_std" in pred:
                out[f"{t}_std"] = ("trial", np.asarray(pred[f"{t}_std"].values, dtype=float))
        return out


def build_evaluator(specs: list[Any], ctx: RunContext) -> Pipeline:
    """Instantiate an ``evaluate:`` pipeline; ``{stage: s}`` steps become that stage's trained model."""
    steps: list[Evaluator] = []
    labels: list[str] = []
    for spec in specs:
        if spec.stage is not None:
            steps.append(ModelEvaluator(ctx.model(spec.stage), ctx))
        else:
            steps.append(spec.create())
        labels.append(spec.label)
    pipeline = Pipeline(steps, labels)
    pipeline.setup(ctx)
    return pipeline


def run_journaled(pipeline: Pipeline, designs: xr.Dataset, ctx: RunContext, *, batch_size: int,
                  units: dict[str, str] | None = None) -> xr.Dataset:
    """Evaluate every trial of ``designs`` not already in the stage's journal; return all trials.

    Each finished trial is appended to ``<stage>/trials.jsonl`` at once, so a run killed part-way
    resumes without repeating a finished evaluation. Batches of ``batch_size`` trials are reported to
    the ``on_trial_batch`` hook.
    """
    from reflow.store import JOURNAL, TrialJournal

    journal = TrialJournal(ctx.folder / JOURNAL)
    earlier = latest_records(journal.read())
    retry = ctx.resuming and failed_before(ctx.folder)
    done = {r["trial"] for r in earlier if not (retry and r.get("status") == "failed")}
    rows = [(tid, row) for tid, row in design_rows(designs) if tid not in done]
    if done or retry:
        ctx.logger.info("stage %s: %d trials finished earlier, %d to go%s", ctx.stage, len(done), len(rows),
                        " (the stage failed for its failed trials: they are evaluated again)" if retry else "")
    first_batch = max((r.get("batch", 0) for r in earlier), default=-1) + 1
    input_names = [n for n in designs.data_vars if designs[n].dims == ("trial",)]
    with ctx.progress(total=len(rows), description=f"{ctx.stage}: evaluating") as bar:
        for k, start in enumerate(range(0, len(rows), max(1, batch_size))):
            chunk = rows[start:start + batch_size]
            recs = evaluate_trials(pipeline, chunk, ctx, on_done=journal.append, batch=first_batch + k, bar=bar)
            ctx.trial_batch(records_to_dataset(recs, input_names))
    output_names = [v.name for v in pipeline.output_variables()] or None
    all_units = {v.name: v.units for v in (*pipeline.input_variables(), *pipeline.output_variables())}
    all_units.update(units or {})
    return records_to_dataset(latest_records(journal.read()), input_names, output_names, all_units)


def latest_records(records: list[TrialRecord]) -> list[TrialRecord]:
    """One record per trial, the last one journaled (a failed trial evaluated again on resume)."""
    return list({r["trial"]: r for r in records}.values())


# ---- failures of a stage as a whole -----------------------------------------------------------------

FAILURES = "failures.json"
"""In a stage folder: what the stage said about its failed trials, by part (``trials``, ``verify``)."""

MAX_FAILED = 0.2
"""The default share of failed evaluations above which a stage warns."""

SHOWN_ERRORS = 3

_AT = re.compile(r" \(at [^()]*\)$")
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


class TrialsFailed(ReflowError):
    """Every evaluation of a stage failed (or more than the task can use): the stage fails, exit code 1."""


def _error_kind(error: str) -> str:
    """Errors that differ only in their numbers (a trial's value, an id) are one kind; the place is kept."""
    at = _AT.search(error)
    head, tail = (error[:at.start()], at.group()) if at else (error, "")
    return _NUMBER.sub("#", head) + tail


def distinct_errors(errors: list[str], limit: int = SHOWN_ERRORS) -> tuple[list[tuple[str, int]], int]:
    """The ``limit`` most frequent kinds of error as (an example, count), and how many other kinds there are."""
    kinds: dict[str, list[Any]] = {}
    for error in errors:
        entry = kinds.setdefault(_error_kind(error or "failed (no error given)"), [error or "failed", 0])
        entry[1] += 1
    ranked = sorted(kinds.values(), key=lambda e: -e[1])
    return [(str(e), int(c)) for e, c in ranked[:limit]], max(0, len(ranked) - limit)


def failure_note(trials: xr.Dataset, max_failed: float, *, what: str = "evaluations",
                 fail_above: float | None = None) -> dict[str, Any] | None:
    """What a stage must say about the failed trials of ``trials`` (``status``/``error``), or None.

    Every one failed, or more than ``fail_above`` (a task that needs them all): verdict ``failed``. More than
    ``max_failed``: ``warning``. The note holds the counts, the distinct errors and the message.
    """
    status = np.asarray(trials["status"].values).astype(str) if "status" in trials else np.zeros(0, str)
    total = int(status.size)
    bad = status == "failed"
    failed = int(bad.sum())
    if not total or not failed:
        return None
    share = failed / total
    if failed == total or (fail_above is not None and share > fail_above):
        verdict = "failed"
        head = (f"all {total} {what} failed" if failed == total
                else f"{failed} of {total} {what} failed")
    elif share > max_failed:
        verdict = "warning"
        head = f"{failed} of {total} {what} failed ({share:.0%}, more than max_failed {max_failed:.0%})"
    else:
        return None
    errors = [str(e) for e in np.asarray(trials["error"].values)[bad]] if "error" in trials else []
    shown, more = distinct_errors(errors)
    lines = [f"  {count} x {error}" for error, count in shown]
    if more:
        lines.append(f"  ... and {more} other kind{'s' if more != 1 else ''} of error")
    return {"verdict": verdict, "what": what, "trials": total, "failed": failed, "max_failed": max_failed,
            "errors": [{"error": e, "count": c} for e, c in shown], "more": more,
            "message": head + ":\n" + "\n".join(lines)}


def read_failures(folder: Path) -> dict[str, Any]:
    """The notes of ``<folder>/failures.json`` by part; ``{}`` when there are none (or the file is unreadable)."""
    path = Path(folder) / FAILURES
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_failures(folder: Path, part: str, note: dict[str, Any] | None) -> None:
    """Keep (or, with None, drop) the note of ``part`` in ``<folder>/failures.json``."""
    from reflow.store import atomic_write_text

    notes = read_failures(folder)
    if note is None and part not in notes:
        return
    if note is None:
        notes.pop(part)
    else:
        notes[part] = note
    path = Path(folder) / FAILURES
    if notes:
        atomic_write_text(path, json.dumps(notes, indent=2))
    else:
        path.unlink(missing_ok=True)


def failed_before(folder: Path, part: str = "trials") -> bool:
    """Did the stage in ``folder`` fail for its failed trials last time? Then ``--resume`` evaluates them again."""
    return read_failures(folder).get(part, {}).get("verdict") == "failed"
