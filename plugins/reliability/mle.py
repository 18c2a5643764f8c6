"""The numerical pieces every censored maximum-likelihood fit of the life-data models shares: maximize a
log-likelihood over internal (log-scale) parameters, central-difference derivatives, and the covariance from the
observed information (the inverse of the negative Hessian at the maximum).

:func:`distributions.fit_distribution` (with its own start rescue and Newton polish), :mod:`.alt`,
:mod:`.mixture`, :mod:`.competing` (through ``fit_distribution``) and :mod:`.weibull` all use them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def maximize(loglik: Callable[[np.ndarray], float], x0: np.ndarray) -> np.ndarray:
    """BFGS on -loglik from ``x0`` (Nelder-Mead polish if BFGS stops early); -inf is treated as a wall."""
    from scipy import optimize

    def nll(x):
        v = loglik(x)
        return -v if np.isfinite(v) else 1e300

    res = optimize.minimize(nll, x0, method="BFGS", options={"gtol": 1e-5, "maxiter": 2000})
    x = res.x
    if not (res.success or res.status == 2) or not np.isfinite(res.fun):
        res2 = optimize.minimize(nll, x, method="Nelder-Mead",
                                 options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 40000, "maxfev": 40000})
        x = res2.x if res2.fun <= res.fun else x
        res = optimize.minimize(nll, x, method="BFGS", options={"gtol": 1e-5})
        x = res.x if res.fun <= nll(x) else x
    return np.asarray(x, dtype=float)


def gradient(f: Callable[[np.ndarray], float], y: np.ndarray, h: float) -> np.ndarray:
    """Central-difference gradient of a scalar function, one step ``h`` for every coordinate."""
    g = np.zeros(y.size)
    for i in range(y.size):
        e = np.zeros(y.size)
        e[i] = h
        g[i] = (f(y + e) - f(y - e)) / (2 * h)
    return g


def hessian(f: Callable[[np.ndarray], float], x: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Central-difference Hessian of a scalar function (the observed information is its negative)."""
    k = len(x)
    hess = np.zeros((k, k))
    f0 = f(x)
    for i in range(k):
        ei = np.zeros(k)
        ei[i] = steps[i]
        hess[i, i] = (f(x + ei) - 2.0 * f0 + f(x - ei)) / steps[i] ** 2
        for j in range(i + 1, k):
            ej = np.zeros(k)
            ej[j] = steps[j]
            hess[i, j] = hess[j, i] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (
                4.0 * steps[i] * steps[j])
    return hess


def observed_covariance(loglik: Callable[[np.ndarray], float], x: np.ndarray,
                        steps: np.ndarray | None = None) -> np.ndarray:
    """Inverse of the observed information (central-difference Hessian, steps 1e-4 unless given); NaN where it
    is not positive definite (no bounds rather than wrong ones)."""
    hess = hessian(loglik, x, np.full(x.size, 1e-4) if steps is None else steps)
    try:
        cov = np.linalg.inv(-hess)
    except np.linalg.LinAlgError:
        return np.full_like(hess, np.nan)
    if not np.all(np.isfinite(cov)) or np.any(np.diag(cov) <= 0):
        return np.full_like(hess, np.nan)
    return cov
