"""Lab ask/tell: experiments out to a CSV, measurements back in, checked before anything is stored.

The CSV that ``reflow ask`` writes has one row per experiment: ``trial``, every parameter of the space
with its units in the header (``cure_temperature_c [degC]``), an empty column per measured output (with
its units) and an empty ``error`` column (write why an experiment failed there). ``reflow tell`` reads it
back; every problem (missing or extra columns, other units, values outside the space or unlike the
asked ones, non-numbers, duplicates, trials never asked, or told before with other results, a row with both
results and an error, a cell over :data:`MAX_CELL` characters) is reported at once with its line and column,
and nothing is stored unless the whole file is clean. Numbers are read strictly: plain decimals such as
``150``, ``-1.5`` or ``1.5e2`` (no ``1_5_0``, no thousands separators, no other digits than 0-9). Rows whose
outputs are all still empty are skipped and rows that repeat stored results are ignored (and counted as
stored before), so one CSV can be told part-filled, then again when more rows are filled in. A lab may round a
continuous parameter (by up to 0.1 % of its range); the value as run is what is stored. Both commands hold the
run folder's writer lock (:class:`reflow.store.RunLock`), so two of them never hand out or store the same trial.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reflow.components import LabTask
from reflow.errors import UserInputError
from reflow.store import lock_run
from reflow.tables import plain

if TYPE_CHECKING:
    import xarray as xr
    from reflow.space import Space

_HEADER = re.compile(r"^\s*([^\[\]]*?)\s*(?:\[\s*([^\]]*?)\s*\])?\s*$")
MAX_PROBLEMS = 25
MAX_CELL = 2000
"""The most characters one cell of a results CSV may hold (a long note in ``error`` fits; a pasted file does not)."""
MAX_FILE = 20_000_000
"""The largest results CSV read, in bytes (a lab's CSV is a few kB)."""
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)",
                     re.IGNORECASE)
_WHOLE = re.compile(r"[+-]?[0-9]{1,18}")
ROUNDING = 1e-3
"""How far (as a fraction of its range) a continuous parameter in a results CSV may be from the asked value."""


def column(name: str, units: str) -> str:
    """``name [units]``, or ``name`` for a quantity without units."""
    return f"{name} [{units}]" if units and units != "1" else name


def lab_value(parameter: Any, value: float) -> str:
    """A continuous value rounded to 1/10 000 of its range: as precise as a lab works, and well inside the
    rounding ``tell`` accepts (:data:`ROUNDING`)."""
    if parameter.log:
        return f"{value:.5g}"
    step = (parameter.high - parameter.low) * 1e-4
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 6
    return f"{value:.{decimals}f}"


def parse_number(text: str) -> float:
    """A number as a lab writes it, read strictly: ValueError for ``1_5_0``, ``1,5``, ``١٥٠`` or ``0x10``
    (Python's ``float`` accepts the first and third)."""
    if not _NUMBER.fullmatch(text.strip()):
        raise ValueError(f"not a plain decimal number: {text!r}")
    return float(text)


def parse_whole(text: str) -> int:
    """A whole number (a trial id), read strictly like :func:`parse_number`."""
    if not _WHOLE.fullmatch(text.strip()):
        raise ValueError(f"not a whole number: {text!r}")
    return int(text)


