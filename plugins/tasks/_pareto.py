"""Progress measures of an optimization: best value so far, Pareto set and hypervolume history."""

from __future__ import annotations

import numpy as np


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Rows of ``values`` (n, m; larger is better) that no other row dominates."""
    n = len(values)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        if not keep[i]:
            continue
        dominated = np.all(values >= values[i], axis=1) & np.any(values > values[i], axis=1)
        if dominated.any():
            keep[i] = False
    return keep


def reference_point(values: np.ndarray, given: list[float | None]) -> np.ndarray:
    """The hypervolume reference (larger is better): the given values, else the worst seen minus 10 % of the range."""
    ref = np.empty(len(given))
    for j, g in enumerate(given):
        if g is not None:
            ref[j] = g
        elif len(values):
            lo, hi = float(np.min(values[:, j])), float(np.max(values[:, j]))
            ref[j] = lo - 0.1 * (hi - lo if hi > lo else max(abs(lo), 1.0))
        else:
            ref[j] = 0.0
    return ref


def hypervolume(values: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume dominated by ``values`` (larger is better) above ``ref`` (pymoo's HV indicator)."""
    better = values[np.all(values > ref, axis=1)] if len(values) else values
    if not len(better):
        return 0.0
    from pymoo.indicators.hv import HV

    return float(HV(ref_point=-ref)(-better))


def hypervolume_history(values: np.ndarray, feasible: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Hypervolume after each evaluation (in trial order), from the feasible trials so far."""
    out = np.zeros(len(values))
    current = 0.0
    for k in range(len(values)):
        if feasible[k] and np.all(values[k] > ref):
            current = hypervolume(values[: k + 1][feasible[: k + 1]], ref)
        out[k] = current
    return out


def best_history(values: np.ndarray, feasible: np.ndarray) -> np.ndarray:
    """Best (largest) feasible value after each evaluation; NaN until the first feasible one."""
    masked = np.where(feasible, values, -np.inf)
    best = np.maximum.accumulate(masked) if len(masked) else masked
    return np.where(np.isfinite(best), best, np.nan)
