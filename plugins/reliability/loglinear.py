"""Censored log-location-scale regression: every unit its own Weibull or lognormal location, fitted jointly.

ln L_i = X_i . coef + offset_i (L: the Weibull scale eta or the lognormal median), with one shape for all units
or one per group, by maximum likelihood on the censored units of :mod:`.censoring`. The life-stress model fits
its stress laws with it; the competing-modes and mixture models read their units and score their components
through the same pieces (:func:`read_censored`, :class:`LogLocationScale`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from reflow.errors import DataError

from .censoring import Censored, log_likelihood
from .lifedata import LifeParams, read_life_data
from .mle import maximize, observed_covariance


# ---- reading censored life data ------------------------------------------------------------------------------
@dataclass(frozen=True)
class UnitData:
    """Censored lives and the rows of the data they come from (one per unit)."""

    life: Censored
    rows: Any  # the data restricted to one row per unit, in the order of ``life``
    dim: str


def read_censored(data: Any, params: LifeParams, who: str) -> UnitData:
    """Every unit under the one censoring convention: ``time`` + ``failed`` (or ``failure``, ``degradation``
    with any method) or ``lower`` + ``upper``, with optional truncation (:func:`lifedata.read_life_data`)."""
    raw = read_life_data(data, params, who, min_failures=0, intervals=True)
    return UnitData(raw.life, raw.unit_data(data), raw.dim)


def require_failures(life: Censored, n_params: int, who: str, where: str) -> None:
    """All censored, or fewer failures than parameters: no maximum-likelihood estimate exists."""
    if life.failures == 0:
        raise DataError(f"{who}: all {life.n} units are censored (suspended, no failure seen) in {where}; a life "
                        "model needs failures (exact, left- or interval-censored units)")
    if life.failures < n_params:
        raise DataError(f"{who}: {life.failures} failure(s) among {life.n} units in {where}, but the model has "
                        f"{n_params} parameters; it needs at least as many failures as parameters")


# ---- maximum likelihood ----------------------------------------------------------------------------------
def frozen(distribution: str, mu: np.ndarray, shape: np.ndarray | float) -> Any:
    """The scipy distribution of each unit: Weibull(beta, eta = exp(mu)) or lognormal(sigma, median exp(mu))."""
    from scipy import stats

    if distribution == "weibull":
        return stats.weibull_min(shape, scale=np.exp(mu))
    return stats.lognorm(shape, scale=np.exp(mu))


class LogLocationScale:
    """The same distribution as :func:`frozen`, written as ln T = mu + s Z with Z scipy's standard smallest
    extreme value (``gumbel_l``, s = 1/beta: the Weibull) or standard normal (s = sigma: the lognormal).

    Why: a likelihood evaluation freezes a scipy distribution with one scale per unit, and the public methods'
    argument checks cost about 1 ms per call, a hundred times the arithmetic; the optimizer needs hundreds of
    evaluations. This calls the standard distribution's own log-density and log-tails on z = (ln t - mu) / s and
    adds the Jacobian, which gives the values of ``weibull_min``/``lognorm`` (tested)."""

    def __init__(self, distribution: str, mu: np.ndarray, shape: np.ndarray | float):
        from scipy import stats

        self._std = stats.gumbel_l if distribution == "weibull" else stats.norm
        self._own_logcdf = "_logcdf" in type(self._std).__dict__
        self.mu = mu
        self.s = 1.0 / np.asarray(shape, dtype=float) if distribution == "weibull" else np.asarray(shape, float)

    def _z(self, t: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return (np.log(t) - self.mu) / self.s

    def logpdf(self, t: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return self._std._logpdf(self._z(t)) - np.log(self.s) - np.log(t)

    def logcdf(self, t: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if self._own_logcdf:
                return self._std._logcdf(self._z(t))
            # gumbel_l has no _logcdf of its own and scipy's generic one costs 100 us a call: ln F from its own
            # _cdf in the lower tail and ln(1 - S) from its _sf in the upper one keeps full precision in both
            z = self._z(t)
            sf = self._std._sf(z)
            return np.where(sf < 0.5, np.log1p(-sf), np.log(self._std._cdf(z)))

    def logsf(self, t: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return self._std._logsf(self._z(t))


def quantile_term(distribution: str, shape: float, p: float) -> float:
    """ln B_p - mu: (1/beta) ln(-ln(1 - p)) for the Weibull, sigma z_p for the lognormal."""
    from scipy.stats import norm

    if distribution == "weibull":
        return math.log(-math.log1p(-p)) / shape
    return shape * float(norm.ppf(p))


@dataclass
class LogLinearFit:
    """ln L_i = X_i . coef + offset_i with a log-shape per shape group: the estimate, log-likelihood, covariance."""

    x: np.ndarray
    loglik: float
    cov: np.ndarray
    n_coef: int


def log_linear_loglik(life: Censored, X: np.ndarray, offset: np.ndarray, distribution: str,
                      groups: np.ndarray | None = None):
    """ln L(x) of the log-linear life model, x = (coefficients of X, log-shape of each group)."""
    g = np.zeros(life.n, dtype=int) if groups is None else groups
    p = X.shape[1]

    def loglik(x):
        shape = np.exp(x[p:])[g]
        return log_likelihood(life, LogLocationScale(distribution, X @ x[:p] + offset, shape))

    return loglik


def fit_log_linear(life: Censored, X: np.ndarray, offset: np.ndarray, distribution: str,
                   groups: np.ndarray | None = None, n_groups: int = 1, covariance: bool = True,
                   x0: np.ndarray | None = None) -> LogLinearFit:
    """Joint censored MLE of a log-linear life (``X`` design, standardized columns) with a common shape, or one
    shape per group; from ``x0`` if given (a nearby fit), else from least squares on the log times."""
    p = X.shape[1]
    loglik = log_linear_loglik(life, X, offset, distribution, groups)
    if x0 is not None and np.isfinite(loglik(x0)):
        x = maximize(loglik, np.asarray(x0, dtype=float))
        cov = observed_covariance(loglik, x) if covariance else np.full((x.size, x.size), np.nan)
        return LogLinearFit(x, float(loglik(x)), cov, p)

    y = np.log(np.maximum(life.midpoint, 1e-300)) - offset
    failed = life.failed
    use = failed if failed.sum() > p and np.linalg.matrix_rank(X[failed]) == p else np.ones(life.n, bool)
    coef, *_ = np.linalg.lstsq(X[use], y[use], rcond=None)
    resid = y[use] - X[use] @ coef
    s = float(np.std(resid)) if resid.size > p else 0.0
    s = min(max(s, 0.05), 3.0)
    shape0 = math.log(1.2825 / s) if distribution == "weibull" else math.log(s)
    # censored units lie beyond their times: lift the intercept-like start until the likelihood is finite
    x0 = np.concatenate([coef, np.full(n_groups, shape0)])
    if not np.isfinite(loglik(x0)):
        x0[:p] = np.linalg.lstsq(X, np.log(np.maximum(life.midpoint, 1e-300)) - offset, rcond=None)[0]
    x = maximize(loglik, x0)
    ll = loglik(x)
    cov = observed_covariance(loglik, x) if covariance else np.full((x.size, x.size), np.nan)
    return LogLinearFit(x, float(ll), cov, p)
