"""The life distributions, one registry entry each, and their maximum-likelihood fit under any censoring.

Every entry wraps a ``scipy.stats`` distribution (never a hand-written pdf) and says how a parameter vector maps
to it, which parameters are positive (fitted on the log scale), where the fit starts and which probability paper
it is drawn on. :func:`fit_distribution` maximizes :func:`censoring.log_likelihood` (exact, right-, left- and
interval-censored units, left truncation) and returns a :class:`Fit` with the covariance from the observed
information (the inverse of the negative Hessian of the log-likelihood on the fitting scale).

Parameter names follow the ``reliability`` library (and reflow's weibull model): Weibull ``eta`` (scale),
``beta`` (shape), ``gamma`` (location); lognormal ``mu``, ``sigma`` of ln t; exponential ``lambda`` (rate) and
``gamma``; normal ``mu``, ``sigma``; gamma ``alpha`` (scale), ``beta`` (shape); log-logistic ``alpha`` (scale),
``beta`` (shape).

The threshold models (``weibull-3p``, ``exponential-2p``) are fitted by profile likelihood over the location in
[0, first failure): for each location the 2-parameter fit with it fixed, as in Meeker and Escobar (1998),
section 11.6. The 2-parameter exponential's likelihood grows up to the first failure (its MLE is the first
failure time, Lawless 2003, 3.5); the 3-parameter Weibull's grows without bound there when beta < 1, which is
reported as an error rather than returned.

AICc = 2k - 2 ln L + 2k(k+1)/(n-k-1) and BIC = k ln n - 2 ln L with n every unit (failed or not) and k the
number of fitted parameters, as the ``reliability`` library counts them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from reflow.errors import DataError

from .censoring import Censored, log_likelihood
from .mle import gradient, hessian, observed_covariance


class Frozen:
    """A scipy.stats distribution with its parameters bound, without scipy's costly freezing (a frozen object is
    built per likelihood evaluation, hundreds of times per fit): the methods :mod:`censoring` needs, and more."""

    __slots__ = ("dist", "args", "kwargs")

    def __init__(self, dist: Any, args: tuple, kwargs: dict) -> None:
        self.dist, self.args, self.kwargs = dist, args, kwargs

    def logpdf(self, x):
        return self.dist.logpdf(x, *self.args, **self.kwargs)

    def logcdf(self, x):
        return self.dist.logcdf(x, *self.args, **self.kwargs)

    def logsf(self, x):
        return self.dist.logsf(x, *self.args, **self.kwargs)

    def pdf(self, x):
        return self.dist.pdf(x, *self.args, **self.kwargs)

    def cdf(self, x):
        return self.dist.cdf(x, *self.args, **self.kwargs)

    def sf(self, x):
        return self.dist.sf(x, *self.args, **self.kwargs)

    def ppf(self, q):
        return self.dist.ppf(q, *self.args, **self.kwargs)

    def mean(self):
        return self.dist.mean(*self.args, **self.kwargs)

    def freeze(self) -> Any:
        """The genuine scipy frozen distribution (for anything not wrapped here)."""
        return self.dist(*self.args, **self.kwargs)


@dataclass(frozen=True)
class Distribution:
    """One life distribution: parameters, the scipy.stats object and how to fit and draw it.

    ``scale_kind`` says how the parameter at ``scale_index`` moves a quantile (``scale``: t_p - loc is
    proportional to it; ``rate``: inversely; ``logscale``: ln(t_p - loc) shifts with it; ``location``: t_p
    shifts with it): :meth:`with_quantile` uses it to put a chosen quantile at a chosen time, the
    reparameterization of the likelihood-ratio bounds on B-lives and reliabilities.
    """

    name: str
    title: str
    params: tuple[str, ...]
    positive: tuple[bool, ...]
    scipy_args: Callable[[np.ndarray], tuple[Any, tuple, dict]]
    scale_index: int
    scale_kind: str
    paper: str
    base: str | None = None  # threshold models: the 2-parameter distribution with the location fixed
    location_index: int | None = None
    start_rule: str = ""
    time_params: tuple[int, ...] = field(default=())  # linear in time (rescaled while fitting)

    @property
    def k(self) -> int:
        return len(self.params)

    def frozen(self, params: np.ndarray) -> Frozen:
        dist, args, kwargs = self.scipy_args(np.asarray(params, dtype=float))
        return Frozen(dist, args, kwargs)

    def loc(self, params: np.ndarray) -> float:
        return 0.0 if self.location_index is None else float(params[self.location_index])

    def quantile(self, params: np.ndarray, p: float) -> float:
        return float(self.frozen(params).ppf(p))

    def with_quantile(self, params: np.ndarray, p: float, t: float) -> np.ndarray:
        """``params`` with the scale parameter changed so that the ``p`` quantile is at ``t`` (others kept)."""
        out = np.array(params, dtype=float)
        loc = self.loc(out)
        q = self.quantile(out, p)
        i = self.scale_index
        if self.scale_kind == "location":
            out[i] += t - q
        elif self.scale_kind == "logscale":
            out[i] += math.log((t - loc) / (q - loc))
        elif self.scale_kind == "scale":
            out[i] *= (t - loc) / (q - loc)
        else:  # rate
            out[i] *= (q - loc) / (t - loc)
        return out

    def to_internal(self, params: np.ndarray, unit: float = 1.0) -> np.ndarray:
        """The fitting scale: ln of positive parameters, time parameters in units of ``unit``."""
        y = np.array(params, dtype=float)
        for i in range(self.k):
            if self.positive[i]:
                y[i] = math.log(y[i])
            elif i in self.time_params:
                y[i] = y[i] / unit
        return y

    def from_internal(self, y: np.ndarray, unit: float = 1.0) -> np.ndarray:
        out = np.array(y, dtype=float)
        for i in range(self.k):
            if self.positive[i]:
                out[i] = math.exp(min(out[i], 700.0))
            elif i in self.time_params:
                out[i] = out[i] * unit
        return out


def _weibull(p):
    from scipy import stats

    return stats.weibull_min, (p[1],), {"scale": p[0]}


def _weibull3(p):
    from scipy import stats

    return stats.weibull_min, (p[1],), {"loc": p[2], "scale": p[0]}


def _lognormal(p):
    from scipy import stats

    return stats.lognorm, (p[1],), {"scale": math.exp(p[0])}


def _exponential(p):
    from scipy import stats

    return stats.expon, (), {"scale": 1.0 / p[0]}


def _exponential2(p):
    from scipy import stats

    return stats.expon, (), {"loc": p[1], "scale": 1.0 / p[0]}


def _normal(p):
    from scipy import stats

    return stats.norm, (), {"loc": p[0], "scale": p[1]}


def _gamma(p):
    from scipy import stats

    return stats.gamma, (p[1],), {"scale": p[0]}


def _loglogistic(p):
    from scipy import stats

    return stats.fisk, (p[1],), {"scale": p[0]}


DISTRIBUTIONS: dict[str, Distribution] = {d.name: d for d in (
    Distribution("weibull", "Weibull 2-P", ("eta", "beta"), (True, True), _weibull, 0, "scale", "weibull",
                 start_rule="sev"),
    Distribution("weibull-3p", "Weibull 3-P", ("eta", "beta", "gamma"), (True, True, False), _weibull3, 0, "scale",
                 "weibull", base="weibull", location_index=2, time_params=(2,)),
    Distribution("lognormal", "lognormal", ("mu", "sigma"), (False, True), _lognormal, 0, "logscale", "lognormal",
                 start_rule="lognormal"),
    Distribution("exponential", "exponential 1-P", ("lambda",), (True,), _exponential, 0, "rate", "exponential",
                 start_rule="exponential"),
    Distribution("exponential-2p", "exponential 2-P", ("lambda", "gamma"), (True, False), _exponential2, 0, "rate",
                 "exponential", base="exponential", location_index=1, time_params=(1,)),
    Distribution("normal", "normal", ("mu", "sigma"), (False, True), _normal, 0, "location", "normal",
                 start_rule="normal", time_params=(0,)),
    Distribution("gamma", "gamma", ("alpha", "beta"), (True, True), _gamma, 0, "scale", "weibull",
                 start_rule="gamma"),
    Distribution("loglogistic", "log-logistic", ("alpha", "beta"), (True, True), _loglogistic, 0, "scale",
                 "loglogistic", start_rule="loglogistic"),
)}

CANDIDATES: tuple[str, ...] = tuple(DISTRIBUTIONS)


def get(name: str) -> Distribution:
    try:
        return DISTRIBUTIONS[name]
    except KeyError:
        raise DataError(f"unknown life distribution {name!r}; choose one of {', '.join(DISTRIBUTIONS)}") from None


@dataclass
class Fit:
    """A maximum-likelihood fit: natural parameters, log-likelihood, covariance on the fitting scale (ln of the
    positive parameters, the others as they are), and the data it was fitted to."""

    distribution: Distribution
    params: np.ndarray
    loglik: float
    cov: np.ndarray
    data: Censored
    fixed: tuple[int, ...] = ()  # parameters held fixed (a location at its boundary): zero variance

    @property
    def n(self) -> int:
        return self.data.n

    @property
    def failures(self) -> int:
        return self.data.failures

    @property
    def k(self) -> int:
        return self.distribution.k

    @property
    def aicc(self) -> float:
        k, n = self.k, self.n
        penalty = 2.0 * k * (k + 1) / (n - k - 1) if n - k - 1 > 0 else math.inf
        return 2.0 * k - 2.0 * self.loglik + penalty

    @property
    def bic(self) -> float:
        return self.k * math.log(self.n) - 2.0 * self.loglik

    def criterion(self, name: str) -> float:
        """The information criterion candidates are ranked by: ``aicc`` or ``bic`` (lower is better)."""
        return self.aicc if name == "aicc" else self.bic

    @property
    def internal(self) -> np.ndarray:
        return self.distribution.to_internal(self.params)

    def frozen(self) -> Frozen:
        return self.distribution.frozen(self.params)

    def named(self) -> dict[str, float]:
        return {name: float(v) for name, v in zip(self.distribution.params, self.params, strict=True)}

    def loglik_at(self, params: np.ndarray) -> float:
        return log_likelihood(self.data, self.distribution.frozen(params))

    def quantile(self, p: float) -> float:
        return self.distribution.quantile(self.params, p)

    def standard_errors(self) -> dict[str, float]:
        """Natural-scale standard errors by the delta method (x * se(ln x) for positive parameters)."""
        se = np.sqrt(np.clip(np.diag(self.cov), 0.0, None))
        return {name: float(se[i] * (self.params[i] if self.distribution.positive[i] else 1.0))
                for i, name in enumerate(self.distribution.params)}


# ---- fitting -------------------------------------------------------------------------------------------------
def check_fittable(dist: Distribution, data: Censored, who: str) -> None:
    """Too few failures for the parameters, or none at all, is the user's data problem: say so."""
    if data.failures == 0:
        raise DataError(f"{who}: all {data.n} units are censored (suspended); a {dist.title} fit needs failures "
                        f"(rows with failed = 1, or a finite upper time)")
    if data.failures < dist.k:
        raise DataError(f"{who}: {data.failures} failure(s) among {data.n} units but the {dist.title} distribution "
                        f"has {dist.k} parameters ({', '.join(dist.params)}); it needs at least {dist.k} failures")
    failed_at = np.unique(np.round(data.midpoint[data.failed], 12))
    if dist.k >= 2 and failed_at.size < 2 and not data.interval.any() and not data.left.any():
        raise DataError(f"{who}: the failures all happen at {failed_at[0]:g}; a {dist.title} fit needs two "
                        f"distinct failure times")