def experiments_csv(experiments: xr.Dataset, space: Space, outputs: dict[str, str]) -> str:
    """The CSV text for the asked ``experiments`` (dim ``trial``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["trial", *(column(p.name, p.units) for p in space.parameters),
                     *(column(n, u) for n, u in outputs.items()), "error"])
    for i, trial in enumerate(experiments["trial"].values):
        row = [int(trial)]
        for p in space.parameters:
            v = experiments[p.name].values[i]
            v = plain(v)
            if p.kind == "continuous":
                row.append(lab_value(p, float(v)))
            elif p.kind == "integer":
                row.append(str(int(v)))
            elif p.kind == "fixed":
                row.append(str(p.value))
            else:  # the choice as written in the study (numeric choices come back from a Dataset as floats)
                row.append(str(p.as_choice(v)))
        writer.writerow(row + [""] * len(outputs) + [""])
    return buf.getvalue()


def read_results(path: Path, space: Space, outputs: dict[str, str], asked: dict[int, dict[str, Any]],
                 told: dict[int, dict[str, Any]] | set[int]) -> tuple[list[dict[str, Any]], int, int]:
    """Check a results CSV against the asked experiments; return (trial records to store, rows skipped because
    they have no results yet, rows that repeat results stored before).

    ``told`` maps the trials already stored to their records: a row that repeats them is left out (the same
    CSV told again after more rows were filled in); one that differs is an error.
    """
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE:
            raise UserInputError(f"{path}: {path.stat().st_size} bytes is too large for a results CSV (at most "
                                 f"{MAX_FILE}); give the CSV that reflow ask wrote, filled in")
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"cannot read the results file {path}: {exc}") from None
    rows = _read_rows(path, text)
    if not rows:
        raise UserInputError(f"{path}: the file is empty (expected the CSV that reflow ask wrote, filled in)")
    problems: list[str] = []
    (first, header), body = rows[0], rows[1:]
    _check_cells(first, header, header, problems)
    if problems:
        raise UserInputError(_message(path, problems))
    index = _check_header(header, space, outputs, problems)
    if problems:
        raise UserInputError(_message(path, problems))
    records: list[dict[str, Any]] = []
    seen: dict[int, int] = {}
    skipped = repeated = 0
    for line, row in body:
        where = f"line {line}"
        if len(row) != len(header):
            problems.append(f"{where}: {len(row)} cells for {len(header)} columns")
            continue
        if not _check_cells(line, header, row, problems):
            continue
        cell = {key: row[i].strip() for key, i in index.items()}
        try:
            trial = parse_whole(cell["trial"])
        except ValueError:
            problems.append(f"{where}: trial {cell['trial']!r} is not a whole number")
            continue
        where = f"line {line} (trial {trial})"
        if trial in seen:
            problems.append(f"{where}: trial {trial} appears twice (also on line {seen[trial]})")
            continue
        seen[trial] = line
        if trial not in asked:
            problems.append(f"{where}: trial {trial} was never asked (asked: {_ids(asked)})")
            continue
        measured = {n: cell[n] for n in outputs}
        error = cell.get("error", "")
        if error and any(measured.values()):
            given = ", ".join(n for n, raw in measured.items() if raw)
            problems.append(f"{where}: the row has results ({given}) and an error ({error[:60]!r}): give one or "
                            "the other, the results of an experiment that worked or, in the error column, why it "
                            "failed")
            continue
        if trial in told:
            if _same_as_stored(trial, measured, error, told):
                repeated += 1  # the same CSV told again after filling more rows: stored before, nothing new
            else:
                problems.append(f"{where}: trial {trial} was told already with other results; its stored results "
                                "stay (ask for a repeat experiment instead)")
            continue
        if not any(measured.values()) and not error:
            skipped += 1  # not measured yet
            continue
        as_run = _check_inputs(where, cell, space, asked[trial]["inputs"], problems)
        values: dict[str, float] = {}
        if not error:
            for name, raw in measured.items():
                if not raw:
                    problems.append(f"{where}: {name} is empty (fill in every output, or write why the experiment "
                                    "failed in the error column)")
                    continue
                try:
                    number = parse_number(raw)
                except ValueError:
                    problems.append(f"{where}: {name} = {raw!r} is not a number")
                    continue
                if not math.isfinite(number):
                    problems.append(f"{where}: {name} = {raw!r} is not a finite number")
                    continue
                values[name] = number
        now = time.time()
        records.append({"trial": trial, "inputs": {**asked[trial]["inputs"], **as_run},
                        "outputs": values if not error else {},
                        "status": "failed" if error else "ok", "error": error, "batch": asked[trial]["batch"],
                        "started": asked[trial].get("asked", now), "finished": now})
    if problems:
        raise UserInputError(_message(path, problems))
    return records, skipped, repeated


def _read_rows(path: Path, text: str) -> list[tuple[int, list[str]]]:
    """The non-blank records of a CSV with the line each starts on (a quoted cell may span lines)."""
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))  # cells are measured by _check_cells, with row and column
    try:
        reader = csv.reader(io.StringIO(text))
        rows: list[tuple[int, list[str]]] = []
        start = 1
        for row in reader:
            if any(cell.strip() for cell in row):
                rows.append((start, row))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise UserInputError(f"{path}: line {reader.line_num}: not a readable CSV ({exc})") from None
    finally:
        csv.field_size_limit(limit)
    return rows


def _check_cells(line: int, header: list[str], row: list[str], problems: list[str]) -> bool:
    """Refuse cells longer than :data:`MAX_CELL`, naming line and column; True if every cell is fine."""
    ok = True
    for i, value in enumerate(row):
        if len(value) > MAX_CELL:
            name = header[i] if i < len(header) and len(header[i]) <= 80 else f"number {i + 1}"
            problems.append(f"line {line}, column {name!r}: the cell holds {len(value)} characters; at most "
                            f"{MAX_CELL} are allowed")
            ok = False
    return ok


def _check_header(header: list[str], space: Space, outputs: dict[str, str], problems: list[str]) -> dict[str, int]:
    expected = {"trial": "", **{p.name: p.units for p in space.parameters}, **outputs, "error": ""}
    index: dict[str, int] = {}
    for i, raw in enumerate(header):
        m = _HEADER.match(raw)
        name, units = (m.group(1), m.group(2) or "") if m else (raw.strip(), "")
        if name not in expected:
            close = difflib.get_close_matches(name, list(expected), n=1)
            problems.append(f"column {raw!r} is not part of this stage" + (f"; did you mean {close[0]!r}?" if close
                                                                             else ""))
            continue
        if name in index:
            problems.append(f"column {name!r} appears twice")
            continue
        want = expected[name]
        if (want or units) and units != want and not (want == "1" and not units):
            problems.append(f"column {raw!r}: the units must be {want or 'none'}, not {units or 'none'} "
                            f"(reflow never converts units: convert the values and write {column(name, want)!r})")
        index[name] = i
    missing = [column(n, u) for n, u in expected.items() if n not in index and n != "error"]
    if missing:
        problems.append(f"missing columns: {', '.join(repr(m) for m in missing)}")
    return index


def _same_as_stored(trial: int, measured: dict[str, str], error: str, told: Any) -> bool:
    """Does this row repeat the results already stored for ``trial``?"""
    stored = told.get(trial) if isinstance(told, dict) else None
    if stored is None:
        return False
    if error or stored.get("status") == "failed":
        return error == stored.get("error", "")
    try:
        return all(math.isclose(parse_number(raw), float(stored["outputs"][n]), rel_tol=1e-9, abs_tol=1e-12)
                   for n, raw in measured.items())
    except (KeyError, TypeError, ValueError):
        return False


def _check_inputs(where: str, cell: dict[str, str], space: Space, asked: dict[str, Any],
                  problems: list[str]) -> dict[str, Any]:
    """Check the parameters of a row; return the values as run (continuous ones may be rounded by the lab)."""
    as_run: dict[str, Any] = {}
    for p in space.parameters:
        raw = cell[p.name]
        value: Any = raw
        textual = p.kind == "categorical" or (p.kind == "fixed" and isinstance(p.value, str))
        if not textual:
            try:
                value = parse_number(raw)
            except ValueError:
                problems.append(f"{where}: {p.name} = {raw!r} is not a number")
                continue
        elif p.kind == "categorical":
            value = next((c for c in p.choices if str(c) == raw), raw)
        if not p.contains(value):
            allowed = (f"one of {list(p.choices)}" if p.kind == "categorical" else
                       f"{p.value}" if p.kind == "fixed" else f"{p.low:g} to {p.high:g}")
            problems.append(f"{where}: {p.name} = {raw!r} is outside the space (allowed: {allowed})")
            continue
        want = asked.get(p.name)
        if textual:
            same = str(value) == str(want)
        elif p.kind == "continuous":  # a lab rounds: accept 0.1 % of the range, and keep the value as run
            same = abs(float(value) - float(want)) <= ROUNDING * (p.high - p.low) + 1e-12
            as_run[p.name] = float(value)
        else:
            same = math.isclose(float(value), float(want), rel_tol=1e-9, abs_tol=1e-12)
        if not same:
            problems.append(f"{where}: {p.name} = {raw!r} but the experiment asked for {want!r} (run the asked "
                            "experiment, or ask for a new one)")
    return as_run


def _ids(asked: dict[int, Any]) -> str:
    ids = sorted(asked)
    return ", ".join(map(str, ids)) if len(ids) <= 12 else f"{ids[0]} to {ids[-1]}"


def _message(path: Path, problems: list[str]) -> str:
    shown = problems[:MAX_PROBLEMS]
    more = f"\n  ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
    return (f"{path}: {len(problems)} problem(s); nothing was stored:\n  " + "\n  ".join(shown) + more)


def open_lab_stage(run_dir: Path, stage: str) -> tuple[LabTask, Any, Space, dict[str, str]]:
    """(task, ctx, space, measured outputs) of a lab stage of a run folder; a clear error for anything else."""
    from reflow.runner import open_run, stage_context

    run = open_run(run_dir, quiet=True)
    stages = run.study.stages
    if stage not in stages:
        close = difflib.get_close_matches(stage, list(stages), n=1)
        raise UserInputError(f"--stage {stage!r}: the study has no such stage"
                             + (f"; did you mean {close[0]!r}?" if close else f" (stages: {', '.join(stages)})"))
    task = stages[stage].create_task()
    if not isinstance(task, LabTask):
        raise UserInputError(f"--stage {stage!r} is a {stages[stage].task!r} stage; ask and tell work on an "
                             "optimize stage whose evaluator is a lab")
    status = run.manifest.get("stages", {}).get(stage, {}).get("status")
    ctx = stage_context(run, stage)
    columns = task.lab_columns(ctx)
    if columns is None:
        raise UserInputError(f"stage {stage!r} evaluates with code, not a lab: reflow run --resume runs it")
    if status == "done":
        raise UserInputError(f"stage {stage!r} is finished; there is nothing left to ask or tell")
    return task, ctx, *columns


def ask(run_dir: Path, stage: str, n: int) -> str:
    """Record ``n`` new experiments of a lab stage as asked; return them as CSV text.

    Holds the run folder's lock while it reads and appends the asked journal: two ``ask`` at once never hand
    out the same trial id (the second is refused, exit code 2)."""
    with lock_run(run_dir, f"reflow ask --stage {stage}"):
        task, ctx, space, outputs = open_lab_stage(run_dir, stage)
        return experiments_csv(task.lab_ask(ctx, n), space, outputs)


def tell(run_dir: Path, stage: str, results: Path) -> tuple[int, int, int, int, int | None]:
    """Store the measurements of ``results``; return (stored, rows skipped without results, rows stored before,
    told in all, the stage's budget or None). Holds the run folder's lock, like :func:`ask`."""
    with lock_run(run_dir, f"reflow tell --stage {stage}"):
        task, ctx, space, outputs = open_lab_stage(run_dir, stage)
        asked, told = task.lab_journals(ctx)
        records, skipped, repeated = read_results(results, space, outputs, {r["trial"]: r for r in asked},
                                                  {r["trial"]: r for r in told})
        if records:
            task.lab_tell(ctx, records)
        return len(records), skipped, repeated, len(told) + len(records), task.lab_budget()
