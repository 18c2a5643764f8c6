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
from reflow.tables import plain, row_dim

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


def design_columns(designs: xr.Dataset) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(trial ids, {input: column}) of a design dataset: the columns as numpy arrays, no per-trial work."""
    dim = row_dim(designs, prefer=("trial",))
    ids = designs[dim].values if dim in designs.coords else np.arange(designs.sizes[dim])
    names = [n for n in designs.data_vars if designs[n].dims == (dim,)]
    return np.asarray(ids, dtype=np.int64), {n: np.asarray(designs[n].values) for n in names}


def design_rows(designs: xr.Dataset) -> list[tuple[int, dict[str, Any]]]:
    """(trial id, {input: python scalar}) for every trial of a design dataset."""
    ids, columns = design_columns(designs)
    return _rows(ids, columns)


def _rows(ids: np.ndarray, columns: Mapping[str, np.ndarray]) -> list[tuple[int, dict[str, Any]]]:
    names = list(columns)
    lists = [columns[n].tolist() for n in names]  # python scalars, converted once per column
    return [(tid, dict(zip(names, values, strict=True))) for tid, *values in zip(ids.tolist(), *lists, strict=True)]


TrialRecord = dict[str, Any]


class TrialTable:
    """Trials as columns (ids, inputs, outputs, error, batch, times): what a vectorized chunk produces.

    Why: a batch evaluated as arrays stays arrays up to the journal lines and the trials dataset, so no per-trial
    dicts are built except the journal's text. ``error`` is ``""`` for a trial that succeeded; the outputs of a
    failed trial are NaN (or ``""`` for a categorical output).
    """

    def __init__(self, ids: np.ndarray, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray],
                 error: np.ndarray, batch: np.ndarray, started: np.ndarray, finished: np.ndarray,
                 ok: np.ndarray | None = None):
        self.ids = np.asarray(ids, dtype=np.int64)
        self.inputs = inputs
        self.outputs = outputs
        self.error = np.asarray(error, dtype=object)
        self.batch = np.asarray(batch, dtype=np.int64)
        self.started = np.asarray(started, dtype=float)
        self.finished = np.asarray(finished, dtype=float)
        self.ok = self.error == "" if ok is None else np.asarray(ok, dtype=bool)

    def __len__(self) -> int:
        return int(self.ids.size)

    @classmethod
    def from_records(cls, records: list[TrialRecord], input_names: list[str] | None = None,
                     output_names: list[str] | None = None) -> TrialTable:
        """Journal records (dicts) -> columns; one pass per column."""
        if input_names is None:
            input_names = list(dict.fromkeys(k for r in records for k in r["inputs"]))
        if output_names is None:
            output_names = list(dict.fromkeys(k for r in records for k in r["outputs"]))
        inputs = {n: _column([r["inputs"].get(n) for r in records]) for n in input_names}
        outputs = {n: _column([r["outputs"].get(n) for r in records]) for n in output_names}
        error = np.empty(len(records), dtype=object)
        error[:] = [r.get("error") or "" for r in records]
        ok = np.array([r["status"] == "ok" for r in records], dtype=bool)
        return cls(np.array([r["trial"] for r in records], dtype=np.int64), inputs, outputs, error,
                   np.array([r.get("batch", 0) for r in records], dtype=np.int64),
                   np.array([r["started"] for r in records], dtype=float),
                   np.array([r["finished"] for r in records], dtype=float), ok)

    @staticmethod
    def concat(tables: list[TrialTable]) -> TrialTable:
        """One table from several (columns a table lacks are NaN or ``""`` there), sorted by trial id."""
        tables = [t for t in tables if len(t)] or tables[:1]
        if not tables:
            return TrialTable(np.zeros(0, np.int64), {}, {}, np.zeros(0, object), np.zeros(0, np.int64),
                              np.zeros(0), np.zeros(0))

        def join(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
            names = list(dict.fromkeys(n for part in parts for n in part))
            out = {}
            for n in names:
                cols = [part.get(n) for part in parts]
                text = any(c is not None and c.dtype.kind in "USO" for c in cols)
                filled = [c if c is not None else np.full(len(t), "" if text else np.nan, dtype=object if text
                                                          else float) for c, t in zip(cols, tables, strict=True)]
                out[n] = _column_array(np.concatenate([c.astype(object) if text else c for c in filled]))
            return out

        ids = np.concatenate([t.ids for t in tables])
        order = np.argsort(ids, kind="stable")
        table = TrialTable(ids, join([t.inputs for t in tables]), join([t.outputs for t in tables]),
                           np.concatenate([t.error for t in tables]),
                           np.concatenate([t.batch for t in tables]), np.concatenate([t.started for t in tables]),
                           np.concatenate([t.finished for t in tables]), np.concatenate([t.ok for t in tables]))
        return table.take(order)

    def take(self, index: np.ndarray) -> TrialTable:
        return TrialTable(self.ids[index], {n: c[index] for n, c in self.inputs.items()},
                          {n: c[index] for n, c in self.outputs.items()}, self.error[index], self.batch[index],
                          self.started[index], self.finished[index], self.ok[index])

    def records(self) -> list[TrialRecord]:
        """One journal record per trial (the format :func:`records_to_dataset` and resume read)."""
        in_names, out_names = list(self.inputs), list(self.outputs)
        in_rows = zip(*[self.inputs[n].tolist() for n in in_names], strict=True) if in_names else None
        out_lists = [self.outputs[n].tolist() for n in out_names]
        out_rows = zip(*out_lists, strict=True) if out_names else None
        records = []
        for tid, error, ok, batch, started, finished in zip(
                self.ids.tolist(), self.error.tolist(), self.ok.tolist(), self.batch.tolist(),
                self.started.tolist(), self.finished.tolist(), strict=True):
            inputs = dict(zip(in_names, next(in_rows), strict=True)) if in_rows is not None else {}
            outs = next(out_rows) if out_rows is not None else ()
            records.append({
                "trial": tid, "inputs": inputs,
                "outputs": dict(zip(out_names, outs, strict=True)) if ok else {},
                "status": "ok" if ok else "failed", "error": error,
                "batch": batch, "started": started, "finished": finished,
            })
        return records

    def journal_text(self) -> str:
        """The journal lines of :meth:`records` (the same JSON), encoded column by column: a number's text is
        Python's ``repr`` as in ``json.dumps``, so no per-trial dict is built or walked."""
        if not len(self):
            return ""
        ok = self.ok
        lines: list[str | None] = [None] * len(self)
        if ok.any():
            idx = np.flatnonzero(ok)
            in_names, out_names = list(self.inputs), list(self.outputs)
            head = '{"trial": %s, "inputs": {' + ", ".join(json.dumps(n) + ": %s" for n in in_names) + '}, '
            head += '"outputs": {' + ", ".join(json.dumps(n) + ": %s" for n in out_names) + '}, '
            template = head + '"status": "ok", "error": "", "batch": %s, "started": %s, "finished": %s}\n'
            cols = [_json_texts(self.ids[idx]), *(_json_texts(self.inputs[n][idx]) for n in in_names),
                    *(_json_texts(self.outputs[n][idx]) for n in out_names), _json_texts(self.batch[idx]),
                    _json_texts(self.started[idx]), _json_texts(self.finished[idx])]
            for i, values in zip(idx.tolist(), zip(*cols, strict=True), strict=True):
                lines[i] = template % values
        if not ok.all():
            bad = np.flatnonzero(~ok)
            for i, rec in zip(bad.tolist(), self.take(bad).records(), strict=True):
                lines[i] = json.dumps(rec, default=_json_scalar) + "\n"
        return "".join(lines)  # type: ignore[arg-type]

    def to_dataset(self, input_names: list[str] | None = None, output_names: list[str] | None = None,
                   units: dict[str, str] | None = None) -> xr.Dataset:
        """The trials dataset of DESIGN.md (dim ``trial``; params, metrics, status, error, batch, times)."""
        import xarray as xr

        units = units or {}
        n = len(self)
        data: dict[str, Any] = {}
        for name in self.inputs if input_names is None else input_names:
            col = self.inputs.get(name)
            data[name] = ("trial", col if col is not None else np.full(n, np.nan),
                          {"units": units.get(name, ""), "role": "parameter"})
        for name in self.outputs if output_names is None else output_names:
            col = self.outputs.get(name)
            col = np.full(n, np.nan) if col is None else col
            if not self.ok.all() and col.dtype.kind == "f":
                col = np.where(self.ok, col, np.nan)
            data[name] = ("trial", col, {"units": units.get(name, ""), "role": "metric"})
        data["status"] = ("trial", np.where(self.ok, "ok", "failed").astype(str))
        data["error"] = ("trial", self.error.astype(str))
        data["batch"] = ("trial", self.batch)
        data["started"] = ("trial", (self.started * 1e9).astype("int64").astype("datetime64[ns]"))
        data["finished"] = ("trial", (self.finished * 1e9).astype("int64").astype("datetime64[ns]"))
        return xr.Dataset(data, coords={"trial": self.ids})


