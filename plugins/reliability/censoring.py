"""Censored and truncated life data, and the log-likelihood of any distribution on them.

One convention for every life model (see DESIGN.md, "Life models share one censoring convention"). A unit's
life is known to lie in ``[lower, upper]``:

- exact failure: ``lower == upper`` (a failure time);
- right-censored (suspended): ``upper == inf`` (still running at ``lower``);
- left-censored: ``lower == 0`` and ``upper`` finite (already failed at the first look, at ``upper``);
- interval-censored: ``0 < lower < upper < inf`` (fine at the readout ``lower``, failed at ``upper``).

Optional left truncation: a unit entered the test (or the data) only because it had survived to ``truncation``,
so its likelihood is divided by S(truncation).

The log-likelihood of unit i under a distribution with cdf F, sf S = 1 - F and pdf f:

    exact: log f(t)    right: log S(lower)    left: log F(upper)    interval: log(F(upper) - F(lower))

minus ``log S(truncation)`` where truncated; this is the likelihood of Meeker and Escobar, "Statistical Methods
for Reliability Data" (1998), eq. 2.14, and of ``scipy.stats.CensoredData``. The interval term is computed on the
side of the distribution where it does not cancel (through the sf above the median), so a narrow interval in the
upper tail keeps its precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from reflow.errors import DataError


class LogDistribution(Protocol):
    """What :func:`log_likelihood` needs: a scipy.stats frozen distribution has it; its parameters may be arrays
    shaped like the data (one scale per unit, as in a life-stress model)."""

    def logpdf(self, x: np.ndarray) -> np.ndarray: ...

    def logcdf(self, x: np.ndarray) -> np.ndarray: ...

    def logsf(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Censored:
    """Life data under the one censoring convention: each unit's life lies in ``[lower, upper]``.

    Build it with :meth:`from_times` (``time`` + ``failed``) or :meth:`from_bounds` (``lower`` + ``upper``); both
    check the data and raise :class:`reflow.DataError` naming the column and the row.
    """

    lower: np.ndarray
    upper: np.ndarray
    truncation: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.lower.size)

    @property
    def exact(self) -> np.ndarray:
        return self.lower == self.upper

    @property
    def right(self) -> np.ndarray:
        return np.isinf(self.upper)

    @property
    def left(self) -> np.ndarray:
        return (self.lower == 0) & np.isfinite(self.upper) & (self.upper > 0)

    @property
    def interval(self) -> np.ndarray:
        return (self.lower > 0) & (self.lower < self.upper) & np.isfinite(self.upper)

    @property
    def failed(self) -> np.ndarray:
        """Units whose failure was seen (exact, left- or interval-censored): not suspended."""
        return ~self.right

    @property
    def failures(self) -> int:
        return int(self.failed.sum())

    @property
    def midpoint(self) -> np.ndarray:
        """A single time per unit for plots and starting values: the failure time, the interval's midpoint, the
        left-censored unit's readout, or the suspension time."""
        return np.where(self.right, self.lower, np.where(self.left, self.upper, 0.5 * (self.lower + self.upper)))

    def counts(self) -> dict[str, int]:
        """How many units of each kind, for summaries and messages."""
        return {"exact": int(self.exact.sum()), "right": int(self.right.sum()), "left": int(self.left.sum()),
                "interval": int(self.interval.sum()), "truncated": 0 if self.truncation is None
                else int((self.truncation > 0).sum())}

    def subset(self, mask: np.ndarray) -> Censored:
        return Censored(self.lower[mask], self.upper[mask], None if self.truncation is None else self.truncation[mask])

    @classmethod
    def from_times(cls, time: Any, failed: Any, truncation: Any = None, *, who: str = "life data",
                   names: tuple[str, str] = ("time", "failed")) -> Censored:
        """Exact failures (``failed`` true) and right-censored suspensions (``failed`` false) at ``time``."""
        t = _floats(time, names[0], who)
        event = np.asarray(failed)
        if event.shape != t.shape:
            raise DataError(f"{who}: '{names[1]}' has {event.size} values but '{names[0]}' has {t.size}")
        bad = ~np.isin(event.astype(float), (0.0, 1.0)) if event.size else np.zeros(0, bool)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{who}: '{names[1]}' must be 1 (failed) or 0 (suspended); row {row} is {event[row]!r}")
        _non_negative(t, names[0], who)
        event = event.astype(bool)
        return cls._checked(t, np.where(event, t, np.inf), truncation, who)

    @classmethod
    def from_bounds(cls, lower: Any, upper: Any, truncation: Any = None, *, who: str = "life data",
                    names: tuple[str, str] = ("lower", "upper")) -> Censored:
        """Intervals: an empty (NaN) or infinite ``upper`` is right-censored at ``lower``, a zero ``lower`` is
        left-censored at ``upper``, ``lower == upper`` is an exact failure."""
        lo = _floats(lower, names[0], who, allow_nan=False)
        up = np.asarray(upper, dtype=float).copy()
        if up.shape != lo.shape:
            raise DataError(f"{who}: '{names[1]}' has {up.size} values but '{names[0]}' has {lo.size}")
        up[np.isnan(up)] = np.inf
        _non_negative(lo, names[0], who)
        _non_negative(up, names[1], who)
        wrong = lo > up
        if wrong.any():
            row = int(np.flatnonzero(wrong)[0])
            raise DataError(f"{who}: row {row}: '{names[0]}' = {lo[row]:g} is above '{names[1]}' = {up[row]:g}; "
                            f"an interval needs {names[0]} <= {names[1]} (an empty or inf {names[1]} is a suspension)")
        zero = (lo == 0) & (up == 0)
        if zero.any():
            row = int(np.flatnonzero(zero)[0])
            raise DataError(f"{who}: row {row}: '{names[0]}' and '{names[1]}' are both 0; a unit failed at time 0 "
                            f"has no life to fit (leave it out or give the first readout as '{names[1]}')")
        return cls._checked(lo, up, truncation, who)

    @classmethod
    def _checked(cls, lower: np.ndarray, upper: np.ndarray, truncation: Any, who: str) -> Censored:
        if lower.size == 0:
            raise DataError(f"{who}: no units")
        trunc = None
        if truncation is not None:
            trunc = _floats(truncation, "truncation", who)
            if trunc.shape != lower.shape:
                raise DataError(f"{who}: 'truncation' has {trunc.size} values but there are {lower.size} units")
            _non_negative(trunc, "truncation", who)
            late = trunc > np.where(np.isinf(upper), lower, upper)
            if late.any():
                row = int(np.flatnonzero(late)[0])
                raise DataError(f"{who}: row {row}: truncation time {trunc[row]:g} is after the unit's life ended; "
                                f"a unit enters the data before it fails")
        return cls(lower, upper, trunc)