def fit_distribution(name: str, data: Censored, *, who: str = "life-distribution") -> Fit:
    """Maximum-likelihood fit of distribution ``name`` to ``data`` (any censoring, optional truncation)."""
    dist = get(name)
    check_fittable(dist, data, who)
    if dist.base is not None:
        return _fit_threshold(dist, data, who)
    unit = _unit(data)
    y0 = dist.to_internal(start(dist, data), unit)
    y, ll = _maximize(dist, data, y0, unit, who)
    params = dist.from_internal(y, unit)
    return Fit(dist, params, ll, _covariance(dist, data, params), data)


def _unit(data: Censored) -> float:
    """A typical time (for scaling time-valued parameters while fitting)."""
    mid = data.midpoint
    pos = mid[mid > 0]
    return float(np.median(pos)) if pos.size else 1.0


def _objective(dist: Distribution, data: Censored, unit: float):
    def negll(y: np.ndarray) -> float:
        if not np.all(np.isfinite(y)):
            return math.inf
        params = dist.from_internal(y, unit)
        ll = log_likelihood(data, dist.frozen(params))
        return -ll if math.isfinite(ll) else math.inf

    return negll


def _maximize(dist: Distribution, data: Censored, y0: np.ndarray, unit: float, who: str,
              polish: bool = True) -> tuple[np.ndarray, float]:
    """BFGS on the fitting scale, Nelder-Mead if it fails, then Newton steps on central differences (to reach
    the 1e-6 agreement with other MLE codes that a finite-difference BFGS alone stops short of)."""
    from scipy import optimize

    f = _objective(dist, data, unit)
    y0 = np.asarray(y0, dtype=float)
    if not math.isfinite(f(y0)):
        y0 = _rescue(f, y0)
    best = y0
    if y0.size:
        res = optimize.minimize(f, y0, method="BFGS", options={"gtol": 1e-8 if polish else 1e-5})
        best = res.x if res.fun <= f(y0) else y0
        if not (res.success or res.status == 2) or not math.isfinite(res.fun):
            nm = optimize.minimize(f, best, method="Nelder-Mead",
                                   options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 20000, "maxfev": 40000})
            if nm.fun < f(best):
                best = nm.x
        if polish:
            best = _newton(f, best)
    value = -f(best)
    if not math.isfinite(value):
        raise DataError(f"{who}: the {dist.title} maximum-likelihood fit did not converge (the data are "
                        f"impossible under every parameter tried)")
    return best, value


