"""Confidence bounds of a fitted life distribution: Fisher-matrix and likelihood-ratio, two- or one-sided, on the
parameters, on B-lives (quantiles) and on the reliability at a time.

Fisher-matrix (Wald) bounds, Meeker and Escobar (1998), 8.4: the delta method with the covariance of the fit
(the inverse observed information). Positive quantities are bounded on the log scale (parameters, B-lives of
positive-time distributions), reliabilities on the distribution's linearizing scale (ln(-ln R) for the Weibull
family, the normal quantile of F for the (log)normal, the logit of F for the log-logistic), so the bounds stay in
range.

Likelihood-ratio bounds, Meeker and Escobar (1998), 8.3: the set of values v of a quantity whose profile
log-likelihood max{ln L(theta) : g(theta) = v} is within chi2_1(level) / 2 of the maximum. For a parameter the
others are maximized out; for a B-life t_p the distribution is reparameterized by t_p (its scale parameter solved
from the quantile, :meth:`Distribution.with_quantile`), for the reliability at t by F(t) the same way; the two
ends are roots found by Brent's method.

``confidence`` is two-sided unless ``one_sided``: a two-sided 90 % interval has 5 % outside each end, while a
one-sided 90 % lower bound has 10 % below it (it equals the lower end of the two-sided 80 % interval).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from reflow.errors import DataError

from .censoring import log_likelihood
from .distributions import Fit

METHODS = ("fisher", "likelihood-ratio")


def tail(confidence: float, one_sided: bool) -> float:
    """The probability outside each end."""
    return 1.0 - confidence if one_sided else (1.0 - confidence) / 2.0


def z_value(confidence: float, one_sided: bool = False) -> float:
    from scipy.stats import norm

    return float(norm.ppf(1.0 - tail(confidence, one_sided)))


def chi2_value(confidence: float, one_sided: bool = False) -> float:
    """The 1-dof chi-square quantile whose LR interval has ``tail`` outside each end."""
    from scipy.stats import chi2

    return float(chi2.ppf(1.0 - 2.0 * tail(confidence, one_sided), 1))


def _gradient(f: Callable[[np.ndarray], float], y: np.ndarray, h: float = 1e-6) -> np.ndarray:
    g = np.zeros(y.size)
    for i in range(y.size):
        e = np.zeros(y.size)
        e[i] = h * max(1.0, abs(y[i]))
        g[i] = (f(y + e) - f(y - e)) / (2 * e[i])
    return g


def _wald(fit: Fit, g: Callable[[np.ndarray], float], confidence: float, one_sided: bool) -> tuple[float, float]:
    """(value, z * se) of g on the fitting scale (g takes the fitting-scale parameter vector)."""
    y = fit.internal
    value = g(y)
    grad = _gradient(g, y)
    var = float(grad @ fit.cov @ grad)
    if not (math.isfinite(var) and var >= 0):
        return value, math.nan
    return value, z_value(confidence, one_sided) * math.sqrt(var)


def _natural(fit: Fit, y: np.ndarray) -> np.ndarray:
    return fit.distribution.from_internal(y)


# ---- Fisher-matrix -------------------------------------------------------------------------------------------
def fisher_parameter(fit: Fit, i: int, confidence: float, one_sided: bool = False) -> tuple[float, float, float]:
    dist = fit.distribution
    value = float(fit.params[i])
    se = math.sqrt(fit.cov[i, i]) if fit.cov[i, i] >= 0 else math.nan
    w = z_value(confidence, one_sided) * se
    if dist.positive[i]:
        return value, value * math.exp(-w), value * math.exp(w)
    lo = value - w
    if i == dist.location_index:
        lo = max(lo, 0.0)
    return value, lo, value + w


def fisher_quantile(fit: Fit, p: float, confidence: float, one_sided: bool = False) -> tuple[float, float, float]:
    """The time by which a fraction ``p`` has failed (B-life at 100 p %), bounded on the log scale (the linear
    scale for the normal distribution, whose quantiles may be negative)."""
    dist = fit.distribution
    value = fit.quantile(p)
    if dist.name == "normal":
        _, w = _wald(fit, lambda y: dist.quantile(_natural(fit, y), p), confidence, one_sided)
        return value, value - w, value + w
    if value <= 0:
        return value, math.nan, math.nan
    _, w = _wald(fit, lambda y: math.log(dist.quantile(_natural(fit, y), p)), confidence, one_sided)
    return value, value * math.exp(-w), value * math.exp(w)


def linearize(paper: str, f: np.ndarray) -> np.ndarray:
    """F on the scale where the distribution's probability plot is a straight line (used for bounds on R)."""
    from scipy.stats import norm

    f = np.clip(f, 1e-300, 1 - 1e-16)
    if paper in ("weibull", "exponential"):
        return np.log(-np.log1p(-f))
    if paper in ("lognormal", "normal"):
        return norm.ppf(f)
    return np.log(f) - np.log1p(-f)


def delinearize(paper: str, z: np.ndarray) -> np.ndarray:
    from scipy.special import expit
    from scipy.stats import norm

    if paper in ("weibull", "exponential"):
        return -np.expm1(-np.exp(z))
    if paper in ("lognormal", "normal"):
        return norm.cdf(z)
    return expit(z)


