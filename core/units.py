"""Units of variables and of the metrics about them.

A variable's units are declared (``attrs["units"]``, which evaluators' :class:`reflow.Variable`, design spaces
and data sources set) and never converted silently. A metric about a variable (``best_<var>``,
``<var>_max``, ``verified_<var>``) has the variable's units; only a name no stage declares units for has them
read from its suffix (``die_thickness_mm``). The report and ``reflow show`` both ask :func:`metric_units`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

SUFFIXES = {
    "mm": "mm", "um": "um", "nm": "nm", "m": "m", "mpa": "MPa", "gpa": "GPa", "pa": "Pa", "k": "K",
    "c": "degC", "ppm": "ppm/K", "s": "s", "h": "h", "w": "W", "v": "V", "a": "A", "pct": "%",
    "cycles": "cycles", "1_per_m": "1/m", "n": "N", "hz": "Hz", "mw": "mW", "kw": "kW",
}
STATISTICS = ("min", "max", "lower", "upper", "mean", "median", "std", "rmse", "mae")
"""Endings of a metric about a variable that keep the variable's units (``warpage_um_max``); r2 and mse do not."""
PREFIXES = ("best_", "verified_", "surrogate_")
"""Beginnings of a metric that is a value of the variable (``best_warpage_um``)."""
DIMENSIONLESS = ("1", "-", "dimensionless")
"""Declared units of a pure number (CF's ``1``): declared, so never guessed from the name, but shown as none."""


def units_from_name(name: str) -> str:
    """The units a name's suffix states (``warpage_um`` -> ``um``), or ``""``."""
    lowered = name.lower()
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if lowered.endswith("_" + suffix):
            return SUFFIXES[suffix]
    return ""


def variable_units(datasets: Iterable[Any]) -> dict[str, str]:
    """``{variable: units}`` for every variable of ``datasets`` that declares units; the first dataset wins.
    A time's netCDF encoding (``days since ...``) is no declared unit."""
    units: dict[str, str] = {}
    for ds in datasets:
        for var, variable in ds.variables.items():
            value = variable.attrs.get("units")
            if isinstance(value, str) and value.strip() and " since " not in value:
                units.setdefault(str(var), value.strip())
    return units


def _variable_of(metric: str) -> list[str]:
    """The variable names a metric may be about, most specific first."""
    names = [metric]
    base, _, statistic = metric.rpartition("_")
    if base and statistic in STATISTICS:
        names.append(base)
    for name in list(names):
        for prefix in PREFIXES:
            if name.startswith(prefix):
                names.append(name[len(prefix):])
    return names


def metric_units(metric: str, declared: Mapping[str, str] | None = None, guess: bool = True) -> str:
    """The units of ``metric``: those declared for the variable it is about (``declared``: variable -> units),
    else (``guess``) what its name states (``b10_cycles_lower`` -> ``cycles``, ``*_seconds`` -> ``s``); "" for
    none. A declared unit always wins: ``r_ja_k_w`` declared in K/W is in K/W, not W."""
    declared = declared or {}
    names = _variable_of(metric)
    for name in names:
        if declared.get(name):
            return "" if declared[name] in DIMENSIONLESS else declared[name]
    if not guess:
        return ""
    base = names[-1]
    if "seconds" in base.split("_"):
        return "s"
    return units_from_name(base)