def _rescue(f, y0: np.ndarray) -> np.ndarray:
    """A start where the likelihood is finite: widen the spread (the last positive parameter is usually the
    shape or sigma) until it is."""
    for factor in (0.5, -0.5, 1.0, -1.0, 2.0, -2.0):
        y = y0.copy()
        y[-1] += factor
        if math.isfinite(f(y)):
            return y
    return y0


def _newton(f, y: np.ndarray, steps: int = 3) -> np.ndarray:
    h = 1e-4
    for _ in range(steps):
        g = gradient(f, y, h)
        H = hessian(f, y, np.full(y.size, h))
        try:
            step = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            return y
        if not np.all(np.isfinite(step)) or np.max(np.abs(step)) > 0.1:
            return y
        if f(y - step) <= f(y):
            y = y - step
        else:
            return y
        if np.max(np.abs(step)) < 1e-9:  # converged: another step would only cost evaluations
            return y
    return y


def _covariance(dist: Distribution, data: Censored, params: np.ndarray, fixed: tuple[int, ...] = ()) -> np.ndarray:
    """Inverse observed information on the fitting scale (ln for positive parameters, natural for the others);
    NaN where it is not positive definite (no bounds rather than wrong ones). Fixed parameters get zero rows."""
    y = dist.to_internal(params)
    free = [i for i in range(dist.k) if i not in fixed]

    def ll(z: np.ndarray) -> float:
        full = y.copy()
        full[free] = z
        return log_likelihood(data, dist.frozen(dist.from_internal(full)))

    steps = np.full(len(free), 1e-4)
    for j, i in enumerate(free):
        if not dist.positive[i]:
            steps[j] = 1e-4 * max(abs(y[i]), _spread(dist, params, i, data))
    sub = observed_covariance(ll, y[free], steps)
    cov = np.zeros((dist.k, dist.k))
    if not np.all(np.isfinite(sub)):
        return np.full((dist.k, dist.k), np.nan)
    cov[np.ix_(free, free)] = sub
    return cov


