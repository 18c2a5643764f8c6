"""Weibull life model: 2- or 3-parameter maximum likelihood on right-censored life-test data.

R(t) = exp(-((t - gamma) / eta)^beta) for t > gamma (shape beta, scale eta, location gamma; gamma = 0 for the
2-parameter model). The 2-parameter fit is ``scipy.stats.weibull_min.fit`` on a ``scipy.stats.CensoredData``
(failures exact, suspensions right-censored, location fixed at 0). The 3-parameter fit maximizes the profile
likelihood over gamma in [0, first failure): for each gamma the same censored 2-parameter fit on t - gamma.
The likelihood grows without bound as gamma reaches the first failure when beta < 1; that case is reported,
not returned.

Confidence bounds are Fisher-matrix (Wald) bounds, as in Meeker and Escobar, "Statistical Methods for
Reliability Data" (1998), ch. 8: the covariance is the inverse of the observed information (the Hessian of the
log-likelihood in (ln eta, ln beta[, gamma]), by central differences) at the estimate; parameter bounds on the
log scale for eta and beta, B-life bounds on ln B_p, reliability bounds on ln(-ln R). ``confidence`` is the
two-sided level (0.9: 5 % in each tail, so the lower bound is a one-sided 95 % bound).

Probability-plot positions: Johnson's adjusted ranks with Benard's median-rank approximation
F = (AR - 0.3) / (n + 0.4), which spreads each suspension's share over the later failures.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import reflow
from pydantic import Field
from reflow.errors import DataError
from reflow.plotting import pyplot, save_figure

from .censoring import Censored, log_likelihood
from .lifedata import LifeParams, read_life_data
from .lifemodel import (
    BLifeOutputs,
    b_lives_field,
    b_lives_validator,
    bounded_values,
    finite_values,
    no_covariates,
    output_dim,
    with_bounds,
)
from .mle import observed_covariance
from .probplot import adjusted_ranks, plotting_positions, weibull_y

if TYPE_CHECKING:
    import xarray as xr
    from reflow.context import RunContext

__all__ = ["Weibull", "adjusted_ranks", "fit_three_parameter", "fit_two_parameter", "weibull_loglik"]


def _log_space_optimizer(func, x0, args=(), disp=0):
    """The optimizer handed to ``weibull_min.fit``: BFGS on the logs of the (positive) free parameters, shape and
    scale, tight enough to agree with other MLE codes to 1e-6; Nelder-Mead if BFGS fails."""
    from scipy import optimize

    def f(y):
        return func(np.exp(y), *args)

    y0 = np.log(np.asarray(x0, dtype=float))
    res = optimize.minimize(f, y0, method="BFGS", options={"gtol": 1e-9})
    y = res.x
    if not (np.all(np.isfinite(y)) and (res.success or res.status == 2)):  # 2: precision loss at the optimum
        y = optimize.fmin(f, y0, disp=0, xtol=1e-10, ftol=1e-13, maxiter=20000, maxfun=40000)
    return np.exp(y)


def weibull_loglik(theta: np.ndarray, t: np.ndarray, event: np.ndarray) -> float:
    """Log-likelihood of right-censored data at theta = (ln eta, ln beta[, gamma]); -inf where undefined."""
    u, v = float(theta[0]), float(theta[1])
    gamma = float(theta[2]) if len(theta) > 2 else 0.0
    beta = math.exp(v)
    x = t - gamma
    if np.any(x[event] <= 0):
        return -math.inf
    live = x > 0  # a suspension before gamma carries no information (R = 1)
    w = np.log(x[live]) - u
    failed = event[live]
    return float(np.sum(v - u + (beta - 1.0) * w[failed]) - np.sum(np.exp(beta * w)))


def _start(t: np.ndarray, event: np.ndarray) -> tuple[float, float]:
    """Median-rank regression for a starting point (it only has to be near the maximum)."""
    f = adjusted_ranks(t, event)
    x = np.log(np.sort(t[event]))  # adjusted_ranks lists the failures in time order
    y = weibull_y(f)
    if np.ptp(x) <= 0:
        return 1.0, float(np.max(t))
    slope, icpt = np.polyfit(x, y, 1)
    beta = float(np.clip(slope, 0.2, 20.0))
    eta = math.exp(float(np.clip(-icpt / beta, -700.0, 700.0)))
    return beta, eta if np.isfinite(eta) and eta > 0 else float(np.max(t))


def fit_two_parameter(t: np.ndarray, event: np.ndarray) -> tuple[float, float]:
    """(beta, eta) by maximum likelihood with right censoring (scipy.stats.CensoredData)."""
    from scipy import stats

    data = stats.CensoredData.right_censored(t, ~event)
    beta0, eta0 = _start(t, event)
    beta, _, eta = stats.weibull_min.fit(data, beta0, floc=0, scale=eta0, optimizer=_log_space_optimizer)
    if not (np.isfinite(beta) and np.isfinite(eta) and beta > 0 and eta > 0):
        raise DataError(f"weibull: the maximum-likelihood fit did not converge (beta={beta}, eta={eta})")
    return float(beta), float(eta)


def fit_three_parameter(t: np.ndarray, event: np.ndarray, who: str = "weibull") -> tuple[float, float, float]:
    """(gamma, beta, eta): profile likelihood over gamma in [0, first failure), a 2-parameter fit at each."""
    from scipy import optimize

    first = float(np.min(t[event]))
    if first <= 0:
        raise DataError(f"{who}: a 3-parameter fit needs the first failure after time 0")

    def profile(gamma: float) -> tuple[float, float, float]:
        x = t - gamma
        live = (x > 0) | event
        beta, eta = fit_two_parameter(x[live], event[live])
        return weibull_loglik(np.array([math.log(eta), math.log(beta)]), x[live], event[live]), beta, eta

    grid = first * np.array([0.0, 0.2, 0.4, 0.55, 0.7, 0.8, 0.88, 0.93, 0.96, 0.98, 0.99, 0.995, 0.999])
    values = [profile(g)[0] for g in grid]
    best = int(np.argmax(values))
    if best == len(grid) - 1:
        raise DataError(f"{who}: the 3-parameter likelihood keeps growing as the location nears the first failure "
                        f"({first:g}): the shape is below 1 and the fit is degenerate; use parameters: 2")
    lo = grid[max(best - 1, 0)]
    hi = grid[best + 1]
    res = optimize.minimize_scalar(lambda g: -profile(g)[0], bounds=(lo, hi), method="bounded",
                                   options={"xatol": 1e-9 * first})
    gamma = float(res.x) if -res.fun >= values[best] else float(grid[best])
    _, beta, eta = profile(gamma)
    return gamma, beta, eta


class Weibull(BLifeOutputs, reflow.Model):
    """Weibull life model fitted to a (censored) life test; B-lives and reliability with confidence bounds.

    Train it on a life test, e.g. ``{task: train, model: {weibull: {time: cycles, failed: failed}}, data: test,
    split: {test: 0}}``. Used as an evaluator (``{stage: life}``) it outputs its B-lives ``b10_cycles`` with
    ``b10_cycles_lower`` and ``_upper``; with ``target: reliability`` it takes the time as input and outputs
    the reliability at it. ``predict`` gives both: ``b<p>_<time>_mean`` (and bounds) on every row, and
    ``reliability_mean``/``unreliability_mean`` (and bounds) where the data has the time variable.
    """

    family = "life-model"
    excluded_units_: int = 0
    """Units past the degradation threshold at time 0, left out of the fit (0 unless from trajectories)."""
    lower_: np.ndarray | None = None
    """The training units' censoring bounds (None until fitted, or when an old saved model has none)."""
    upper_: np.ndarray | None = None
    truncation_: np.ndarray | None = None

    class Params(LifeParams):
        parameters: Literal[2, 3] = Field(2, description="2: shape and scale; 3: also a location (failure-free "
                                                          "cycles), by profile likelihood")
        bounds: Literal["fisher", "likelihood-ratio"] = Field(
            "fisher", description="confidence bounds: fisher (Fisher matrix, delta method) or likelihood-ratio "
                                  "(profile likelihood; better for few failures, slower)")
        b_lives: list[float] = b_lives_field("B-lives to report: percent of units failed, e.g. [1, 10]")

        _percent = b_lives_validator(list_bad=True)

    # ---- names -------------------------------------------------------------------------------------------
    def outputs(self) -> list[str]:
        """Every output this model can predict (the allowed targets)."""
        return with_bounds(self._b_names() + ["reliability", "unreliability"])

    # ---- fit ---------------------------------------------------------------------------------------------
    def fit(self, data: xr.Dataset, ctx: RunContext, validation: xr.Dataset | None = None) -> Weibull:
        who = "weibull"
        no_covariates(self.features, self.params.time, who)
        life = read_life_data(data, self.params, who, min_failures=self.params.parameters, intervals=True)
        censored = life.life
        t, event = life.time, life.event
        self.lower_, self.upper_, self.truncation_ = censored.lower, censored.upper, censored.truncation
        if (censored.interval | censored.left).any() or censored.truncation is not None:
            # intervals and truncation: the shared censored maximum likelihood (distributions.fit_distribution)
            from .distributions import fit_distribution

            name = "weibull" if self.params.parameters == 2 else "weibull-3p"
            fitted = fit_distribution(name, censored, who=who)
            self.theta_ = fitted.internal  # (ln eta, ln beta[, gamma]): this model's own ordering
            self.cov_ = fitted.cov if np.all(np.isfinite(fitted.cov)) and np.all(np.diag(fitted.cov)[:2] > 0) \
                else np.full_like(fitted.cov, np.nan)
            self.log_likelihood_ = fitted.loglik
            self.times_, self.events_ = t, event
            self.excluded_units_ = life.excluded
            self._set_targets_and_time("weibull")
            return self
        if np.any(t[event] <= 0):
            raise DataError(f"{who}: failures at time 0 in {self.params.time!r} cannot come from a Weibull "
                            "distribution; drop them or shift the time origin")
        if np.unique(t[event]).size < 2:
            raise DataError(f"{who}: the failures all happen at {t[event][0]:g}; a fit needs two distinct "
                            "failure times")
        if self.params.parameters == 2:
            beta, eta = fit_two_parameter(t, event)
            theta = np.array([math.log(eta), math.log(beta)])
        else:
            gamma, beta, eta = fit_three_parameter(t, event, who)
            theta = np.array([math.log(eta), math.log(beta), gamma])
        steps = np.full(theta.size, 1e-4)
        if theta.size == 3:
            steps[2] = 1e-4 * max(float(np.min(t[event])) - theta[2], 1e-9 * float(np.max(t)))
        cov = observed_covariance(lambda th: weibull_loglik(th, t, event), theta, steps)
        self.theta_ = theta
        self.cov_ = cov
        self.log_likelihood_ = weibull_loglik(theta, t, event)
        self.times_ = t
        self.events_ = event
        self.excluded_units_ = life.excluded
        self._set_targets_and_time("weibull")
        return self

    # ---- fitted quantities ----------------------------------------------------------------------------------
    @property
    def beta(self) -> float:
        return math.exp(self.theta_[1])

    @property
    def eta(self) -> float:
        return math.exp(self.theta_[0])

    @property
    def gamma(self) -> float:
        return float(self.theta_[2]) if self.theta_.size > 2 else 0.0

    def _z(self) -> float:
        from .bounds import z_value

        return z_value(self.params.confidence, self.params.one_sided)

    def _censored(self) -> Censored:
        """The training units under the one censoring convention (intervals kept when there were any)."""
        if self.lower_ is None:
            return Censored(self.times_, np.where(self.events_, self.times_, np.inf))
        return Censored(self.lower_, self.upper_, self.truncation_)

    def _fit(self):
        """This fit as a :class:`distributions.Fit` (for the likelihood-ratio bounds of :mod:`bounds`)."""
        from .distributions import Fit, get

        dist = get("weibull" if self.theta_.size == 2 else "weibull-3p")
        params = np.array([self.eta, self.beta] + ([self.gamma] if self.theta_.size > 2 else []))
        return Fit(dist, params, self.log_likelihood_, self.cov_, self._censored())

    def _likelihood_ratio(self) -> bool:
        return self.params.bounds == "likelihood-ratio" and bool(np.all(np.isfinite(self.cov_)))

    def _grad(self, g2: np.ndarray) -> np.ndarray:
        """Gradients are given for (ln eta, ln beta, gamma); drop gamma's for the 2-parameter model."""
        return g2[..., : self.theta_.size]

    def b_life(self, percent: float) -> tuple[float, float, float]:
        """B-life (cycles by which ``percent`` % of units fail) with its lower and upper bound."""
        if self._likelihood_ratio():
            from .bounds import lr_quantile

            return lr_quantile(self._fit(), percent / 100.0, self.params.confidence, self.params.one_sided)
        k = -math.log1p(-percent / 100.0)
        core = self.eta * k ** (1.0 / self.beta)
        value = self.gamma + core
        g = self._grad(np.array([core, -core * math.log(k) / self.beta, 1.0]))
        se = math.sqrt(float(g @ self.cov_ @ g)) / value
        if not math.isfinite(se):
            return value, math.nan, math.nan
        return value, value * math.exp(-self._z() * se), value * math.exp(self._z() * se)

    def reliability(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """R(t) with its lower and upper bounds (1 before the location gamma)."""
        if self._likelihood_ratio():
            from .bounds import reliability

            return reliability(self._fit(), t, "likelihood-ratio", self.params.confidence, self.params.one_sided)
        t = np.asarray(t, dtype=float)
        x = t - self.gamma
        alive = x > 0
        xs = np.where(alive, x, 1.0)
        z = self.beta * (np.log(xs) - self.theta_[0])
        g = self._grad(np.stack([np.full_like(z, -self.beta), z, -self.beta / xs], axis=-1))
        se = np.sqrt(np.einsum("...i,ij,...j->...", g, self.cov_, g))
        zc = self._z()
        r = np.where(alive, np.exp(-np.exp(z)), 1.0)
        lower = np.where(alive, np.exp(-np.exp(z + zc * se)), 1.0)
        upper = np.where(alive, np.exp(-np.exp(z - zc * se)), 1.0)
        return r, lower, upper

    def parameter_bounds(self) -> dict[str, tuple[float, float, float]]:
        """beta, eta (and gamma) with their Fisher-matrix (or likelihood-ratio) bounds."""
        if self._likelihood_ratio():
            from .bounds import parameter_bounds

            found = parameter_bounds(self._fit(), "likelihood-ratio", self.params.confidence, self.params.one_sided)
            return {name: found[name] for name in ("beta", "eta", "gamma") if name in found}
        se = np.sqrt(np.diag(self.cov_))
        zc = self._z()
        out = {"beta": (self.beta, self.beta * math.exp(-zc * se[1]), self.beta * math.exp(zc * se[1])),
               "eta": (self.eta, self.eta * math.exp(-zc * se[0]), self.eta * math.exp(zc * se[0]))}
        if self.theta_.size > 2:
            out["gamma"] = (self.gamma, max(self.gamma - zc * float(se[2]), 0.0), self.gamma + zc * float(se[2]))
        return out

    def standard_errors(self) -> dict[str, float]:
        """Standard errors of beta, eta (and gamma) by the delta method from the log-scale covariance."""
        se = np.sqrt(np.diag(self.cov_))
        out = {"beta": self.beta * float(se[1]), "eta": self.eta * float(se[0])}
        if self.theta_.size > 2:
            out["gamma"] = float(se[2])
        return out

    def summary(self):
        out: dict[str, float | int] = {**bounded_values(self.parameter_bounds()), **self.b_life_summary()}
        out["mean_life"] = self.gamma + self.eta * math.gamma(1.0 + 1.0 / self.beta)
        out["units"] = int(self.times_.size)
        out["failures"] = int(self.events_.sum())
        out.update({f"{k}_units": v for k, v in self._censored().counts().items() if k != "exact" and v})
        if self.excluded_units_:  # degradation: units past the threshold before the test
            out["units_excluded_at_start"] = int(self.excluded_units_)
        out["log_likelihood"] = self.log_likelihood_
        out["confidence"] = self.params.confidence
        return finite_values(out)

    # ---- predict -------------------------------------------------------------------------------------------
    def predict(self, data, ctx):
        import xarray as xr

        self.require_fitted("theta_")
        dim, n = output_dim(data, self.features[0] if self.features else None)
        out = {**self.b_life_columns(dim, n), **self.reliability_columns(data, dim, "weibull")}
        coords = {dim: data[dim].values} if dim in data.coords else None
        return xr.Dataset(out, coords=coords)

    def score(self, data: xr.Dataset, ctx: RunContext, predictions: xr.Dataset | None = None
              ) -> dict[str, float]:
        """On held-out units: the mean log-likelihood per unit (compare with the training value)."""
        life = read_life_data(data, self.params, "weibull", min_failures=0, intervals=True)
        if life.censored is None:
            ll = weibull_loglik(self.theta_, life.time, life.event)
        else:
            ll = log_likelihood(life.censored, self._fit().frozen())
        return {"test_log_likelihood_per_unit": ll / life.time.size,
                "train_log_likelihood_per_unit": self.log_likelihood_ / self.times_.size}

    # ---- state ---------------------------------------------------------------------------------------------
    def save_state(self, directory):
        np.savez(Path(directory) / "state.npz", theta=self.theta_, cov=self.cov_, times=self.times_,
                 events=self.events_, log_likelihood=self.log_likelihood_,
                 excluded_units=self.excluded_units_, **self._interval_state())
        (Path(directory) / "weibull.json").write_text(json.dumps(self.summary(), indent=2))

    def load_state(self, directory):
        with np.load(Path(directory) / "state.npz", allow_pickle=False) as state:
            self.theta_ = state["theta"]
            self.cov_ = state["cov"]
            self.times_ = state["times"]
            self.events_ = state["events"].astype(bool)
            self.log_likelihood_ = float(state["log_likelihood"])
            self.excluded_units_ = int(state["excluded_units"]) if "excluded_units" in state.files else 0
            self.lower_ = state["lower"] if "lower" in state.files else None
            self.upper_ = state["upper"] if "upper" in state.files else None
            trunc = state["truncation"] if "truncation" in state.files else np.zeros(0)
            self.truncation_ = trunc if trunc.size else None

    def _interval_state(self) -> dict[str, np.ndarray]:
        if self.lower_ is None:
            return {}
        trunc = self.truncation_
        return {"lower": self.lower_, "upper": self.upper_, "truncation": trunc if trunc is not None else np.zeros(0)}

    # ---- plot ----------------------------------------------------------------------------------------------
    def plot(self, folder: Path) -> list[Path]:
        """Weibull probability plot: failures at median ranks, the fitted line and its confidence band."""
        plt = pyplot()
        t, event = self.times_, self.events_
        t_pts, f, how = plotting_positions(self._censored())
        tf = t_pts - self.gamma

        keep_pts = tf > 0
        tf, f = tf[keep_pts], f[keep_pts]
        span_lo = max(float(np.min(tf)) * 0.3 if tf.size else float(np.min(t)) * 0.3, 1e-9)
        span_hi = max(float(np.max(t - self.gamma)), self.b_life(max(self.params.b_lives))[0] - self.gamma) * 2.5
        grid = np.geomspace(span_lo, span_hi, 200)
        r, lo, hi = self.reliability(grid + self.gamma)
        keep = (1 - r > 5e-4) & (1 - r < 0.99)
        fig, ax = plt.subplots(figsize=(7, 5.2))
        ax.plot(tf, weibull_y(f), "o", ms=5, label=f"failures ({how})")
        suspended = np.sort(t[~event])
        if suspended.size:
            ax.plot([], [], " ", label=f"{suspended.size} suspended (last at {suspended.max():g})")
        ax.plot(grid[keep], weibull_y(1 - r[keep]), "-", color="C3", lw=1.8, label="maximum-likelihood fit")
        if np.all(np.isfinite(lo)):
            band = keep & (1 - lo < 0.99999) & (1 - hi > 1e-6)
            ax.fill_between(grid[band], weibull_y(1 - hi[band]), weibull_y(1 - lo[band]), color="C3", alpha=0.15,
                            label=f"{self.params.confidence:.0%} {'one' if self.params.one_sided else 'two'}-sided "
                                  f"{self.params.bounds} bounds")
        for p, name in zip(self.params.b_lives, self._b_names(), strict=True):
            value = self.b_life(p)[0] - self.gamma
            ax.plot([value], [weibull_y(p / 100.0)], "s", color="k", ms=5)
            ax.annotate(f"{name.split('_')[0].upper()} = {value + self.gamma:.4g}", (value, weibull_y(p / 100.0)),
                        textcoords="offset points", xytext=(6, -12), fontsize=8)
        ax.set_xscale("log")
        ticks = [0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.632, 0.9, 0.99]
        ymin, ymax = ax.get_ylim()
        shown = [p for p in ticks if ymin - 0.3 <= weibull_y(p) <= ymax + 0.3]
        ax.set_yticks(weibull_y(shown))
        ax.set_yticklabels([f"{100 * p:g}" for p in shown])
        ax.set_ylim(ymin, ymax)
        ax.grid(True, which="both", alpha=0.3)
        xlabel = self.params.time if self.gamma == 0 else f"{self.params.time} - gamma ({self.gamma:.4g})"
        ax.set_xlabel(xlabel)
        ax.set_ylabel("unreliability F (%), Weibull scale")
        kind = "3-P" if self.theta_.size > 2 else "2-P"
        ax.set_title(f"Weibull {kind} MLE: beta = {self.beta:.3g}, eta = {self.eta:.4g}"
                     + (f", gamma = {self.gamma:.4g}" if self.theta_.size > 2 else "")
                     + f"\n{int(event.sum())} failures of {t.size} units", fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        return [save_figure(fig, Path(folder) / "weibull_probability.png")]