def _floats(values: Any, name: str, who: str, allow_nan: bool = False) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise DataError(f"{who}: '{name}' must hold numbers: {exc}") from None
    if not allow_nan and np.isnan(arr).any():
        row = int(np.flatnonzero(np.isnan(arr))[0])
        raise DataError(f"{who}: '{name}' is missing (NaN) at row {row}; every unit needs a value")
    return arr


def _non_negative(arr: np.ndarray, name: str, who: str) -> None:
    neg = arr < 0
    if neg.any():
        row = int(np.flatnonzero(neg)[0])
        raise DataError(f"{who}: '{name}' must be >= 0 (times since the start of the test); row {row} is "
                        f"{arr[row]:g}")


def log_likelihood_terms(data: Censored, dist: LogDistribution) -> np.ndarray:
    """Each unit's log-likelihood contribution (``-inf`` where the unit is impossible under ``dist``).

    ``dist``'s methods are called on whole arrays shaped like the data (a few evaluations of n units, cheap), so
    per-unit parameters broadcast.
    """
    lo, up = data.lower, data.upper
    out = np.full(data.n, -np.inf)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        exact, right, left, interval = data.exact, data.right, data.left, data.interval
        if exact.any():
            out[exact] = _full(dist.logpdf(lo), data.n)[exact]
        if right.any():
            out[right] = _full(dist.logsf(lo), data.n)[right]
        if left.any():
            out[left] = _full(dist.logcdf(up), data.n)[left]
        if interval.any():
            a_cdf, b_cdf = _full(dist.logcdf(lo), data.n)[interval], _full(dist.logcdf(up), data.n)[interval]
            a_sf, b_sf = _full(dist.logsf(lo), data.n)[interval], _full(dist.logsf(up), data.n)[interval]
            out[interval] = _log_difference(a_cdf, b_cdf, a_sf, b_sf)
        if data.truncation is not None:
            cut = data.truncation > 0
            if cut.any():
                out[cut] -= _full(dist.logsf(data.truncation), data.n)[cut]
    out[np.isnan(out)] = -np.inf
    return out


def _full(values: Any, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(values, dtype=float), (n,))


def log_likelihood(data: Censored, dist: LogDistribution) -> float:
    """The log-likelihood of ``data`` under ``dist`` (``-inf`` if any unit is impossible under it)."""
    return float(np.sum(log_likelihood_terms(data, dist)))


def _log_difference(a_cdf: np.ndarray, b_cdf: np.ndarray, a_sf: np.ndarray, b_sf: np.ndarray) -> np.ndarray:
    """log(F(b) - F(a)) for a < b, from the cdf below the median and from the sf above it (no cancellation)."""
    use_sf = a_sf < np.log(0.5)  # F(a) > 0.5: the interval lies in the upper half
    via_cdf = b_cdf + np.log1p(-np.exp(np.minimum(a_cdf - b_cdf, 0.0)))
    via_sf = a_sf + np.log1p(-np.exp(np.minimum(b_sf - a_sf, 0.0)))
    return np.where(use_sf, via_sf, via_cdf)
