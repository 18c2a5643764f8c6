"""Two-subpopulation Weibull mixture ``weibull-mixture``: early (e.g. void-driven) and wear-out failures in one
population, a bent line on Weibull paper.

F(t) = p F1(t) + (1 - p) F2(t) with F_k Weibull(beta_k, eta_k), component 1 the one with the smaller scale
(the early failures) and p its proportion: the ``reliability`` library's ``Fit_Weibull_Mixture`` model. Fitted
by maximum likelihood under any censoring of :mod:`.censoring` on (ln eta1, ln beta1, ln eta2, ln beta2,
logit p), from several starts: the failures split at several ranks (the bend is unknown) with a Weibull fitted
to each part, the best optimum kept. Covariance: inverse observed information; bounds on the scales and
shapes on the log scale, on p on the logit scale, on B-lives on ln B_p by the delta method. The summary also
gives the single Weibull's log-likelihood and BIC, so that the mixture can be judged against it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import reflow
from pydantic import Field
from reflow.errors import DataError
from reflow.plotting import pyplot

from .censoring import Censored, log_likelihood
from .lifedata import LifeParams
from .lifemodel import BLifeOutputs, b_lives_field, b_lives_validator, bounded_values, finite_values, no_covariates
from .loglinear import LogLocationScale, read_censored, require_failures
from .mle import maximize, observed_covariance
from .probplot import adjusted_ranks, finish_probability_plot, weibull_y

if TYPE_CHECKING:
    import xarray as xr
    from reflow.context import RunContext


class WeibullMixtureDist:
    """p Weibull(beta1, eta1) + (1 - p) Weibull(beta2, eta2): the log-density and log-tails that
    :func:`censoring.log_likelihood` needs, each a log-sum of the components' (scipy) values."""

    def __init__(self, x: np.ndarray):
        self.parts = [LogLocationScale("weibull", x[0], math.exp(x[1])),
                      LogLocationScale("weibull", x[2], math.exp(x[3]))]
        p = 1.0 / (1.0 + math.exp(-x[4]))
        self.logw = (math.log(p) if p > 0 else -math.inf, math.log1p(-p) if p < 1 else -math.inf)

    def _mix(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """log(p e^first + (1 - p) e^second): the two components' log-values weighted and summed."""
        a = self.logw[0] + first
        b = self.logw[1] + second
        with np.errstate(invalid="ignore"):
            return np.logaddexp(a, b)

    def logpdf(self, t: np.ndarray) -> np.ndarray:
        return self._mix(self.parts[0].logpdf(t), self.parts[1].logpdf(t))

    def logcdf(self, t: np.ndarray) -> np.ndarray:
        return self._mix(self.parts[0].logcdf(t), self.parts[1].logcdf(t))

    def logsf(self, t: np.ndarray) -> np.ndarray:
        return self._mix(self.parts[0].logsf(t), self.parts[1].logsf(t))

    def cdf(self, t: np.ndarray) -> np.ndarray:
        return np.exp(self.logcdf(np.asarray(t, dtype=float)))


def _weibull_start(t: np.ndarray) -> tuple[float, float]:
    """(ln eta, ln beta) of the failures ``t`` by least squares on Weibull paper (median ranks)."""
    t = np.sort(t[t > 0])
    n = t.size
    f = (np.arange(1, n + 1) - 0.3) / (n + 0.4)
    x, y = np.log(t), weibull_y(f)
    if n < 2 or np.ptp(x) == 0:
        return float(np.log(np.mean(t))), 0.0
    slope, icpt = np.polyfit(x, y, 1)
    beta = float(np.clip(slope, 0.2, 20.0))
    return float(np.mean(x) - np.mean(y) / beta), math.log(beta)


def fit_mixture(life: Censored, starts: int = 5) -> tuple[np.ndarray, float]:
    """The best mixture optimum (x on the fitting scale, log-likelihood) over ``starts`` split points."""
    from scipy import optimize

    def loglik(x):
        return log_likelihood(life, WeibullMixtureDist(x))

    def nll(x):
        v = loglik(x)
        return -v if np.isfinite(v) else 1e300

    t_fail = np.sort(life.midpoint[life.failed])
    n = t_fail.size
    fractions = np.linspace(0.2, 0.8, starts) if starts > 1 else np.array([0.5])
    best, best_ll, tried = None, -math.inf, set()
    for frac in fractions:
        k = int(np.clip(round(frac * n), 2, n - 2))
        if k in tried:
            continue
        tried.add(k)
        e1, b1 = _weibull_start(t_fail[:k])
        e2, b2 = _weibull_start(t_fail[k:])
        p = k / n
        x0 = np.array([e1, b1, e2, b2, math.log(p / (1 - p))])
        if not np.isfinite(loglik(x0)):
            continue
        res = optimize.minimize(nll, x0, method="BFGS", options={"gtol": 1e-3, "maxiter": 12})  # a rough look
        if np.isfinite(res.fun) and -res.fun > best_ll:
            best, best_ll = res.x, -res.fun
    if best is None:
        raise DataError("weibull-mixture: no starting point gave a finite likelihood; the data may not hold two "
                        "groups of failures")
    best = maximize(loglik, best)  # polish the most promising start only
    best_ll = loglik(best)
    if best[0] > best[2]:  # component 1 is the early one
        best = np.array([best[2], best[3], best[0], best[1], -best[4]])
    return best, float(best_ll)


class WeibullMixture(BLifeOutputs, reflow.Model):
    """Two-subpopulation Weibull mixture fitted by maximum likelihood, with the proportion of each.

    Train it on a life test whose Weibull plot bends: ``{weibull-mixture: {time: cycles, failed: failed}}``
    (or ``lower``/``upper``). Outputs (as an evaluator, ``{stage: mix}``): the mixture's B-lives
    ``b10_<time>`` with ``_lower``/``_upper``.
    """

    family = "life-model"

    class Params(LifeParams):
        b_lives: list[float] = b_lives_field()
        starts: int = Field(5, ge=1, le=50, description="split points tried as starts (the bend is unknown)")

        _percent = b_lives_validator()

    def fit(self, data: xr.Dataset, ctx: RunContext, validation: xr.Dataset | None = None) -> WeibullMixture:
        who = "weibull-mixture"
        no_covariates(self.features, self.params.time, who)
        life = read_censored(data, self.params, who).life
        require_failures(life, 5, who, "the data")
        if np.unique(life.midpoint[life.failed]).size < 4:
            raise DataError(f"{who}: the failures fall at fewer than 4 distinct times; two subpopulations cannot be "
                            "told apart")
        self.x_, self.log_likelihood_ = fit_mixture(life, self.params.starts)
        self.cov_ = observed_covariance(lambda x: log_likelihood(life, WeibullMixtureDist(x)), self.x_)
        from .distributions import fit_distribution

        single = fit_distribution("weibull", life, who=who)
        self.single_ = (float(single.loglik), float(single.params[0]), float(single.params[1]))
        self.lower_, self.upper_ = life.lower, life.upper
        self._set_targets(who)
        self.features = []  # one population: its B-lives take no inputs
        return self

    # ---- quantities --------------------------------------------------------------------------------------
    @staticmethod
    def _quantile(x: np.ndarray, p: float) -> float:
        """The time by which a fraction p of the mixture has failed (root of F(t) = p on ln t)."""
        from scipy.optimize import brentq

        dist = WeibullMixtureDist(x)
        # below both components' p-quantiles F < p, above both F > p: the root lies between them
        q = [x[i] + math.log(-math.log1p(-p)) / math.exp(x[i + 1]) for i in (0, 2)]
        lo, hi = min(q) - 1e-9, max(q) + 1e-9

        def gap(u: float) -> float:
            return float(dist.logcdf(np.array([math.exp(u)]))[0]) - math.log(p)

        return math.exp(brentq(gap, lo, hi, xtol=1e-13) if hi - lo > 1e-8 else 0.5 * (lo + hi))

    def b_life(self, percent: float) -> tuple[float, float, float]:
        """B-life of the mixture with Fisher bounds (delta method on ln B, numerical gradient)."""
        x = self.x_
        value = self._quantile(x, percent / 100.0)
        h = 1e-5
        g = np.array([(math.log(self._quantile(x + h * e, percent / 100.0))
                       - math.log(self._quantile(x - h * e, percent / 100.0))) / (2 * h) for e in np.eye(x.size)])
        se = math.sqrt(float(g @ self.cov_ @ g))
        if not math.isfinite(se):
            return value, math.nan, math.nan
        z = self._z()
        return value, value * math.exp(-z * se), value * math.exp(z * se)

    def parameter_bounds(self) -> dict[str, tuple[float, float, float]]:
        se = np.sqrt(np.diag(self.cov_))
        z = self._z()
        out = {}
        for i, name in enumerate(("eta1", "beta1", "eta2", "beta2")):
            v = math.exp(self.x_[i])
            out[name] = (v, v * math.exp(-z * se[i]), v * math.exp(z * se[i]))

        def expit(u):
            return 1.0 / (1.0 + math.exp(-u))

        out["proportion"] = (expit(self.x_[4]), expit(self.x_[4] - z * se[4]), expit(self.x_[4] + z * se[4]))
        return out

    def summary(self):
        out: dict[str, float] = bounded_values(self.parameter_bounds())
        out.update(self.b_life_summary())
        n = int(self.lower_.size)
        out["log_likelihood"] = self.log_likelihood_
        out["aicc"] = 10 - 2 * self.log_likelihood_ + (60 / (n - 6) if n > 6 else math.nan)
        out["bic"] = 5 * math.log(n) - 2 * self.log_likelihood_
        out["single_weibull_log_likelihood"] = self.single_[0]
        out["single_weibull_bic"] = 2 * math.log(n) - 2 * self.single_[0]
        out["units"] = n
        out["failures"] = int(np.isfinite(self.upper_).sum())
        out["confidence"] = self.params.confidence
        return finite_values(out)

    def predict(self, data, ctx):
        self.require_fitted("x_")
        return self.b_life_dataset(data)

    def save_state(self, directory):
        np.savez(Path(directory) / "state.npz", x=self.x_, cov=self.cov_, log_likelihood=self.log_likelihood_,
                 lower=self.lower_, upper=self.upper_, single=np.asarray(self.single_))
        (Path(directory) / "weibull_mixture.json").write_text(json.dumps(self.summary(), indent=2))

    def load_state(self, directory):
        with np.load(Path(directory) / "state.npz", allow_pickle=False) as st:
            self.x_, self.cov_ = st["x"], st["cov"]
            self.log_likelihood_ = float(st["log_likelihood"])
            self.lower_, self.upper_ = st["lower"], st["upper"]
            self.single_ = tuple(float(v) for v in st["single"])

    def plot(self, folder: Path) -> list[Path]:
        """Weibull paper: the failures at adjusted median ranks, the mixture's curve and its two components."""
        life = Censored(self.lower_, self.upper_)
        t, ev = life.midpoint, life.failed

        fig, ax = pyplot().subplots(figsize=(7, 5.2))
        ax.plot(np.sort(t[ev]), weibull_y(adjusted_ranks(t, ev)), "o", ms=4, label="failures (adjusted median ranks)")
        grid = np.geomspace(max(t[ev].min() * 0.2, 1e-9), t.max() * 3, 300)
        mix = WeibullMixtureDist(self.x_).cdf(grid)
        keep = (mix > 1e-4) & (mix < 0.9999)
        ax.plot(grid[keep], weibull_y(mix[keep]), "-", color="C3", lw=1.8, label="mixture (MLE)")
        pb = self.parameter_bounds()
        for k, style in ((1, "--"), (2, ":")):
            eta, beta = pb[f"eta{k}"][0], pb[f"beta{k}"][0]
            f = -np.expm1(-(grid / eta) ** beta)
            kk = (f > 1e-4) & (f < 0.9999)
            ax.plot(grid[kk], weibull_y(f[kk]), style, color="grey", lw=1,
                    label=f"subpopulation {k}: eta = {eta:.4g}, beta = {beta:.3g}")
        title = f"Weibull mixture: proportion {pb['proportion'][0]:.3g} in subpopulation 1"
        return [finish_probability_plot(fig, ax, weibull_y, xlabel=self.params.time,
                                        ylabel="unreliability F (%), Weibull scale", title=title,
                                        path=Path(folder) / "weibull_mixture_probability.png")]
