"""Stage values: numbers a stage takes from an earlier stage's results, written ``${...}`` in the study.

A study can carry what one stage found into another stage's params, for example the 95th-percentile void
fraction that the inspection stage predicted for a lot into the life model of the design stage::

    evaluate:
      - fea-package
      - engelmaier: {void_fraction: "${inspect.predictions.void_fraction_mean:p95}"}

The syntax (the whole string, nothing around it):

- ``${stage.variable:stat}``: a statistic of a variable of the stage's main output;
- ``${stage.output.variable:stat}``: the same for a named output (``inspect.predictions``);
- ``${stage.metric}``: a number from the stage's ``metrics.json`` (``${life.b10_cycles}``).

Statistics: ``mean``, ``median``, ``min``, ``max``, ``std``, ``sum``, ``count`` and ``pNN`` (the NN-th
percentile, ``p95``, ``p99.5``); NaN values are left out. Stage values may stand in any component's params and as
a fixed space value (``{value: "${...}"}``). The referenced stage runs first; the study is validated again with
the numbers in place before the stage runs, and the numbers are written to the stage's ``stage_values.json``.
Nothing is evaluated as code: the string is matched by one regular expression.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from reflow.store import write_json

_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_VAR = r"[A-Za-z_][A-Za-z0-9_]*"
_PATTERN = re.compile(rf"^\$\{{\s*({_NAME})((?:\.{_VAR}){{1,2}})\s*(?::\s*([A-Za-z]+[0-9.]*))?\s*\}}$")
STAGE_VALUES = "stage_values.json"
"""The file in a stage's folder with the numbers its ``${...}`` references stood for when it ran."""
STATS = ("mean", "median", "min", "max", "std", "sum", "count")
SYNTAX = "${stage.metric}, ${stage.variable:stat} or ${stage.output.variable:stat}"


@dataclass(frozen=True)
class StageValue:
    """A parsed ``${...}`` reference."""

    text: str
    stage: str
    output: str | None = None
    variable: str | None = None
    stat: str | None = None
    metric: str | None = None

    def describe(self) -> str:
        if self.metric is not None:
            return f"metric {self.metric!r} of stage {self.stage!r}"
        where = f"{self.stage}.{self.output}" if self.output else self.stage
        return f"the {self.stat} of {self.variable!r} in {where}"


def is_reference(value: Any) -> bool:
    """True for a string that is meant as a stage value (starts with ``${``)."""
    return isinstance(value, str) and value.lstrip().startswith("${")


def parse(text: str) -> StageValue:
    """Parse a ``${...}`` string; ``ValueError`` with the allowed forms when it is malformed."""
    match = _PATTERN.match(text.strip())
    if not match:
        raise ValueError(f"cannot read the stage value {text!r}; write {SYNTAX}")
    stage, dotted, stat = match.groups()
    parts = dotted[1:].split(".")
    if stat is None:
        if len(parts) != 1:
            raise ValueError(f"{text!r}: a variable needs a statistic, e.g. ${{{stage}.{'.'.join(parts)}:mean}} "
                             f"(statistics: {', '.join(STATS)}, pNN)")
        return StageValue(text, stage, metric=parts[0])
    _check_stat(text, stat)
    output, variable = (parts[0], parts[1]) if len(parts) == 2 else (None, parts[0])
    return StageValue(text, stage, output=output, variable=variable, stat=stat)


def _check_stat(text: str, stat: str) -> None:
    if stat in STATS:
        return
    if re.fullmatch(r"p(100|[0-9]{1,2}(\.[0-9]+)?)", stat):
        return
    raise ValueError(f"{text!r}: unknown statistic {stat!r}; allowed: {', '.join(STATS)}, pNN (0 <= NN <= 100)")


def find(obj: Any, loc: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """Every ``${...}`` string inside plain YAML data, with its path."""
    found: list[tuple[tuple[Any, ...], str]] = []
    if is_reference(obj):
        found.append((loc, obj))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            found.extend(find(v, loc + (k,)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found.extend(find(v, loc + (i,)))
    return found


def substitute(obj: Any, values: dict[tuple[Any, ...], float]) -> Any:
    """A deep copy of ``obj`` with the value at each path of ``values`` replaced."""
    out = copy.deepcopy(obj)
    for loc, value in values.items():
        target = out
        for key in loc[:-1]:
            target = target[key]
        target[loc[-1]] = value
    return out


def statistic(values: np.ndarray, stat: str) -> float:
    """``stat`` of the finite values (``count`` counts them)."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v)]
    if stat == "count":
        return float(v.size)
    if v.size == 0:
        raise ValueError("no finite values")
    if stat.startswith("p"):
        return float(np.percentile(v, float(stat[1:])))
    return float(getattr(np, stat)(v))


def compute(ref: StageValue, run: Any) -> float:
    """The number ``ref`` stands for in ``run`` (its stage must have finished)."""
    from reflow.errors import DataError

    if ref.metric is not None:
        metrics = run.result(ref.stage).metrics
        value = metrics.get(ref.metric)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            numbers = sorted(k for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
            raise DataError(f"{ref.text}: stage {ref.stage!r} has no number {ref.metric!r} in its metrics "
                            f"(it has: {', '.join(numbers) or 'none'})")
        return float(value)
    data = run.output(f"{ref.stage}.{ref.output}" if ref.output else ref.stage)
    if ref.variable not in data:
        raise DataError(f"{ref.text}: {ref.stage}{'.' + ref.output if ref.output else ''} has no variable "
                        f"{ref.variable!r} (it has: {', '.join(map(str, data.data_vars))})")
    values = data[ref.variable].values
    if values.dtype.kind not in "fiub":
        raise DataError(f"{ref.text}: {ref.variable!r} is not numeric (dtype {values.dtype})")
    try:
        return statistic(values, ref.stat)
    except ValueError as exc:
        raise DataError(f"{ref.text}: {exc} in {ref.variable!r}") from None


def write_used(folder: Path, numbers: dict[str, float]) -> None:
    """Record the numbers a stage ran with (by reference text), for the report and for the engineer."""
    write_json(Path(folder) / STAGE_VALUES, numbers)


def read_used(folder: Path) -> dict[str, Any]:
    """The numbers :func:`write_used` recorded for a stage, or ``{}`` (none, or a damaged file: the report
    still comes out)."""
    path = Path(folder) / STAGE_VALUES
    try:
        data = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