def _spread(dist: Distribution, params: np.ndarray, i: int, data: Censored) -> float:
    """A step scale for a natural-scale parameter: the location's distance to the first failure, or sigma."""
    if i == dist.location_index:
        first = float(np.min(data.upper[data.failed]))
        return max(first - params[i], 1e-6 * _unit(data))
    return float(params[1]) if dist.name == "normal" else 1.0


def _fit_threshold(dist: Distribution, data: Censored, who: str) -> Fit:
    """Profile likelihood over the location in [0, first failure): a coarse grid of 2-parameter fits with the
    location fixed, then the joint maximum from the best of them (the location on a logit scale inside
    (0, first failure)), then Newton steps on the natural location."""
    from scipy import optimize
    from scipy.special import expit, logit

    base = get(dist.base)
    li = dist.location_index
    first = float(np.min(data.upper[data.failed]))
    if first <= 0:
        raise DataError(f"{who}: a {dist.title} fit needs the first failure after time 0")
    unit = _unit(data)
    y_base = base.to_internal(start(base, data), unit)

    def profile(gamma: float, y0: np.ndarray) -> tuple[float, np.ndarray]:
        try:
            return _maximize(base, _shift(data, gamma), y0, unit, who, polish=False)[::-1]
        except DataError:
            return -math.inf, y0

    grid = first * np.array([0.0, 0.5, 0.8, 0.95, 0.995])
    fits = []
    for g in grid:
        ll, y_base = profile(float(g), y_base)
        fits.append((ll, float(g), y_base))
    ll0, g0, yb = max(fits, key=lambda item: item[0])

    def negll(z: np.ndarray) -> float:
        gamma = first * float(expit(z[-1]))
        params = np.insert(base.from_internal(z[:-1], unit), li, gamma)
        ll = log_likelihood(data, dist.frozen(params))
        return -ll if math.isfinite(ll) else math.inf

    frac = min(max(g0 / first, 1e-4), 1 - 1e-4)
    z0 = np.append(yb, logit(frac))
    res = optimize.minimize(negll, z0, method="BFGS", options={"gtol": 1e-6})  # Newton polishes
    z = res.x if res.fun <= negll(z0) else z0
    gamma = first * float(expit(z[-1]))
    params = np.insert(base.from_internal(z[:-1], unit), li, gamma)
    if 0 < gamma < first * (1 - 1e-6):  # polish in (ln eta, ln beta, gamma / unit)
        y = _newton(_objective(dist, data, unit), dist.to_internal(params, unit))
        params = dist.from_internal(y, unit)
    ll = log_likelihood(data, dist.frozen(params))
    fixed: tuple[int, ...] = ()
    if dist.name == "exponential-2p":
        edge_ll, edge_y = profile(first, z[:-1])
        if edge_ll >= ll - 1e-9:  # the 2-P exponential's MLE is the first failure (exact failures)
            y, edge_ll = _maximize(base, _shift(data, first), edge_y, unit, who)
            params, ll, fixed = np.insert(base.from_internal(y, unit), li, first), edge_ll, (li,)
    elif params[li] > first * 0.999:
        raise DataError(f"{who}: the {dist.title} likelihood keeps growing as the location nears the first failure "
                        f"({first:g}): the shape is below 1 and the fit is degenerate; use a 2-parameter "
                        f"distribution")
    if params[li] <= first * 1e-6:
        params[li], fixed = 0.0, (li,)
        y, ll = _maximize(base, data, base.to_internal(np.delete(params, li), unit), unit, who)
        params = np.insert(base.from_internal(y, unit), li, 0.0)
    return Fit(dist, params, ll, _covariance(dist, data, params, fixed), data, fixed)