def fisher_reliability(fit: Fit, t: np.ndarray, confidence: float,
                       one_sided: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R(t) with its lower and upper bounds, vectorized over ``t``."""
    dist = fit.distribution
    t = np.atleast_1d(np.asarray(t, dtype=float))
    paper = dist.paper
    zc = z_value(confidence, one_sided)
    y = fit.internal

    def lin(yy: np.ndarray) -> np.ndarray:
        return linearize(paper, np.asarray(dist.frozen(_natural(fit, yy)).cdf(t), dtype=float))

    f = np.asarray(fit.frozen().cdf(t), dtype=float)
    z0 = lin(y)
    grads = np.zeros((t.size, y.size))
    for i in range(y.size):
        e = np.zeros(y.size)
        e[i] = 1e-6 * max(1.0, abs(y[i]))
        grads[:, i] = (lin(y + e) - lin(y - e)) / (2 * e[i])
    se = np.sqrt(np.clip(np.einsum("ni,ij,nj->n", grads, fit.cov, grads), 0.0, None))
    inside = (f > 0) & (f < 1) & np.isfinite(se)
    f_hi = np.where(inside, delinearize(paper, z0 + zc * se), f)
    f_lo = np.where(inside, delinearize(paper, z0 - zc * se), f)
    return 1.0 - f, 1.0 - f_hi, 1.0 - f_lo


# ---- likelihood ratio ----------------------------------------------------------------------------------------
class _Profile:
    """max ln L over the free parameters (fitting scale) with a constraint built into ``params_of``."""

    def __init__(self, fit: Fit, free: list[int], params_of: Callable[[np.ndarray, float], np.ndarray]) -> None:
        self.fit, self.free, self.params_of = fit, free, params_of
        self.y_free = fit.internal[free]

    def __call__(self, v: float) -> float:
        import warnings

        with warnings.catch_warnings(), np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf in scipy's finite differences at the edge
            return self._maximum(v)

    def _maximum(self, v: float) -> float:
        from scipy import optimize

        def negll(z: np.ndarray) -> float:
            try:
                params = self.params_of(z, v)
            except (ValueError, ZeroDivisionError, OverflowError):
                return math.inf
            if not np.all(np.isfinite(params)):
                return math.inf
            ll = log_likelihood(self.fit.data, self.fit.distribution.frozen(params))
            return -ll if math.isfinite(ll) else math.inf

        if not self.free:
            return -negll(np.zeros(0))
        z0 = self.y_free
        if not math.isfinite(negll(z0)):
            z0 = self.fit.internal[self.free]
        res = optimize.minimize(negll, z0, method="BFGS", options={"gtol": 1e-7})
        if not math.isfinite(res.fun):
            res = optimize.minimize(negll, z0, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-11})
        if math.isfinite(res.fun):
            self.y_free = res.x  # warm start for the next value
        return -float(res.fun)


def _roots(profile: Callable[[float], float], v0: float, step: float, target: float,
           limits: tuple[float, float] = (-math.inf, math.inf)) -> tuple[float, float]:
    """The two values around v0 where the profile log-likelihood falls to ``target`` (Brent's method after
    stepping out in multiples of ``step``); an end that is never reached inside ``limits`` is that limit."""
    from scipy import optimize

    def excess(v: float) -> float:
        return profile(v) - target

    ends = []
    for sign in (-1.0, 1.0):
        inner, d = v0, step
        found = None
        for _ in range(60):
            outer = v0 + sign * d
            if not (limits[0] < outer < limits[1]):
                outer = limits[0] if sign < 0 else limits[1]
                if math.isfinite(outer) and excess(outer) < 0:
                    found = (inner, outer)
                break
            if excess(outer) < 0:
                found = (inner, outer)
                break
            inner, d = outer, d * 1.6
        if found is None:
            ends.append(limits[0] if sign < 0 else limits[1])
            continue
        a, b = sorted(found)
        ends.append(optimize.brentq(excess, a, b, xtol=1e-12 * max(1.0, abs(v0)), rtol=1e-12))
    return ends[0], ends[1]


def lr_parameter(fit: Fit, i: int, confidence: float, one_sided: bool = False) -> tuple[float, float, float]:
    """Profile-likelihood bounds on parameter ``i`` (found on the fitting scale: ln of positive parameters)."""
    dist = fit.distribution
    y = fit.internal
    free = [j for j in range(dist.k) if j != i and j not in fit.fixed]

    def params_of(z: np.ndarray, v: float) -> np.ndarray:
        full = y.copy()
        full[free] = z
        full[i] = v
        return dist.from_internal(full)

    target = fit.loglik - chi2_value(confidence, one_sided) / 2.0
    se = math.sqrt(fit.cov[i, i]) if fit.cov[i, i] > 0 else 0.1 * max(1.0, abs(y[i]))
    limits = (-math.inf, math.inf)
    if i == dist.location_index:
        first = float(np.min(fit.data.upper[fit.data.failed]))
        limits = (0.0 - 1e-12, first)
    lo, hi = _roots(_Profile(fit, free, params_of), float(y[i]), 0.5 * se, target, limits)
    if dist.positive[i]:
        return float(fit.params[i]), math.exp(lo), math.exp(hi)
    return float(fit.params[i]), max(lo, 0.0) if i == dist.location_index else lo, hi


def _reparameterized(fit: Fit) -> tuple[list[int], Callable[[np.ndarray], np.ndarray]]:
    """The free parameters (all but the scale) and the natural parameter vector from their fitting scale."""
    dist = fit.distribution
    y = fit.internal
    free = [j for j in range(dist.k) if j != dist.scale_index and j not in fit.fixed]

    def base(z: np.ndarray) -> np.ndarray:
        full = y.copy()
        full[free] = z
        return dist.from_internal(full)

    return free, base


def lr_quantile(fit: Fit, p: float, confidence: float, one_sided: bool = False) -> tuple[float, float, float]:
    """Profile-likelihood bounds on the B-life t_p (the distribution reparameterized by t_p)."""
    dist = fit.distribution
    free, base = _reparameterized(fit)
    value = fit.quantile(p)
    log_scale = dist.name != "normal"
    if log_scale and value <= 0:
        return value, math.nan, math.nan

    def params_of(z: np.ndarray, v: float) -> np.ndarray:
        return dist.with_quantile(base(z), p, math.exp(v) if log_scale else v)

    target = fit.loglik - chi2_value(confidence, one_sided) / 2.0
    _, w = _wald(fit, (lambda yy: math.log(dist.quantile(_natural(fit, yy), p))) if log_scale
                 else (lambda yy: dist.quantile(_natural(fit, yy), p)), 0.6827, False)
    step = 0.5 * w if math.isfinite(w) and w > 0 else (0.1 if log_scale else 0.1 * abs(value) + 1e-9)
    v0 = math.log(value) if log_scale else value
    lo, hi = _roots(_Profile(fit, free, params_of), v0, step, target)
    return (value, math.exp(lo), math.exp(hi)) if log_scale else (value, lo, hi)


def lr_reliability(fit: Fit, t: float, confidence: float, one_sided: bool = False) -> tuple[float, float, float]:
    """Profile-likelihood bounds on R(t) (the distribution reparameterized by F(t), on its linearizing scale)."""
    dist = fit.distribution
    free, base = _reparameterized(fit)
    f = float(fit.frozen().cdf(t))
    r = 1.0 - f
    if not 0.0 < f < 1.0:
        return r, r, r
    paper = dist.paper

    def params_of(z: np.ndarray, v: float) -> np.ndarray:
        return dist.with_quantile(base(z), float(delinearize(paper, np.array(v))), t)

    target = fit.loglik - chi2_value(confidence, one_sided) / 2.0
    v0 = float(linearize(paper, np.array(f)))
    lo, hi = _roots(_Profile(fit, free, params_of), v0, 0.2, target)
    return r, 1.0 - float(delinearize(paper, np.array(hi))), 1.0 - float(delinearize(paper, np.array(lo)))


# ---- one entry point per quantity ----------------------------------------------------------------------------
def parameter_bounds(fit: Fit, method: str, confidence: float,
                     one_sided: bool = False) -> dict[str, tuple[float, float, float]]:
    """Each parameter with its (lower, upper) bounds; a parameter held at a boundary (the 2-P exponential's
    location at the first failure) has none from the likelihood and is returned as it is."""
    _check(method)
    out = {}
    for i, name in enumerate(fit.distribution.params):
        if i in fit.fixed:
            out[name] = (float(fit.params[i]), float(fit.params[i]), float(fit.params[i]))
        elif method == "fisher" or not np.all(np.isfinite(fit.cov)):
            out[name] = fisher_parameter(fit, i, confidence, one_sided)
        else:
            out[name] = lr_parameter(fit, i, confidence, one_sided)
    return out


def b_life(fit: Fit, percent: float, method: str, confidence: float,
           one_sided: bool = False) -> tuple[float, float, float]:
    """B-life (time by which ``percent`` % have failed) with its bounds."""
    _check(method)
    p = percent / 100.0
    if method == "fisher":
        return fisher_quantile(fit, p, confidence, one_sided)
    return lr_quantile(fit, p, confidence, one_sided)


def reliability(fit: Fit, t: np.ndarray, method: str, confidence: float,
                one_sided: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """R(t) with its bounds, for each t (likelihood-ratio: one profile search per distinct time)."""
    _check(method)
    t = np.atleast_1d(np.asarray(t, dtype=float))
    if method == "fisher":
        return fisher_reliability(fit, t, confidence, one_sided)
    values, inverse = np.unique(t, return_inverse=True)
    rows = np.array([lr_reliability(fit, float(v), confidence, one_sided) for v in values]).reshape(-1, 3)
    rows = rows[inverse.reshape(-1)]
    return rows[:, 0], rows[:, 1], rows[:, 2]


def _check(method: str) -> None:
    if method not in METHODS:
        raise DataError(f"unknown bounds method {method!r}; use one of {', '.join(METHODS)}")
