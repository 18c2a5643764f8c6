"""Which numbers a stage shows first in the report, and how a number reads: units, digits, bounds.

A stage names its own key numbers in ``metrics.json`` under ``headline`` (a dict, shown first and whole). The
rest are picked by name: the trial counts of reflow's trial table, ``best_`` objectives, fit scores, numbers
with ``_lower``/``_upper`` bounds, the ``_min``/``_max`` ranges of outputs, and the names the built-in tasks
use today (:data:`NAME_CONVENTIONS`). Units come from the variables a stage declared (their ``units``
attribute); only a name no output declares units for has them read from its suffix (``warpage_um``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reflow.units import metric_units

MAX_KEY_NUMBERS = 8
"""Key numbers per stage section; the summary table shows the first :data:`SUMMARY_KEY_NUMBERS`."""
SUMMARY_KEY_NUMBERS = 4

_DISPLAY_UNITS = {"um": "µm", "degC": "°C"}

# ---- numbers and units ---------------------------------------------------------------------------------


def is_number(value: Any) -> bool:
    """An int or float that is not a bool: a metric that has a magnitude."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def units_of(name: str, declared: Mapping[str, str] | None = None) -> str:
    """The units of a metric, for display (``um`` as µm): :func:`reflow.units.metric_units`, the declared
    units of its variable first, else what its name states."""
    units = metric_units(name, declared)
    return _DISPLAY_UNITS.get(units, units)


def format_number(value: Any) -> str:
    """A number as an engineer reads it: 4 significant digits, no exponent between 1e-3 and 1e9."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}".replace(",", "\u2009")
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        magnitude = abs(value)
        if magnitude == 0:
            return "0"
        if 1e4 <= magnitude < 1e9:
            return f"{value:,.0f}".replace(",", "\u2009")
        if 1e-3 <= magnitude < 1e4:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def format_value(name: str, value: Any, declared: Mapping[str, str] | None = None) -> str:
    """``value`` with the units of ``name`` (see :func:`units_of`), as plain text; the caller escapes it."""
    if isinstance(value, bool):
        return format_number(value)
    if isinstance(value, (int, float)):
        units = units_of(name, declared)
        text = format_number(value)
        if not units or text in ("n/a", "∞", "−∞"):
            return text
        return f"{text} {units}" if units != "%" else f"{text} %"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def flat_metrics(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Every metric as (dotted name, value); nested dicts are flattened, lists kept whole."""
    rows: list[tuple[str, Any]] = []
    for name, value in metrics.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and value:
            rows.extend(flat_metrics(value, key + "."))
        else:
            rows.append((key, value))
    return rows


# ---- key numbers --------------------------------------------------------------------------------------


@dataclass
class KeyNumber:
    """One key number of a stage: a label (the metric's name) and its formatted value."""

    label: str
    text: str
    warn: bool = False
    priority: int = 0


NAME_CONVENTIONS: tuple[tuple[int, re.Pattern[str]], ...] = (
    (1, re.compile(r"^(trials|evaluations|samples|units)$")),
    (2, re.compile(r"^(best_.+|hypervolume|pareto_points)$")),
    (3, re.compile(r".+_(r2|rmse|accuracy|f1|auc|map)$")),
    (4, re.compile(r"^(.+_)?b\d+(_.+)?$")),
    (5, re.compile(r"^(mean_life|mttf.*|median_.+)$")),
    (6, re.compile(r"^(beta|eta|shape|scale)$|.+_mae$|^test_samples$")),
)
"""(priority, name pattern): which metrics say most about a stage when it gives no ``headline``, lower
first. Counts (doe, data, predict, life tests), best objectives and the front (optimize), fit scores (train,
compare, the detectors), B-lives, mean and median lives and life-model constants (the reliability models).
These are the built-in tasks' names: a task that lists its key numbers in ``headline`` needs none of them."""
_RANGE_PRIORITY = 7
_OTHER_PRIORITY = 9
_HIDDEN = {"ok", "failed", "feasible", "failures", "train_samples", "val_samples", "confidence", "best_trial"}
"""Metrics that are shown inside another key number (the counts, the bounds' level) or say little alone."""
_COUNTED = ("trials", "ok", "failed", "evaluations", "feasible", "units", "failures")


def _priority(name: str) -> int:
    for prio, pattern in NAME_CONVENTIONS:
        if pattern.match(name):
            return prio
    return _OTHER_PRIORITY