def _shift(data: Censored, gamma: float) -> Censored:
    """The data on the time axis t - gamma: units censored before gamma carry no information there and are
    clipped to 0 (a right-censored unit at 0 has S = 1)."""
    lo = np.clip(data.lower - gamma, 0.0, None)
    up = np.clip(data.upper - gamma, 0.0, None)
    trunc = None if data.truncation is None else np.clip(data.truncation - gamma, 0.0, None)
    return Censored(lo, up, trunc)


# ---- starting values -----------------------------------------------------------------------------------------
def start(dist: Distribution, data: Censored) -> np.ndarray:
    """Starting parameters from a least-squares line on the distribution's paper through the plotting positions
    (Johnson's adjusted ranks of the units' midpoints); the maximum likelihood then only has to polish it."""
    from scipy import stats

    from .probplot import adjusted_ranks

    mid, failed = data.midpoint, data.failed
    tf = np.sort(mid[failed])
    tf_pos = np.clip(tf, 1e-9 * max(float(np.max(mid)), 1e-300), None)
    exposure = float(np.sum(mid))
    if dist.start_rule == "exponential":
        return np.array([data.failures / exposure if exposure > 0 else 1.0])
    f = adjusted_ranks(mid, failed)
    if tf.size >= 2 and np.ptp(tf) > 0:
        if dist.start_rule in ("sev", "normal", "lognormal", "loglogistic", "gamma"):
            z = {"sev": lambda q: np.log(-np.log1p(-q)), "loglogistic": lambda q: np.log(q / (1 - q))}.get(
                dist.start_rule, stats.norm.ppf)(f)
            x = tf if dist.start_rule == "normal" else np.log(tf_pos)
            s, m = np.polyfit(z, x, 1)
            s = float(np.clip(s, 1e-3 * max(float(np.std(x)), 1e-12), None)) if s > 0 else max(float(np.std(x)), 1e-3)
        else:  # pragma: no cover - every rule is listed above
            raise AssertionError(dist.start_rule)
    else:
        x = tf if dist.start_rule == "normal" else np.log(tf_pos)
        m, s = float(np.mean(x)), max(float(np.std(np.log(np.clip(mid, 1e-12, None)))), 0.3)
        if dist.start_rule == "normal":
            s = max(float(np.std(mid)), 0.1 * abs(m) + 1e-9)
    m = float(m)
    if dist.start_rule == "sev":
        return np.array([math.exp(m), 1.0 / s])
    if dist.start_rule == "loglogistic":
        return np.array([math.exp(m), 1.0 / s])
    if dist.start_rule in ("lognormal", "normal"):
        return np.array([m, s])
    # gamma from the lognormal line: matching mean and coefficient of variation
    mean = math.exp(m + s * s / 2)
    cv2 = math.expm1(min(s * s, 50.0))
    return np.array([mean * cv2, 1.0 / cv2])
