"""Life data: each unit's cycles (or hours) and whether it failed or was suspended, read with clear errors.

Every life model (``weibull``, ``kaplan-meier``, ``cox-ph``) names its columns the same way: ``time`` is the
variable with the cycles or hours at failure or suspension, and the event is either an indicator variable
(``failed``: 1 = failed, 0 = censored) or a condition on other variables (``failure: "delta_bmax > 0.2"``),
parsed by :mod:`reflow.expressions` and never eval'd. The models' outputs share names too: ``reliability``
at a given time, ``b<p>_<time>`` B-lives and ``median_<time>``, each ``_mean`` with ``_lower``/``_upper``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import reflow
from pydantic import Field, field_validator, model_validator
from reflow.errors import DataError, UserInputError
from reflow.expressions import ExpressionError, parse_constraint

_BOOKKEEPING = ("status", "error", "batch", "started", "finished")


class LifeParams(reflow.Params):
    """The params every life model shares: which variables hold the times and the events."""

    time: str = Field("cycles", description="variable with each unit's cycles or hours at failure or suspension")
    failed: str | None = Field(None, description="event indicator variable: 1 = failed, 0 = censored "
                                                 "(suspended); default 'failed' unless 'failure' is given")
    failure: str | None = Field(None, description="failure condition instead of an indicator, e.g. "
                                                  "'delta_bmax > 0.2' (parsed, never eval'd)")
    confidence: float = Field(0.9, gt=0.5, lt=1.0, description="two-sided confidence level of the bounds")

    @field_validator("failure")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_constraint(value)
            except ExpressionError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _one_event_source(self) -> LifeParams:
        if self.failed is not None and self.failure is not None:
            raise ValueError("give either 'failed' (an indicator variable) or 'failure' (a condition), not both")
        return self


@dataclass(frozen=True)
class LifeData:
    """Times and events of the units of one dataset."""

    time: np.ndarray
    event: np.ndarray
    dim: str

    @property
    def failures(self) -> int:
        return int(self.event.sum())


def event_source(params: LifeParams) -> str:
    """Where events come from, for messages: the indicator's name or the condition."""
    return f"condition {params.failure!r}" if params.failure is not None else f"indicator {params.failed or 'failed'!r}"


def _has(data: Any, name: str) -> bool:
    return name in data.data_vars or name in data.coords


def _variables(data: Any) -> str:
    names = [str(n) for n in data.data_vars]
    return ", ".join(names) if names else "no variables"


def read_life_data(data: Any, params: LifeParams, who: str, *, min_failures: int = 1) -> LifeData:
    """The units' times and events; a missing variable, a negative or missing time, an indicator that is not
    0/1 and too few failures are :class:`reflow.DataError` naming the field (the data is the user's)."""
    name = params.time
    if not _has(data, name):
        raise DataError(f"{who}: no time variable {name!r} (params.time: each unit's cycles or hours); "
                        f"the data has {_variables(data)}")
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
    event = _events(data, params, who, dim, t.size)
    if event.sum() < min_failures:
        what = "no failures" if event.sum() == 0 else f"only {int(event.sum())} failure(s)"
        raise DataError(f"{who}: {what} among {t.size} units (events from {event_source(params)}); "
                        f"the fit needs at least {min_failures}")
    return LifeData(t, event, dim)


def _events(data: Any, params: LifeParams, who: str, dim: str, n: int) -> np.ndarray:
    if params.failure is not None:
        constraint = parse_constraint(params.failure)
        missing = [v for v in constraint.names if not _has(data, v)]
        if missing:
            raise DataError(f"{who}: the failure condition {params.failure!r} names {', '.join(map(repr, missing))}, "
                            f"not in the data (has {_variables(data)})")
        for v in constraint.names:
            if data[v].dims != (dim,):
                raise DataError(f"{who}: {v!r} in the failure condition must lie on dim {dim!r} like the times")
            if not np.all(np.isfinite(np.asarray(data[v].values, dtype=float))):
                raise DataError(f"{who}: {v!r} in the failure condition has missing values")
        return np.asarray(constraint.holds({v: np.asarray(data[v].values, dtype=float) for v in constraint.names}),
                          dtype=bool).reshape(n)
    name = params.failed or "failed"
    if not _has(data, name):
        raise DataError(f"{who}: no event indicator {name!r} (params.failed: 1 = failed, 0 = censored; or give a "
                        f"'failure' condition); the data has {_variables(data)}")
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


def life_output_name(kind: str, time: str, p: float | None = None) -> str:
    """``b10_cycles`` (B-life at p percent), ``median_cycles``: outputs named after the time variable."""
    if kind == "b":
        return f"b{p:g}".replace(".", "p").replace("-", "m") + f"_{time}"
    return f"{kind}_{time}"


def output_dim(data: Any, name: str | None) -> tuple[str, int]:
    """The dim and length predictions follow: ``name``'s dim if present, else trial/sample/the first dim."""
    if name is not None and _has(data, name) and data[name].ndim == 1:
        return str(data[name].dims[0]), int(data[name].size)
    for dim in ("trial", "sample", *map(str, data.dims)):
        if dim in data.dims:
            return dim, int(data.sizes[dim])
    return "sample", 1


def column(data: Any, name: str, who: str, what: str) -> np.ndarray:
    """A numeric input variable for predictions, with a clear error when it is missing."""
    if not _has(data, name):
        raise DataError(f"{who}: predicting needs {what} {name!r}; the data has {_variables(data)}")
    values = np.asarray(data[name].values, dtype=float).reshape(-1)
    if not np.all(np.isfinite(values)):
        raise DataError(f"{who}: {what} {name!r} has missing or infinite values")
    return values


def check_targets(targets: list[str], allowed: list[str], who: str) -> None:
    """Life models predict named outputs, not data columns: unknown ones are the user's mistake."""
    unknown = [t for t in targets if t not in allowed]
    if unknown:
        raise UserInputError(f"{who}: cannot predict {', '.join(map(repr, unknown))}; its outputs are "
                             f"{', '.join(allowed)}")


def no_covariates(features: list[str], time: str, who: str) -> None:
    """Weibull and Kaplan-Meier describe one population: a covariate given to them would be silently ignored."""
    extra = [f for f in features if f != time]
    if extra:
        raise UserInputError(f"{who} takes no covariates (got features {', '.join(map(repr, extra))}); the only "
                             f"input it takes is the time {time!r}; cox-ph models covariates")


def with_bounds(names: list[str]) -> list[str]:
    """Each output with its ``_lower`` and ``_upper`` confidence bounds."""
    return [n + s for n in names for s in ("", "_lower", "_upper")]


def numeric_covariates(data: Any, dim: str, exclude: set[str]) -> list[str]:
    """Default covariates: every numeric variable on ``dim`` that is not the time, the event or bookkeeping."""
    return [str(n) for n in data.data_vars
            if data[n].dims == (dim,) and data[n].dtype.kind in "fiub" and n not in exclude
            and n not in _BOOKKEEPING]