def key_numbers(metrics: dict[str, Any], limit: int = MAX_KEY_NUMBERS,
                declared: Mapping[str, str] | None = None) -> list[KeyNumber]:
    """The few numbers that say how a stage went, most telling first.

    ``headline`` (a dict in ``metrics.json``) comes first and whole. Then, by name: trial counts (with the
    failed ones), best objectives, hypervolume, R2/RMSE/accuracy, B-lives and life-model constants (with
    their ``_lower``/``_upper`` bounds), and the ``_min``/``_max`` ranges of outputs. ``declared`` gives the
    units of the stage's variables (see :func:`units_of`).
    """
    out: list[KeyNumber] = []
    headline = metrics.get("headline")
    if isinstance(headline, dict):
        for name, value in headline.items():
            out.append(KeyNumber(str(name), format_value(str(name), value, declared), priority=0))
    scalars = {k: v for k, v in metrics.items() if k != "headline" and (is_number(v) or isinstance(v, str))}
    used: set[str] = set()
    candidates: list[KeyNumber] = []

    counted = _counts(scalars)
    if counted is not None:
        candidates.append(counted)
        used.update(_COUNTED)
    if scalars.get("test_samples") == 0:
        used.add("test_samples")
    confidence = scalars.get("confidence")
    for name, value in scalars.items():
        if name in used or name in _HIDDEN or not is_number(value):
            continue
        if any(name.endswith(q) and name[: -len(q)] in scalars for q in ("_lower", "_upper")):
            continue  # shown with the number it bounds
        if name.endswith("_min") and is_number(scalars.get(name[:-4] + "_max")):
            candidates.append(_range(name[:-4], value, scalars[name[:-4] + "_max"], declared))
            used.update((name, name[:-4] + "_max"))
            continue
        if name.endswith("_max") and is_number(scalars.get(name[:-4] + "_min")):
            continue
        text = format_value(name, value, declared) + _bounds(scalars, name, confidence)
        candidates.append(KeyNumber(name, text, priority=_priority(name)))
        used.add(name)
    ranked = sorted(candidates, key=lambda k: k.priority)  # stable: metrics.json order within a priority
    chosen = [k for k in ranked if k.priority < _OTHER_PRIORITY]
    if len(chosen) < 3:  # nothing recognised: show the first few numbers as they come
        chosen += [k for k in ranked if k.priority == _OTHER_PRIORITY][: 3 - len(chosen)]
    return (out + chosen)[: max(limit, len(out))]


def _range(base: str, lo: float, hi: float, declared: Mapping[str, str] | None) -> KeyNumber:
    """``8.2 … 174 µm`` for an output's ``_min``/``_max``; one value when it did not vary."""
    text = format_value(base + "_min", lo, declared) if lo == hi else (
        f"{format_number(lo)} … {format_value(base + '_max', hi, declared)}")
    # what varied over the trials says more than a constant or a bound of a constant
    telling = lo != hi and not base.endswith(("_lower", "_upper"))
    return KeyNumber(base, text, priority=_RANGE_PRIORITY if telling else _OTHER_PRIORITY)


def _bounds(scalars: dict[str, Any], name: str, confidence: Any) -> str:
    """`` (90 % bounds 1816 … 2330)`` when ``name`` has ``_lower``/``_upper`` companions."""
    lower, upper = scalars.get(name + "_lower"), scalars.get(name + "_upper")
    if is_number(lower) and is_number(upper):
        level = f"{format_number(confidence * 100)} % " if is_number(confidence) and confidence < 1 else ""
        return f" ({level}bounds {format_number(lower)} … {format_number(upper)})"
    if is_number(lower):
        return f" (lower bound {format_number(lower)})"
    return ""


def _counts(m: dict[str, Any]) -> KeyNumber | None:
    """``trials: 32 (32 ok, 0 failed)``, flagged when any failed."""
    failed = m.get("failed")
    if is_number(m.get("trials")):
        parts = [f"{format_number(m[k])} {k}" for k in ("ok", "failed") if is_number(m.get(k))]
        text = format_number(m["trials"]) + (f" ({', '.join(parts)})" if parts else "")
        return KeyNumber("trials", text, warn=is_number(failed) and failed > 0, priority=1)
    if is_number(m.get("evaluations")):
        parts = [f"{format_number(m[k])} {k}" for k in ("failed", "feasible") if is_number(m.get(k))]
        text = format_number(m["evaluations"]) + (f" ({', '.join(parts)})" if parts else "")
        warn = (is_number(failed) and failed > 0) or m.get("feasible") == 0
        return KeyNumber("evaluations", text, warn=bool(warn), priority=1)
    if is_number(m.get("units")) and is_number(m.get("failures")):  # a life test
        units, failures = m["units"], m["failures"]
        return KeyNumber("units", f"{format_number(units)} ({format_number(failures)} failed, "
                                  f"{format_number(units - failures)} suspended)", priority=1)
    return None
