"""Nonparametric and semi-parametric life models through lifelines: Kaplan-Meier and Cox proportional hazards.

- ``kaplan-meier``: lifelines ``KaplanMeierFitter``: the reliability curve R(t) with pointwise confidence bounds
  (lifelines' exponential Greenwood bounds) and the median life with its bounds (medians of the bound curves).
- ``cox-ph``: lifelines ``CoxPHFitter`` (Efron ties, Breslow baseline): hazard ratios of the covariates (per unit
  of each covariate) with Wald bounds; for new covariates the reliability at given times and the median life.

lifelines is imported only to fit. The fitted curves are kept as arrays (npz) and predictions are computed
here from them exactly as lifelines computes them (step function for Kaplan-Meier; for Cox the baseline
cumulative hazard interpolated linearly in time, times exp((x - mean_train) . coef)), so a saved model loads and
predicts without pickles and without lifelines.
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
from reflow.plotting import pyplot, save_figure

from .lifedata import LifeParams, has_variable, read_life_data
from .lifemodel import (
    check_targets,
    column,
    finite_values,
    life_output_name,
    no_covariates,
    numeric_covariates,
    output_dim,
    with_bounds,
)

if TYPE_CHECKING:
    import xarray as xr
    from reflow.context import RunContext


def _first_below(curve: np.ndarray, timeline: np.ndarray, q: float) -> float:
    """First time a non-increasing curve reaches ``q`` or below (lifelines' qth_survival_time); inf if never."""
    if curve.size == 0 or curve[-1] > q:
        return math.inf
    return float(timeline[np.searchsorted(-curve, -q, side="left")])


def _step(timeline: np.ndarray, values: np.ndarray, t: np.ndarray, before: float = 1.0) -> np.ndarray:
    """A right-continuous step function: the value at the last timeline point <= t (``before`` earlier)."""
    idx = np.searchsorted(timeline, t, side="right") - 1
    return np.where(idx >= 0, values[np.clip(idx, 0, None)], before)


def _constant_per_unit(data, params, life, covariates: list[str], who: str) -> None:
    """With degradation trajectories a covariate describes a unit: it must not change between the unit's rows."""
    if params.degradation is None or life.rows is None:
        return
    ids = np.asarray(data[params.degradation.unit].values)
    for c in covariates:
        values = np.asarray(data[c].values, dtype=float).reshape(-1)
        for unit, row in zip(life.units, life.rows, strict=True):
            if not np.allclose(values[ids == unit], values[row], equal_nan=True):
                raise DataError(f"{who}: covariate {c!r} changes within unit {unit!r} ({params.degradation.unit}); "
                                "with degradation trajectories a covariate is one value per unit (time-varying "
                                "covariates are not supported)")


def _alpha(params: LifeParams) -> float:
    """lifelines' alpha (its intervals are two-sided at 1 - alpha): a one-sided bound at level c is the end of the
    two-sided interval at 2c - 1."""
    return 2.0 * (1.0 - params.confidence) if params.one_sided else 1.0 - params.confidence


class KaplanMeier(reflow.Model):
    """Kaplan-Meier reliability curve of a (censored) life test, with confidence bounds and the median life.

    Used as an evaluator (``{stage: km}``) it outputs the median life ``median_<time>``; with ``target:
    reliability`` it takes the time as input and outputs R(t). ``predict`` gives ``median_<time>_mean`` (and
    bounds; inf where the curve never falls to 0.5) on every row and ``reliability_mean`` (and bounds) where the
    data has the time variable.
    """

    family = "life-model"

    Params = LifeParams  # the time and event columns and the confidence: nothing of its own

    def _median_name(self) -> str:
        return life_output_name("median", self.params.time)

    def outputs(self) -> list[str]:
        """Every output this model can predict (the allowed targets)."""
        return with_bounds([self._median_name(), "reliability"])

    def fit(self, data: xr.Dataset, ctx: RunContext, validation: xr.Dataset | None = None) -> KaplanMeier:
        from lifelines import KaplanMeierFitter

        no_covariates(self.features, self.params.time, "kaplan-meier")
        life = read_life_data(data, self.params, "kaplan-meier")
        kmf = KaplanMeierFitter(alpha=_alpha(self.params)).fit(life.time, life.event)
        self.timeline_ = np.asarray(kmf.survival_function_.index.values, dtype=float)
        self.reliability_ = np.asarray(kmf.survival_function_.iloc[:, 0].values, dtype=float)
        ci = kmf.confidence_interval_
        self.lower_ = np.asarray(ci.iloc[:, 0].values, dtype=float)
        self.upper_ = np.asarray(ci.iloc[:, 1].values, dtype=float)
        self.times_ = life.time
        self.events_ = life.event
        targets = list(self.targets) or [self._median_name()]
        check_targets(targets, self.outputs(), "kaplan-meier")
        self.targets = targets
        self.features = [self.params.time] if any(t.startswith("reliability") for t in targets) else []
        return self

    def median(self) -> tuple[float, float, float]:
        """Median life with its bounds (the medians of the lower and upper curves); inf if not reached."""
        return (_first_below(self.reliability_, self.timeline_, 0.5),
                _first_below(self.lower_, self.timeline_, 0.5), _first_below(self.upper_, self.timeline_, 0.5))

    def reliability(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """R(t) with its lower and upper bounds, as step functions of t."""
        t = np.asarray(t, dtype=float)
        return (_step(self.timeline_, self.reliability_, t), _step(self.timeline_, self.lower_, t),
                _step(self.timeline_, self.upper_, t))

    def summary(self):
        med, lo, hi = self.median()
        name = self._median_name()
        out = {name: med, f"{name}_lower": lo, f"{name}_upper": hi, "units": int(self.times_.size),
               "failures": int(self.events_.sum()), "reliability_at_last_time": float(self.reliability_[-1]),
               "last_time": float(self.timeline_[-1]), "confidence": self.params.confidence}
        return finite_values(out)

    def predict(self, data, ctx):
        import xarray as xr

        self.require_fitted("timeline_")
        time = self.params.time
        dim, n = output_dim(data, self.features[0] if self.features else None)
        name = self._median_name()
        out = {f"{name}{s}": (dim, np.full(n, v)) for s, v in zip(("_mean", "_lower", "_upper"), self.median(),
                                                                  strict=True)}
        has_time = has_variable(data, time)
        if self.features and not has_time:
            column(data, time, "kaplan-meier", "the time variable")  # raises, naming it
        if has_time and data[time].dims == (dim,):
            r, lo, hi = self.reliability(column(data, time, "kaplan-meier", "the time variable"))
            out.update({"reliability_mean": (dim, r), "reliability_lower": (dim, lo),
                        "reliability_upper": (dim, hi)})
        coords = {dim: data[dim].values} if dim in data.coords else None
        return xr.Dataset(out, coords=coords)

    def save_state(self, directory):
        np.savez(Path(directory) / "state.npz", timeline=self.timeline_, reliability=self.reliability_,
                 lower=self.lower_, upper=self.upper_, times=self.times_, events=self.events_)
        (Path(directory) / "kaplan_meier.json").write_text(json.dumps(self.summary(), indent=2))

    def load_state(self, directory):
        with np.load(Path(directory) / "state.npz", allow_pickle=False) as state:
            self.timeline_ = state["timeline"]
            self.reliability_ = state["reliability"]
            self.lower_ = state["lower"]
            self.upper_ = state["upper"]
            self.times_ = state["times"]
            self.events_ = state["events"].astype(bool)

    def plot(self, folder: Path) -> list[Path]:
        """The Kaplan-Meier curve with its confidence band, suspensions marked, and the median life."""
        plt = pyplot()

        fig, ax = plt.subplots(figsize=(7, 4.6))
        ax.step(self.timeline_, self.reliability_, where="post", color="C0", lw=1.8, label="Kaplan-Meier")
        ax.fill_between(self.timeline_, self.lower_, self.upper_, step="post", color="C0", alpha=0.18,
                        label=f"{self.params.confidence:.0%} bounds")
        cens = np.unique(self.times_[~self.events_])
        if cens.size:
            ax.plot(cens, _step(self.timeline_, self.reliability_, cens), "|", color="k", ms=10,
                    label=f"suspended ({int((~self.events_).sum())})")
        med = self.median()[0]
        if math.isfinite(med):
            ax.axhline(0.5, color="0.5", lw=0.8, ls="--")
            ax.axvline(med, color="0.5", lw=0.8, ls="--")
            ax.annotate(f"median = {med:.4g}", (med, 0.5), textcoords="offset points", xytext=(6, 6), fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(self.params.time)
        ax.set_ylabel("reliability R(t)")
        ax.set_title(f"Kaplan-Meier: {int(self.events_.sum())} failures of {self.times_.size} units", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
        return [save_figure(fig, Path(folder) / "kaplan_meier.png")]


class CoxPH(reflow.Model):
    """Cox proportional-hazards model: how covariates (void fraction, die thickness, ...) scale the hazard.

    The features are the covariates (default: every other numeric variable but the time and the event ones).
    Hazard ratios are per unit of each covariate. Used as an evaluator (``{stage: cox}``) it takes the
    covariates and outputs the median life ``median_<time>``; with ``target: reliability`` it also takes the
    time and outputs R(t | covariates).
    """

    family = "life-model"

    class Params(LifeParams):
        penalizer: float = Field(0.0, ge=0.0, description="lifelines' L2 penalty on the coefficients (0: plain MLE)")

    def _median_name(self) -> str:
        return life_output_name("median", self.params.time)

    def outputs(self) -> list[str]:
        """Every output this model can predict (the allowed targets)."""
        return [self._median_name(), "reliability", "risk_score"]

    def fit(self, data: xr.Dataset, ctx: RunContext, validation: xr.Dataset | None = None) -> CoxPH:
        import pandas as pd
        from lifelines import CoxPHFitter

        who = "cox-ph"
        life = read_life_data(data, self.params, who)
        event_vars = {self.params.failed or "failed"} if self.params.failure is None else set()
        if self.params.failure is not None:
            from reflow.expressions import parse_constraint

            event_vars = set(parse_constraint(self.params.failure).names)
        if self.params.degradation is not None:
            event_vars = {self.params.degradation.unit, self.params.degradation.variable}
        covariates = [f for f in self.features if f != self.params.time] or numeric_covariates(
            data, life.dim, {self.params.time} | event_vars)
        if not covariates:
            raise DataError(f"{who}: no covariates: give features (e.g. [void_fraction]); the data has only the time "
                            "and the event")
        missing = [c for c in covariates if c not in data]
        if missing:
            raise DataError(f"{who}: no covariate(s) {', '.join(map(repr, missing))} in the data")
        _constant_per_unit(data, self.params, life, covariates, who)
        units = life.unit_data(data)
        frame = {c: np.asarray(units[c].values, dtype=float).reshape(-1) for c in covariates}
        for c, values in frame.items():
            if values.size != life.time.size or not np.all(np.isfinite(values)):
                raise DataError(f"{who}: covariate {c!r} must have one finite value per unit")
            if np.ptp(values) == 0:
                raise DataError(f"{who}: covariate {c!r} is constant ({values[0]:g}); its hazard ratio cannot be "
                                "estimated")
        df = pd.DataFrame({**frame, "_time": life.time, "_event": life.event.astype(int)})
        cph = CoxPHFitter(alpha=_alpha(self.params), penalizer=self.params.penalizer)
        cph.fit(df, duration_col="_time", event_col="_event")
        s = cph.summary.loc[covariates]
        self.covariates_ = list(covariates)
        self.coef_ = np.asarray(s["coef"].values, dtype=float)
        self.coef_se_ = np.asarray(s["se(coef)"].values, dtype=float)
        self.coef_bounds_ = np.asarray(cph.confidence_intervals_.loc[covariates].values, dtype=float)
        self.p_values_ = np.asarray(s["p"].values, dtype=float)
        self.mean_ = np.asarray(cph._norm_mean.loc[covariates].values, dtype=float)
        base = cph.baseline_cumulative_hazard_
        self.timeline_ = np.asarray(base.index.values, dtype=float)
        self.baseline_cumhaz_ = np.asarray(base.iloc[:, 0].values, dtype=float)
        self.concordance_ = float(cph.concordance_index_)
        self.log_likelihood_ = float(cph.log_likelihood_)
        self.times_ = life.time
        self.events_ = life.event
        self.train_covariates_ = np.column_stack([frame[c] for c in covariates])
        targets = list(self.targets) or [self._median_name()]
        check_targets(targets, self.outputs(), who)
        self.targets = targets
        self.features = self.covariates_ + ([self.params.time] if "reliability" in targets else [])
        return self

    # ---- fitted quantities ----------------------------------------------------------------------------------
    def hazard_ratios(self) -> dict[str, tuple[float, float, float]]:
        """exp(coef) per unit of each covariate, with its Wald bounds."""
        return {c: (math.exp(b), math.exp(lo), math.exp(hi))
                for c, b, (lo, hi) in zip(self.covariates_, self.coef_, self.coef_bounds_, strict=True)}

    def risk(self, x: np.ndarray) -> np.ndarray:
        """Partial hazard exp((x - mean_train) . coef) of each row of covariates x (n, k)."""
        return np.exp((np.asarray(x, dtype=float) - self.mean_) @ self.coef_)

    def reliability(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """R(t | x) for each row (t one per row)."""
        h0 = np.interp(np.asarray(t, dtype=float), self.timeline_, self.baseline_cumhaz_)
        return np.exp(-h0 * self.risk(x))

    def median(self, x: np.ndarray) -> np.ndarray:
        """Median life of each row of covariates, on the training timeline (inf if never reached)."""
        curves = np.exp(-np.outer(self.risk(x), self.baseline_cumhaz_))
        return np.array([_first_below(c, self.timeline_, 0.5) for c in curves])

    def summary(self):
        out: dict[str, float | int] = {}
        for c, (hr, lo, hi), b, se, p in zip(self.covariates_, self.hazard_ratios().values(), self.coef_,
                                             self.coef_se_, self.p_values_, strict=True):
            out.update({f"hr_{c}": hr, f"hr_{c}_lower": lo, f"hr_{c}_upper": hi, f"coef_{c}": float(b),
                        f"coef_{c}_se": float(se), f"p_{c}": float(p)})
        out.update({"concordance": self.concordance_, "log_likelihood": self.log_likelihood_,
                    "units": int(self.times_.size), "failures": int(self.events_.sum()),
                    "confidence": self.params.confidence})
        return finite_values(out)

    def _covariates(self, data) -> np.ndarray:
        return np.column_stack([column(data, c, "cox-ph", "covariate") for c in self.covariates_])

    def predict(self, data, ctx):
        import xarray as xr

        self.require_fitted("coef_")
        dim, n = output_dim(data, self.covariates_[0])
        x = self._covariates(data)
        out = {f"{self._median_name()}_mean": (dim, self.median(x)), "risk_score_mean": (dim, self.risk(x))}
        time = self.params.time
        has_time = has_variable(data, time)
        if "reliability" in self.targets and not has_time:
            column(data, time, "cox-ph", "the time variable")  # raises, naming it
        if has_time and data[time].dims == (dim,):
            out["reliability_mean"] = (dim, self.reliability(x, column(data, time, "cox-ph", "the time variable")))
        coords = {dim: data[dim].values} if dim in data.coords else None
        return xr.Dataset(out, coords=coords)

    def score(self, data: xr.Dataset, ctx: RunContext, predictions: xr.Dataset | None = None
              ) -> dict[str, float]:
        """On held-out units: Harrell's concordance of the risk score with the observed lives."""
        from lifelines.utils import concordance_index

        life = read_life_data(data, self.params, "cox-ph", min_failures=0)
        if life.failures == 0:
            return {}
        units = life.unit_data(data)
        return {"test_concordance": float(concordance_index(life.time, -self.risk(self._covariates(units)),
                                                            life.event))}

    def save_state(self, directory):
        np.savez(Path(directory) / "state.npz", coef=self.coef_, coef_se=self.coef_se_, coef_bounds=self.coef_bounds_,
                 p_values=self.p_values_, mean=self.mean_, timeline=self.timeline_,
                 baseline_cumhaz=self.baseline_cumhaz_, times=self.times_, events=self.events_,
                 train_covariates=self.train_covariates_,
                 scalars=np.array([self.concordance_, self.log_likelihood_]))
        (Path(directory) / "cox.json").write_text(json.dumps({"covariates": self.covariates_, **self.summary()},
                                                             indent=2))

    def load_state(self, directory):
        self.covariates_ = json.loads((Path(directory) / "cox.json").read_text())["covariates"]
        with np.load(Path(directory) / "state.npz", allow_pickle=False) as state:
            self.coef_ = state["coef"]
            self.coef_se_ = state["coef_se"]
            self.coef_bounds_ = state["coef_bounds"]
            self.p_values_ = state["p_values"]
            self.mean_ = state["mean"]
            self.timeline_ = state["timeline"]
            self.baseline_cumhaz_ = state["baseline_cumhaz"]
            self.times_ = state["times"]
            self.events_ = state["events"].astype(bool)
            self.train_covariates_ = state["train_covariates"]
            self.concordance_, self.log_likelihood_ = (float(v) for v in state["scalars"])

    def plot(self, folder: Path) -> list[Path]:
        """Hazard ratios with bounds (log scale) and the reliability curves at low, middle and high risk."""
        plt = pyplot()

        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [1, 1.2]})
        hr = self.hazard_ratios()
        names = list(hr)
        y = np.arange(len(names))[::-1]
        values = np.array([hr[c] for c in names])
        left.errorbar(values[:, 0], y, xerr=[values[:, 0] - values[:, 1], values[:, 2] - values[:, 0]], fmt="o",
                      capsize=4)
        left.axvline(1.0, color="0.5", ls="--", lw=0.8)
        left.set_xscale("log")
        left.set_yticks(y)
        left.set_yticklabels(names)
        left.set_xlabel(f"hazard ratio per unit ({self.params.confidence:.0%} bounds)")
        left.set_title(f"Cox PH: concordance {self.concordance_:.3f}", fontsize=10)
        risk = self.risk(self.train_covariates_)
        for q, color in ((0.1, "C2"), (0.5, "C0"), (0.9, "C3")):
            i = int(np.argsort(risk)[int(q * (risk.size - 1))])
            x = self.train_covariates_[i:i + 1]
            curve = np.exp(-self.baseline_cumhaz_ * self.risk(x)[0])
            label = ", ".join(f"{c}={v:.3g}" for c, v in zip(self.covariates_, x[0], strict=True))
            right.step(self.timeline_, curve, where="post", color=color, label=f"risk {q:.0%} quantile: {label}")
        right.set_ylim(0, 1.02)
        right.set_xlabel(self.params.time)
        right.set_ylabel("reliability R(t | covariates)")
        right.grid(True, alpha=0.3)
        right.legend(fontsize=7, loc="lower left")
        return [save_figure(fig, Path(folder) / "cox_ph.png")]