def _json_texts(col: np.ndarray) -> list[str]:
    """Each value of a column as JSON text, the way ``json.dumps`` writes it (NaN, Infinity included)."""
    if col.dtype.kind in "iub":
        return list(map(str, col.astype(np.int64).tolist())) if col.dtype.kind != "b" else [
            "true" if v else "false" for v in col.tolist()]
    if col.dtype.kind == "f":
        texts = list(map(float.__repr__, col.astype(float).tolist()))
        if not np.isfinite(col).all():
            for i in np.flatnonzero(~np.isfinite(col)).tolist():
                v = float(col[i])
                texts[i] = "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
        return texts
    seen: dict[Any, str] = {}
    return [seen[v] if v in seen else seen.setdefault(v, json.dumps(v, default=_json_scalar)) for v in col.tolist()]


def _json_scalar(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON serializable: {type(v).__name__}")


def evaluate_trials(evaluator: Any, designs: xr.Dataset | list[tuple[int, dict[str, Any]]], ctx: RunContext,
                    *, on_done: Callable[[list[TrialRecord]], None] | None = None,
                    timeout: float | None = None, batch: int = 0, bar: Any = None) -> list[TrialRecord]:
    """Evaluate trials through ``ctx.executor``; return one record per trial, failures included.

    Per-trial evaluators and pipelines run trial by trial and ``on_done`` sees each finished trial at
    once; a pipeline with a vectorized step (``evaluate_arrays``, or a batch ``evaluate``) runs step by step
    on the whole lot as arrays and ``on_done`` sees it at its end.
    """
    rows = design_rows(designs) if not isinstance(designs, list) else designs
    if not rows:
        return []
    if timeout is None:
        timeout = ctx.timeout
    if is_vectorized(evaluator):
        ids = np.array([tid for tid, _ in rows], dtype=np.int64)
        names = list(dict.fromkeys(k for _, row in rows for k in row))
        columns = {n: _column([row.get(n) for _, row in rows]) for n in names}
        records = evaluate_columns(evaluator, ids, columns, ctx, timeout=timeout, batch=batch).records()
        if on_done is not None:
            on_done(records)
        if bar is not None:
            bar.advance(len(rows))
        return records
    return _evaluate_each(evaluator, rows, ctx, timeout, np.full(len(rows), batch), on_done, bar)


def _evaluate_each(evaluator: Any, rows: list[tuple[int, dict[str, Any]]], ctx: RunContext,
                   timeout: float | None, batches: np.ndarray, on_done: Callable[[list[TrialRecord]], None] | None,
                   bar: Any) -> list[TrialRecord]:
    """Trial by trial through the executor (which sends chunks of them to its workers); ``on_done`` sees each
    trial as soon as it finishes, so a kill loses only the evaluations running at that moment."""
    records: list[TrialRecord] = []
    items = [(evaluator, row) for _, row in rows]
    with contextlib.ExitStack() as stack:
        if bar is None:
            bar = stack.enter_context(ctx.progress(total=len(rows), description=f"{ctx.stage}: evaluating"))
        for i, outcome in ctx.executor.map(_run_trial, items, timeout):
            tid, row = rows[i]
            rec = _record(tid, row, outcome.value, outcome.error, outcome.started, outcome.finished,
                          int(batches[i]))
            records.append(rec)
            if on_done is not None:
                on_done([rec])
            bar.advance()
    return records


def _steps(evaluator: Any) -> tuple[list[Any], list[str]]:
    if isinstance(evaluator, Pipeline):
        return evaluator.steps, evaluator.labels
    return [evaluator], [type(evaluator).__name__]


def _step_is_columnar(step: Any) -> bool:
    return bool(step.is_batch) or step.has_arrays


def is_vectorized(evaluator: Any) -> bool:
    """Does any step of ``evaluator`` work on whole columns (``evaluate_arrays``, or a batch ``evaluate``)?

    Then the pipeline runs step by step over a chunk of trials as arrays; otherwise trial by trial.
    """
    return any(_step_is_columnar(s) for s in _steps(evaluator)[0])


def evaluate_columns(evaluator: Any, ids: np.ndarray, columns: dict[str, np.ndarray], ctx: RunContext, *,
                     timeout: float | None = None, batch: int | np.ndarray = 0,
                     batch_size: int | None = None) -> TrialTable:
    """Evaluate a chunk of trials given as columns, step by step; one failing row fails only its trial.

    A step with ``evaluate_arrays`` gets its inputs as arrays; a row it returns as NaN/inf (or every row, if it
    raises) is evaluated again through ``evaluate_one``, so that trial's error is the per-trial one, located
    in the plugin. A batch step (``evaluate`` overridden) gets an ``xarray.Dataset`` of the rows still alive,
    ``batch_size`` rows per call (the stage's batches; a step with ``any_batch_size`` takes them all at once).
    A per-trial step runs row by row through the executor.
    """
    steps, labels = _steps(evaluator)
    n = int(ids.size)
    started = time.time()
    ns: dict[str, np.ndarray] = dict(columns)
    error = np.full(n, "", dtype=object)
    out_names: list[str] = []
    prefix = len(steps) > 1
    for label, step in zip(labels, steps, strict=True):
        alive = np.flatnonzero(error == "")
        if not alive.size:
            break
        tag = f"step {label!r}: " if prefix else ""
        values, errors = _step_columns(step, ids, alive, ns, ctx, timeout, batch_size)
        for pos, err in errors.items():
            error[pos] = tag + err
        for name, col in values.items():
            ns[name] = _merge(ns.get(name), col, alive, n)
            if name not in out_names:
                out_names.append(name)
    finished = time.time()
    batches = np.broadcast_to(np.asarray(batch, dtype=np.int64), (n,)).copy()
    return TrialTable(ids, dict(columns), {k: ns[k] for k in out_names}, error, batches,
                      np.full(n, started), np.full(n, finished))


def _merge(old: np.ndarray | None, col: np.ndarray, alive: np.ndarray, n: int) -> np.ndarray:
    """A full-length column with ``col`` at the positions ``alive`` (NaN or "" elsewhere)."""
    text = col.dtype.kind in "USO"
    if old is not None and old.shape == (n,) and (old.dtype.kind in "USO") == text:
        full = old.astype(object if text else float, copy=True)
    else:
        full = np.full(n, "" if text else np.nan, dtype=object if text else float)
    full[alive] = col
    return full


def _step_args(step: Any, ns: Mapping[str, np.ndarray], alive: np.ndarray) -> dict[str, np.ndarray]:
    """The input columns ``step`` takes (rows ``alive``), its declared defaults for the rest."""
    if step.accepts_any_inputs:
        return {k: v[alive] for k, v in ns.items()}
    args: dict[str, np.ndarray] = {}
    missing = []
    for v in step.input_variables():
        if v.name in ns:
            args[v.name] = ns[v.name][alive]
        elif v.default is not None:
            args[v.name] = np.full(alive.size, v.default)
        else:
            missing.append(v.name)
    if missing:
        raise EvaluationError(f"missing inputs {', '.join(missing)} (no default; add them to the space)")
    return args


def _step_columns(step: Any, ids: np.ndarray, alive: np.ndarray, ns: Mapping[str, np.ndarray], ctx: RunContext,
                  timeout: float | None, batch_size: int | None = None
                  ) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """One step over the rows ``alive``: (output columns for those rows, {row position: error})."""
    try:
        args = _step_args(step, ns, alive)
    except Exception as exc:
        return {}, {int(p): str(exc) for p in alive}
    if step.has_arrays:
        return _array_step(step, alive, args, timeout)
    if step.is_batch:
        size = None if step.any_batch_size else batch_size
        if not size or alive.size <= size:
            return _batch_step(step, ids, alive, args, ctx, timeout)
        cols: dict[str, np.ndarray] = {}
        errors: dict[int, str] = {}
        for start in range(0, alive.size, size):  # one call per batch of the stage: the plugin's batch size
            part = slice(start, start + size)
            values, errs = _batch_step(step, ids, alive[part], {k: v[part] for k, v in args.items()}, ctx, timeout)
            errors.update(errs)
            for k, col in values.items():
                if k not in cols:
                    text = col.dtype.kind in "USO"
                    cols[k] = np.full(alive.size, "" if text else np.nan, dtype=object if text else float)
                cols[k][part] = col
        return cols, errors
    rows = [row for _, row in _rows(ids[alive], args)]
    results: dict[int, tuple[Any, str | None]] = {}
    for i, outcome in ctx.executor.map(run_step, [(step, r) for r in rows], timeout):
        results[i] = (outcome.value, outcome.error)
    return _gather(step, alive, results)


def _gather(step: Any, alive: np.ndarray, results: Mapping[int, tuple[Any, str | None]]
            ) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """Per-row results ({index in alive: (outputs or None, error)}) -> output columns and errors."""
    names = [v.name for v in step.output_variables()]
    for value, _ in results.values():
        if value:
            names += [k for k in value if k not in names]
    errors: dict[int, str] = {}
    cols: dict[str, list[Any]] = {k: [None] * alive.size for k in names}
    for i in range(alive.size):
        value, error = results.get(i, (None, "no result"))
        if error is not None:
            errors[int(alive[i])] = error
            continue
        for k, v in value.items():
            cols[k][i] = v
    return {k: _column(v) for k, v in cols.items()}, errors


def _array_step(step: Any, alive: np.ndarray, args: dict[str, np.ndarray], timeout: float | None
                ) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """``evaluate_arrays`` on the whole chunk; rows it cannot give (NaN, inf, or all when it raises) go through
    ``evaluate_one`` one by one, which gives them their value or their own error with the plugin's location."""
    names = [v.name for v in step.output_variables()]
    m = alive.size
    try:
        with np.errstate(all="ignore"):
            raw = step.evaluate_arrays(args)
        cols = {k: np.broadcast_to(np.asarray(raw[k], dtype=float), (m,)).copy() for k in names}
        redo = np.zeros(m, dtype=bool)
        for col in cols.values():
            redo |= ~np.isfinite(col)
    except Exception:  # noqa: BLE001 - every row is tried on its own, and fails with its own error
        cols = {k: np.full(m, np.nan) for k in names}
        redo = np.ones(m, dtype=bool)
    errors: dict[int, str] = {}
    if redo.any():
        rows = _rows(np.flatnonzero(redo), {k: v[redo] for k, v in args.items()})
        for (i, row) in rows:
            outcome = call_safely(run_step, (step, row), timeout)
            if outcome.error is not None:
                errors[int(alive[i])] = outcome.error
                continue
            for k in names:
                cols[k][i] = outcome.value[k]
    return cols, errors


def _batch_step(step: Any, ids: np.ndarray, alive: np.ndarray, args: dict[str, np.ndarray], ctx: RunContext,
                timeout: float | None) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """A batch ``evaluate`` on the rows ``alive`` as one Dataset; its result checked as columns."""
    import xarray as xr

    tids = ids[alive]
    every = {int(p) for p in alive}

    def all_fail(message: str) -> tuple[dict[str, np.ndarray], dict[int, str]]:
        return {}, dict.fromkeys(every, message)

    ds = xr.Dataset({n: ("trial", v) for n, v in args.items()}, coords={"trial": tids})
    outcome = call_safely(step.evaluate, (ds, ctx), None if timeout is None else timeout * max(1, tids.size))
    if not outcome.ok:
        return all_fail(f"batch failed: {outcome.error}")
    result = outcome.value
    if not isinstance(result, xr.Dataset):
        return all_fail(f"a batch evaluator must return an xarray.Dataset, got {type(result).__name__}")
    if "trial" not in result.indexes:  # rows in the order given: label them, never match by position later
        if result.sizes.get("trial") != tids.size:
            return all_fail(f"the batch result has {result.sizes.get('trial', 0)} rows on dim 'trial' "
                            f"for {tids.size} trials")
        result = result.assign_coords(trial=tids)
    declared = [v.name for v in step.output_variables()]
    names = declared or [n for n in result.data_vars if n not in ("status", "error") and n not in ds.data_vars]
    present = [n for n in names if n in result]
    try:
        labels = np.asarray(result["trial"].values)
        where = {int(t): i for i, t in enumerate(labels.tolist())}
    except (TypeError, ValueError):
        return all_fail("the batch result's 'trial' labels are not trial ids")
    if len(where) != labels.size:
        return all_fail("the batch result has a trial more than once")
    index = np.array([where.get(int(t), -1) for t in tids.tolist()], dtype=np.int64)
    errors: dict[int, str] = {}
    for pos, k in zip(alive.tolist(), index.tolist(), strict=True):
        if k < 0:
            errors[pos] = "the batch result has no row for this trial"
    if len(present) < len(names):  # a declared output missing: the message check_outputs gives, for every row
        try:
            check_outputs(step, dict.fromkeys([*present, *[n for n in result.data_vars if n not in names]], 0.0))
        except EvaluationError as exc:
            exc.location = source_location(step)
            return all_fail(describe(exc))
    if "status" in result:
        status = np.asarray(result["status"].values).astype(str)
        msgs = np.asarray(result["error"].values).astype(str) if "error" in result else None
        for pos, k in zip(alive.tolist(), index.tolist(), strict=True):
            if k >= 0 and status[k] == "failed" and pos not in errors:
                errors[pos] = str(msgs[k]) if msgs is not None else "failed"
    take = np.where(index < 0, 0, index)
    cols: dict[str, np.ndarray] = {}
    numeric = not any(v.choices for v in step.output_variables())
    for n in names:
        raw = np.asarray(result[n].values)
        if raw.shape != labels.shape or not numeric or raw.dtype.kind not in "biuf":
            return _batch_rows(step, alive, names, result, index, errors)
        cols[n] = raw[take].astype(float)
    bad = np.zeros(alive.size, dtype=bool)
    for col in cols.values():
        bad |= ~np.isfinite(col)
    for i in np.flatnonzero(bad).tolist():
        pos = int(alive[i])
        if pos in errors:
            continue
        try:
            check_outputs(step, {n: cols[n][i] for n in names})
        except EvaluationError as exc:
            exc.location = source_location(step)
            errors[pos] = describe(exc)
    return cols, errors


def _batch_rows(step: Any, alive: np.ndarray, names: list[str], result: xr.Dataset, index: np.ndarray,
                errors: dict[int, str]) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """The row-by-row check of a batch result whose outputs are not plain number columns (text, categories)."""
    results: dict[int, tuple[Any, str | None]] = {}
    columns = {n: np.asarray(result[n].values) for n in names}
    for i, (pos, k) in enumerate(zip(alive.tolist(), index.tolist(), strict=True)):
        if pos in errors:
            results[i] = (None, errors[pos])
            continue
        try:
            results[i] = (check_outputs(step, {n: plain(columns[n][k]) for n in names}), None)
        except Exception as exc:
            exc.location = source_location(step)
            results[i] = (None, describe(exc))
    return _gather(step, alive, results)


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
    return TrialTable.from_records(records, input_names, output_names).take(
        np.argsort(np.array([r["trial"] for r in records], dtype=np.int64), kind="stable")
    ).to_dataset(input_names, output_names, units)


def _column(values: list[Any]) -> np.ndarray:
    """A list of python values -> a float column (None -> NaN), or a text column when any value is text."""
    arr = np.asarray(values) if values else np.zeros(0)
    if arr.dtype.kind in "fiub":
        return arr.astype(float)
    if arr.dtype.kind in "US":
        return arr.astype(str)
    if any(isinstance(v, str) for v in values):
        return np.array(["" if v is None else str(v) for v in values], dtype=str)
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _column_array(col: np.ndarray) -> np.ndarray:
    if col.dtype.kind == "O":
        return _column(col.tolist())
    return col


class ModelEvaluator(Evaluator):
    """A trained model used as an evaluator (``{stage: name}``): features in, predicted targets out."""

    any_batch_size = True
    """A model predicts a whole chunk of trials in one call, whatever the stage's ``batch_size``."""

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


CHUNK = 4096
"""Trials per chunk of a vectorized pipeline when the executor sets no ``chunk_size``: large enough that the
per-chunk costs (a Dataset, a journal write) vanish per trial, small enough to bound memory and the work a
``kill -9`` throws away."""


def run_journaled(pipeline: Pipeline, designs: xr.Dataset, ctx: RunContext, *, batch_size: int,
                  units: dict[str, str] | None = None) -> xr.Dataset:
    """Evaluate every trial of ``designs`` not already in the stage's journal; return all trials.

    A vectorized pipeline (:func:`is_vectorized`) runs chunk by chunk as arrays, and each finished chunk is
    appended to the stage's journal (``ctx.store.journal()``) in one write; a per-trial pipeline journals each
    trial as it finishes. So a run killed part-way resumes without repeating a finished evaluation. Trials are
    numbered in batches of ``batch_size`` (the ``batch`` variable), each reported to the ``on_trial_batch`` hook
    when a plugin listens.
    """
    journal = ctx.store.journal()
    earlier = latest_records(journal.read())
    retry = ctx.resuming and failed_before(ctx.folder)
    done = {r["trial"] for r in earlier if not (retry and r.get("status") == "failed")}
    all_ids, columns = design_columns(designs)
    todo = ~np.isin(all_ids, np.fromiter(done, dtype=np.int64, count=len(done)))
    ids, columns = all_ids[todo], {k: v[todo] for k, v in columns.items()}
    if done or retry:
        ctx.logger.info("stage %s: %d trials finished earlier, %d to go%s", ctx.stage, len(done), ids.size,
                        " (the stage failed for its failed trials: they are evaluated again)" if retry else "")
    first_batch = max((r.get("batch", 0) for r in earlier), default=-1) + 1
    batches = first_batch + np.arange(ids.size) // max(1, batch_size)
    input_names = list(columns)
    listening = ctx.wants_trial_batches()
    tables: list[TrialTable] = []
    timeout = ctx.timeout
    try:
        with ctx.progress(total=int(ids.size), description=f"{ctx.stage}: evaluating") as bar:
            if is_vectorized(pipeline):
                size = chunk_size(ctx, int(ids.size), batch_size)
                for start in range(0, ids.size, size):
                    part = slice(start, start + size)
                    table = evaluate_columns(pipeline, ids[part], {k: v[part] for k, v in columns.items()}, ctx,
                                             timeout=timeout, batch=batches[part], batch_size=batch_size)
                    journal.append_text(table.journal_text())
                    tables.append(table)
                    if listening:
                        for b in np.unique(table.batch):
                            ctx.trial_batch(table.take(np.flatnonzero(table.batch == b)).to_dataset(input_names))
                    bar.advance(len(table))
            elif ids.size:
                pending: list[TrialRecord] = []

                def done_one(recs: list[TrialRecord]) -> None:
                    journal.append(recs)
                    if listening:
                        pending.extend(recs)
                        if len(pending) >= batch_size:
                            ctx.trial_batch(records_to_dataset(pending, input_names))
                            pending.clear()

                recs = _evaluate_each(pipeline, _rows(ids, columns), ctx, timeout, batches, done_one, bar)
                if pending:
                    ctx.trial_batch(records_to_dataset(pending, input_names))
                tables.append(TrialTable.from_records(recs, input_names))
    finally:
        journal.close()
    fresh = {int(t) for table in tables for t in table.ids.tolist()}
    kept = [r for r in earlier if r["trial"] not in fresh]
    output_names = [v.name for v in pipeline.output_variables()] or None
    if kept:
        tables.append(TrialTable.from_records(kept, input_names, output_names))
    all_units = {v.name: v.units for v in (*pipeline.input_variables(), *pipeline.output_variables())}
    all_units.update(units or {})
    return TrialTable.concat(tables).to_dataset(input_names, output_names, all_units)


def chunk_size(ctx: RunContext, n: int, batch_size: int = 1) -> int:
    """Trials per chunk of a vectorized pipeline: the executor's ``chunk_size`` if set, else :data:`CHUNK`, in whole
    batches of ``batch_size`` (a batch evaluator is called once per batch; a batch never spans two chunks)."""
    from reflow.runner import Run

    # a study's run says it in its executor config; a test's stand-in run (no study) takes the default
    configured = ctx.run.study.executor.chunk_size if isinstance(ctx.run, Run) else None
    size = max(1, min(int(configured or CHUNK), max(n, 1)))
    batch_size = max(1, batch_size)
    return max(batch_size, size // batch_size * batch_size)


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
