"""Life data: each unit's cycles (or hours) and whether it failed or was suspended, read with clear errors.

Every life model (``weibull``, ``kaplan-meier``, ``cox-ph``) names its columns the same way: ``time`` is the
variable with the cycles or hours at failure or suspension, and the event is either an indicator variable
(``failed``: 1 = failed, 0 = censored) or a condition on other variables (``failure: "delta_bmax > 0.2"``),
parsed by :mod:`reflow.expressions` and never eval'd. The models' outputs share names too (``reliability``
at a given time, ``b<p>_<time>`` B-lives and ``median_<time>``, each ``_mean`` with ``_lower``/``_upper``):
:mod:`.lifemodel` names them.

Or the data are intervals (``lower`` + ``upper``, for readout tests): each unit's life lies in
[lower, upper]; an empty (NaN) or ``inf`` upper is a suspension at ``lower``, a zero lower is left-censored (failed
by the first readout at ``upper``), lower == upper is an exact failure. An optional ``truncation`` variable gives
the time each unit entered the data (left truncation: it was known to survive to then). Models that handle
intervals (``weibull``, ``life-distribution``) read them through :func:`read_life_data` with ``intervals=True``;
the others (Kaplan-Meier, Cox) say so.

Or the data are degradation trajectories, one row per unit and measurement (``degradation: {unit: led_id,
variable: delta_bmax_mean, threshold: 0.2}``, ``time: cycles``), and a unit fails when its measure first crosses
the threshold. ``method`` says what is known of the crossing:

- ``interval`` (the default for models that handle intervals): it lies between the last readout below and the
  first readout past the threshold; a unit past it at its first readout (after time 0) is left-censored there;
- ``interpolate`` (the default for the others, and reflow's behaviour before intervals): the time found by
  linear interpolation between those two readouts, taken as exact (the first readout when already past it);
- ``path``: Meeker and Escobar's pseudo-failure times (1998, 13.7): each unit's path is fitted by least
  squares (``path_model``: ``linear`` y = a + b t, ``log-linear`` ln y = a + b t, ``power`` ln y = a + b ln t)
  and extrapolated to the threshold; a path that does not head towards it is censored at the last readout.

A unit that never crosses is censored at its last measurement. Later dips back below the threshold (measurement
noise) do not undo a failure. A unit already past the threshold at time 0 was defective before the test: it is
left out of the life data (a screening, not a wear-out question) and counted. Repeated measurements of a unit at
the same time are averaged; missing values are skipped.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import reflow
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from reflow.errors import DataError
from reflow.expressions import parse_constraint, validate_condition

from .censoring import Censored

log = logging.getLogger("reflow.reliability")

class Degradation(BaseModel):
    """Failure times from degradation trajectories: ``{unit: led_id, variable: delta_bmax_mean, threshold: 0.2}``."""

    model_config = ConfigDict(extra="forbid")

    unit: str = Field(description="variable naming the unit each row measures (an LED, a joint, a board)")
    variable: str = Field(description="the degradation measure, e.g. delta_bmax or a model's delta_bmax_mean")
    threshold: float = Field(description="the unit has failed once the measure is past this value")
    direction: Literal["above", "below"] = Field("above", description="above: failed when the measure rises "
                                                                      "above the threshold; below: when it falls "
                                                                      "below (a strength, a light output)")
    method: Literal["interval", "interpolate", "path"] | None = Field(
        None, description="interval: the crossing lies between the readouts around it (interval-censored); "
                          "interpolate: linear interpolation between them, taken as exact; path: each unit's fitted "
                          "path extrapolated to the threshold (pseudo-failure times). Default: interval for models "
                          "that fit intervals (weibull, life-distribution), interpolate for the others")
    path_model: Literal["linear", "log-linear", "power"] = Field(
        "linear", description="method path: the per-unit path, y = a + b t (linear), ln y = a + b t (log-linear) "
                              "or ln y = a + b ln t (power)")

    def describe(self) -> str:
        return f"{self.variable} {'>' if self.direction == 'above' else '<'} {self.threshold:g} per {self.unit}"


class LifeParams(reflow.Params):
    """The params every life model shares: which variables hold the times and the events."""

    time: str = Field("cycles", description="variable with each unit's cycles or hours at failure or suspension "
                                            "(with degradation: the time of each measurement)")
    failed: str | None = Field(None, description="event indicator variable: 1 = failed, 0 = censored "
                                                 "(suspended); default 'failed' unless 'failure' is given")
    failure: str | None = Field(None, description="failure condition instead of an indicator, e.g. "
                                                  "'delta_bmax > 0.2' (parsed, never eval'd)")
    degradation: Degradation | None = Field(
        None, description="failure times from trajectories instead: {unit: led_id, variable: delta_bmax_mean, "
                          "threshold: 0.2}: first crossing per unit (linear interpolation between the measured "
                          "times), censored at the last measurement if it never crosses")
    lower: str | None = Field(None, description="interval data instead of time + failed: variable with the last "
                                                "time each unit was seen working (0: failed before the first "
                                                "readout, left-censored); with 'upper'")
    upper: str | None = Field(None, description="variable with the first time each unit was seen failed; empty "
                                                "(NaN) or inf: never seen failed (suspended at 'lower'); equal to "
                                                "'lower': an exact failure time")
    truncation: str | None = Field(None, description="variable with the time each unit entered the test or the "
                                                     "data (left truncation); 0 or empty: from the start")
    confidence: float = Field(0.9, gt=0.5, lt=1.0, description="confidence level of the bounds: two-sided "
                                                               "(5 % outside each end at 0.9) unless one_sided")
    one_sided: bool = Field(False, description="true: each _lower/_upper output is a one-sided bound at "
                                               "'confidence' (b10_cycles_lower: B10 is above it with that "
                                               "probability)")

    @field_validator("failure")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        return validate_condition(value)

    @model_validator(mode="after")
    def _one_event_source(self) -> LifeParams:
        if (self.lower is None) != (self.upper is None):
            raise ValueError("give both 'lower' and 'upper' (interval data), or neither")
        sources = {"failed": self.failed, "failure": self.failure, "degradation": self.degradation,
                   "lower": self.lower}
        given = [k for k, v in sources.items() if v is not None]
        if len(given) > 1:
            both = "both " if len(given) == 2 else "all of "
            raise ValueError(f"give one of 'failed' (an indicator variable), 'failure' (a condition), "
                             f"'degradation' (trajectories) or 'lower' + 'upper' (intervals), not "
                             f"{both}{' and '.join(map(repr, given))}")
        return self


@dataclass(frozen=True)
class LifeData:
    """Times and events of the units of one dataset.

    From degradation trajectories (several rows per unit), ``rows`` holds each unit's first row in the data
    (for per-unit covariates), ``units`` the unit ids and ``excluded`` how many units were past the threshold
    at time 0 and left out; otherwise every row is a unit and ``rows`` is None.
    """

    time: np.ndarray
    event: np.ndarray
    dim: str
    rows: np.ndarray | None = None
    units: np.ndarray | None = None
    excluded: int = 0
    censored: Censored | None = None  # the same units under the one censoring convention (intervals kept)

    @property
    def failures(self) -> int:
        return int(self.event.sum())

    @property
    def life(self) -> Censored:
        """The units as :class:`Censored` (exact and right-censored from time + event unless read as intervals)."""
        return self.censored if self.censored is not None else Censored(
            self.time, np.where(self.event, self.time, np.inf))

    def unit_data(self, data: Any) -> Any:
        """``data`` with one row per unit (the unit's first row), in the order of ``time``."""
        return data if self.rows is None else data.isel({self.dim: self.rows})


def event_source(params: LifeParams) -> str:
    """Where events come from, for messages: the indicator's name, the condition or the trajectories."""
    if params.degradation is not None:
        return f"degradation {params.degradation.describe()}"
    if params.lower is not None:
        return f"intervals {params.lower!r}/{params.upper!r}"
    return f"condition {params.failure!r}" if params.failure is not None else f"indicator {params.failed or 'failed'!r}"


def has_variable(data: Any, name: str) -> bool:
    """True when ``name`` is a variable or a coordinate of ``data``."""
    return name in data.data_vars or name in data.coords


def variable_list(data: Any) -> str:
    """The data's variables, comma-separated, for the messages that say what the data has."""
    names = [str(n) for n in data.data_vars]
    return ", ".join(names) if names else "no variables"


def read_life_data(data: Any, params: LifeParams, who: str, *, min_failures: int = 1,
                   intervals: bool = False) -> LifeData:
    """The units' times and events; a missing variable, a negative or missing time, an indicator that is not
    0/1 and too few failures are :class:`reflow.DataError` naming the field (the data is the user's).

    ``intervals``: the model fits left-, interval-censored and truncated units (``LifeData.censored``); a model
    that does not gets a clear error for such data, and degradation readouts are interpolated for it."""
    method = None if params.degradation is None else (
        params.degradation.method or ("interval" if intervals else "interpolate"))
    if not intervals:
        what = ("interval data ('lower'/'upper')" if params.lower is not None
                else "a 'truncation' variable" if params.truncation is not None
                else "degradation method 'interval'" if method == "interval" else None)
        if what is not None:
            raise DataError(f"{who} takes exact and right-censored times only, not {what}; fit such data with "
                            f"weibull or life-distribution (or use degradation method 'interpolate' or 'path')")
    if params.lower is not None:
        life = _from_bounds(data, params, who)
    else:
        t, dim = _times(data, params.time, who)
        if params.degradation is not None:
            life = _from_trajectories(data, params.degradation, params.time, t, dim, who, method)
        else:
            life = LifeData(t, _events(data, params, who, dim, t.size), dim)
        if params.truncation is not None:
            if life.rows is not None:
                raise DataError(f"{who}: 'truncation' does not apply to degradation trajectories (each unit's "
                                f"first readout is its entry)")
            trunc = _optional_column(data, params.truncation, life.dim, who)
            base = life.life
            life = LifeData(life.time, life.event, life.dim, censored=Censored._checked(
                base.lower, base.upper, trunc, who))
    if life.failures < min_failures:
        what = "no failures" if life.failures == 0 else f"only {life.failures} failure(s)"
        raise DataError(f"{who}: {what} among {life.time.size} units (events from {event_source(params)}); "
                        f"the fit needs at least {min_failures}")
    return life


def _optional_column(data: Any, name: str, dim: str, who: str) -> np.ndarray:
    """A per-unit numeric variable where empty (NaN) means 0 (the truncation time)."""
    if not has_variable(data, name):
        raise DataError(f"{who}: no variable {name!r}; the data has {variable_list(data)}")
    if data[name].dims != (dim,):
        raise DataError(f"{who}: {name!r} must lie on dim {dim!r} like the times, it has {data[name].dims}")
    values = np.asarray(data[name].values, dtype=float)
    return np.where(np.isnan(values), 0.0, values)


def _from_bounds(data: Any, params: LifeParams, who: str) -> LifeData:
    """Intervals from the ``lower``/``upper`` variables (see the module docstring for the convention)."""
    lower, upper = str(params.lower), str(params.upper)
    for name, role in ((lower, "lower"), (upper, "upper")):
        if not has_variable(data, name):
            raise DataError(f"{who}: no {role} variable {name!r} (params.{role}); the data has {variable_list(data)}")
        if data[name].ndim != 1 or data[name].dtype.kind not in "fiu":
            raise DataError(f"{who}: {role} variable {name!r} must be numeric, one value per unit")
    dim = str(data[lower].dims[0])
    if data[upper].dims != (dim,):
        raise DataError(f"{who}: {upper!r} must lie on dim {dim!r} like {lower!r}, it has {data[upper].dims}")
    trunc = None if params.truncation is None else _optional_column(data, params.truncation, dim, who)
    life = Censored.from_bounds(data[lower].values, data[upper].values, trunc, who=who, names=(lower, upper))
    return LifeData(life.midpoint, life.failed, dim, censored=life)


def _times(data: Any, name: str, who: str) -> tuple[np.ndarray, str]:
    """The time variable as floats, checked, and its dim."""
    if not has_variable(data, name):
        raise DataError(f"{who}: no time variable {name!r} (params.time: each unit's cycles or hours); "
                        f"the data has {variable_list(data)}")
    var = data[name]
    if var.ndim != 1:
        raise DataError(f"{who}: time variable {name!r} must be one value per unit, it has dims {var.dims}")
    dim = str(var.dims[0])
    if var.dtype.kind not in "fiu":
        raise DataError(f"{who}: time variable {name!r} must be numeric, it holds {var.dtype}")
    t = np.asarray(var.values, dtype=float)
    if t.size == 0:
        raise DataError(f"{who}: the data has no units (time variable {name!r} is empty)")
    bad = np.flatnonzero(~np.isfinite(t))
    if bad.size:
        raise DataError(f"{who}: time variable {name!r} has {bad.size} missing or infinite value(s) "
                        f"(first at {dim} {bad[0]})")
    neg = np.flatnonzero(t < 0)
    if neg.size:
        raise DataError(f"{who}: time variable {name!r} has {neg.size} negative value(s) (first: {t[neg[0]]:g} at "
                        f"{dim} {neg[0]}); cycles and hours are >= 0")
    return t, dim


def first_crossing(times: np.ndarray, values: np.ndarray, threshold: float,
                   direction: str = "above") -> tuple[float, bool]:
    """(time, failed) of one unit's trajectory: the first time its measure is past ``threshold``, linearly
    interpolated between the measurements around the crossing, or (last time, False) if it never is.

    ``times`` must be sorted and distinct; a trajectory past the threshold at its first measurement gives
    that measurement's time."""
    sign = 1.0 if direction == "above" else -1.0
    past = np.flatnonzero(sign * (values - threshold) > 0)
    if past.size == 0:
        return float(times[-1]), False
    k = int(past[0])
    if k == 0:
        return float(times[0]), True
    t0, t1, v0, v1 = times[k - 1], times[k], values[k - 1], values[k]
    return float(t0 + (threshold - v0) / (v1 - v0) * (t1 - t0)), True


def crossing_interval(times: np.ndarray, values: np.ndarray, threshold: float,
                      direction: str = "above") -> tuple[float, float]:
    """(lower, upper) of one unit's crossing: between the last readout before the first one past ``threshold``
    and that one (lower 0 if it is the first readout: left-censored), or (last time, inf) if it never is."""
    sign = 1.0 if direction == "above" else -1.0
    past = np.flatnonzero(sign * (values - threshold) > 0)
    if past.size == 0:
        return float(times[-1]), math.inf
    k = int(past[0])
    return (0.0 if k == 0 else float(times[k - 1])), float(times[k])


def path_crossing(times: np.ndarray, values: np.ndarray, threshold: float, direction: str = "above",
                  model: str = "linear") -> tuple[float, bool]:
    """(time, failed) of one unit's pseudo-failure: its least-squares path extrapolated to ``threshold``
    (Meeker and Escobar 1998, 13.7); (last time, False) when the path does not head towards the threshold, or
    when there are fewer than two usable readouts (the first crossing then decides)."""
    t, y, level = np.asarray(times, dtype=float), np.asarray(values, dtype=float), float(threshold)
    use = np.ones(t.size, bool)
    if model in ("log-linear", "power"):
        use &= y > 0
        if level <= 0:
            return float(t[-1]), False
    if model == "power":
        use &= t > 0
    if use.sum() < 2 or np.ptp(t[use]) == 0:
        return first_crossing(times, values, threshold, direction)
    x = np.log(t[use]) if model == "power" else t[use]
    z = np.log(y[use]) if model != "linear" else y[use]
    target = math.log(level) if model != "linear" else level
    slope, icpt = np.polyfit(x, z, 1)
    sign = 1.0 if direction == "above" else -1.0
    if sign * slope <= 0:
        return float(t[-1]), False
    at = (target - icpt) / slope
    when = math.exp(at) if model == "power" else at
    if not math.isfinite(when) or when <= 0:
        return float(t[-1]), False
    return float(when), True


def _from_trajectories(data: Any, spec: Degradation, time: str, t: np.ndarray, dim: str, who: str,
                       method: str | None = "interpolate") -> LifeData:
    """Per unit: the first crossing of the threshold, by ``method`` (see the module docstring)."""
    for name, what in ((spec.unit, "unit"), (spec.variable, "degradation variable")):
        if not has_variable(data, name):
            raise DataError(f"{who}: no {what} {name!r} (params.degradation.{'unit' if what == 'unit' else 'variable'}"
                            f"); the data has {variable_list(data)}")
        if data[name].dims != (dim,):
            raise DataError(f"{who}: {what} {name!r} must lie on dim {dim!r} like the times {time!r}, it has "
                            f"{data[name].dims}")
    if data[spec.variable].dtype.kind not in "fiu":
        raise DataError(f"{who}: degradation variable {spec.variable!r} must be numeric, it holds "
                        f"{data[spec.variable].dtype}")
    values = np.asarray(data[spec.variable].values, dtype=float)
    ids = np.asarray(data[spec.unit].values)
    finite = np.isfinite(values)
    if not finite.all():
        log.warning("%s: %d measurement(s) without a %s value are skipped", who, int((~finite).sum()), spec.variable)
    units, codes = np.unique(ids, return_inverse=True)
    times, events, rows, kept, excluded, lows, ups = [], [], [], [], [], [], []
    for u in range(units.size):
        mine = np.flatnonzero((codes == u) & finite)
        if mine.size == 0:
            raise DataError(f"{who}: unit {units[u]!r} ({spec.unit}) has no finite {spec.variable!r} value")
        at, inverse = np.unique(t[mine], return_inverse=True)  # sorted, repeated times averaged
        trajectory = np.bincount(inverse, weights=values[mine]) / np.bincount(inverse)
        sign = 1.0 if spec.direction == "above" else -1.0
        if at[0] == 0.0 and sign * (trajectory[0] - spec.threshold) > 0:
            excluded.append(units[u])  # defective before the first cycle
            continue
        if method == "interval":
            lo, up = crossing_interval(at, trajectory, spec.threshold, spec.direction)
            lows.append(lo)
            ups.append(up)
            when, failed = (lo if math.isinf(up) else 0.5 * (lo + up)), math.isfinite(up)
        elif method == "path":
            when, failed = path_crossing(at, trajectory, spec.threshold, spec.direction, spec.path_model)
        else:
            when, failed = first_crossing(at, trajectory, spec.threshold, spec.direction)
        times.append(when)
        events.append(failed)
        rows.append(int(mine[np.argmin(t[mine])]))  # the first of the earliest rows
        kept.append(units[u])
    if excluded:
        log.warning("%s: %d unit(s) past %s at time 0 (defective before the test) are left out of the life data: "
                    "%s", who, len(excluded), spec.describe(), ", ".join(map(str, excluded[:10])))
    if not times:
        raise DataError(f"{who}: every unit is past {spec.describe()} at time 0; there is no life to model")
    censored = None
    if method == "interval":
        censored = Censored.from_bounds(np.asarray(lows), np.asarray(ups), who=who,
                                        names=(f"{spec.variable} readout below", f"{spec.variable} readout past"))
    return LifeData(np.asarray(times, dtype=float), np.asarray(events, dtype=bool), dim,
                    rows=np.asarray(rows, dtype=np.int64), units=np.asarray(kept), excluded=len(excluded),
                    censored=censored)


def _events(data: Any, params: LifeParams, who: str, dim: str, n: int) -> np.ndarray:
    if params.failure is not None:
        constraint = parse_constraint(params.failure)
        missing = [v for v in constraint.names if not has_variable(data, v)]
        if missing:
            raise DataError(f"{who}: the failure condition {params.failure!r} names {', '.join(map(repr, missing))}, "
                            f"not in the data (has {variable_list(data)})")
        for v in constraint.names:
            if data[v].dims != (dim,):
                raise DataError(f"{who}: {v!r} in the failure condition must lie on dim {dim!r} like the times")
            if not np.all(np.isfinite(np.asarray(data[v].values, dtype=float))):
                raise DataError(f"{who}: {v!r} in the failure condition has missing values")
        return np.asarray(constraint.holds({v: np.asarray(data[v].values, dtype=float) for v in constraint.names}),
                          dtype=bool).reshape(n)
    name = params.failed or "failed"
    if not has_variable(data, name):
        raise DataError(f"{who}: no event indicator {name!r} (params.failed: 1 = failed, 0 = censored; or give a "
                        f"'failure' condition); the data has {variable_list(data)}")
    var = data[name]
    if var.dims != (dim,):
        raise DataError(f"{who}: event indicator {name!r} must lie on dim {dim!r} like the times, it has {var.dims}")
    if var.dtype.kind == "b":
        return np.asarray(var.values, dtype=bool)
    if var.dtype.kind not in "fiu":
        raise DataError(f"{who}: event indicator {name!r} must be 0/1, it holds {var.dtype}")
    values = np.asarray(var.values, dtype=float)
    bad = np.flatnonzero(~np.isin(values, (0.0, 1.0)))
    if bad.size:
        raise DataError(f"{who}: event indicator {name!r} must be 1 (failed) or 0 (censored); found {values[bad[0]]!r} "
                        f"at {dim} {bad[0]} ({bad.size} such value(s))")
    return values == 1.0
