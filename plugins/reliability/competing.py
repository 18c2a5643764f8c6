"""Competing failure modes ``competing-modes``: a column names each failure's mode; one Weibull per mode and the
reliability of the unit, which survives only if every mode spares it.

For mode k, the failures of mode k are failures and every other unit is censored where its life is known to
have gone on: a suspension at its time, a failure of another mode at its failure time (exact) or at the last
readout before it (interval), the classical competing-risks likelihood under independent modes (Nelson 1982,
ch. 5; Meeker and Escobar 1998, 15.3), which factorizes into one Weibull fit per mode (``distributions``'
censored MLE, with its observed-information covariance). The unit's reliability is R(t) = prod_k R_k(t) and
its B-life solves sum_k (t / eta_k)^beta_k = -ln(1 - p); its bounds come from the delta method on ln B with the
modes' (independent) covariances.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import reflow
from pydantic import Field
from reflow.errors import DataError
from reflow.plotting import pyplot

from .censoring import Censored
from .lifedata import LifeParams, has_variable
from .lifemodel import BLifeOutputs, b_lives_field, b_lives_validator, finite_values, no_covariates
from .loglinear import read_censored, require_failures
from .probplot import adjusted_ranks, finish_probability_plot, weibull_y

if TYPE_CHECKING:
    import xarray as xr
    from reflow.context import RunContext


def mode_labels(rows: Any, name: str, failed: np.ndarray, who: str) -> np.ndarray:
    """The failure mode of each unit as text ('' for units that did not fail); a failure without one is an error
    naming the row."""
    if not has_variable(rows, name):
        raise DataError(f"{who}: no failure-mode variable {name!r} (params.mode); the data has "
                        f"{', '.join(map(str, rows.data_vars))}")
    raw = np.asarray(rows[name].values).reshape(-1)
    if raw.size != failed.size:
        raise DataError(f"{who}: failure mode {name!r} has {raw.size} values for {failed.size} units")
    labels = np.array(["" if (isinstance(v, float) and math.isnan(v)) or v is None else str(v).strip()
                       for v in raw.tolist()], dtype=object)
    labels = np.array([s[:-2] if s.endswith(".0") and s[:-2].lstrip("-").isdigit() else s for s in labels],
                      dtype=object)
    missing = np.flatnonzero(failed & (labels == ""))
    if missing.size:
        raise DataError(f"{who}: row {missing[0]} failed but its failure mode {name!r} is empty; every failure "
                        f"needs a mode (suspended units may leave it empty)")
    return np.where(failed, labels, "")


def mode_data(life: Censored, labels: np.ndarray, mode: str) -> Censored:
    """The units as seen by one mode: its failures kept, everything else censored where its life went on."""
    upper = np.where(labels == mode, life.upper, np.inf)  # lower is the failure time or the last readout before it
    return Censored(life.lower, upper, life.truncation)


class CompetingModes(BLifeOutputs, reflow.Model):
    """One Weibull per failure mode (the others censored) and the unit's reliability, the product of the modes'.

    Train it on a life test with a mode column: ``{competing-modes: {time: cycles, failed: failed, mode:
    failure_mode}}`` (or ``lower``/``upper``). Outputs (evaluator ``{stage: modes}``): the unit's B-lives
    ``b10_<time>`` with ``_lower``/``_upper``.
    """

    family = "life-model"

    class Params(LifeParams):
        mode: str = Field("mode", description="variable naming each failure's mode (text or a code); suspended units "
                                              "may leave it empty")
        b_lives: list[float] = b_lives_field()

        _percent = b_lives_validator()

    def fit(self, data: xr.Dataset, ctx: RunContext, validation: xr.Dataset | None = None) -> CompetingModes:
        from .distributions import fit_distribution

        who = "competing-modes"
        no_covariates(self.features, self.params.time, who)
        units = read_censored(data, self.params, who)
        life = units.life
        require_failures(life, 2, who, "the data")
        labels = mode_labels(units.rows, self.params.mode, life.failed, who)
        modes = sorted(set(labels[life.failed].tolist()))
        fits = []
        for m in modes:
            fits.append(fit_distribution("weibull", mode_data(life, labels, m), who=f"{who}: mode {m!r}"))
        self.modes_ = modes
        self.eta_ = np.array([f.params[0] for f in fits])
        self.beta_ = np.array([f.params[1] for f in fits])
        self.cov_ = np.stack([f.cov for f in fits])  # each on (ln eta, ln beta)
        self.logliks_ = np.array([f.loglik for f in fits])
        self.lower_, self.upper_, self.labels_ = life.lower, life.upper, labels.astype(str)
        self._set_targets(who)
        self.features = []  # one population: its B-lives take no inputs
        return self

    # ---- quantities --------------------------------------------------------------------------------------
    def reliability(self, t: np.ndarray) -> np.ndarray:
        """R(t) = prod_k exp(-(t / eta_k)^beta_k)."""
        t = np.asarray(t, dtype=float)[..., None]
        return np.exp(-np.sum((t / self.eta_) ** self.beta_, axis=-1))

    def b_life(self, percent: float) -> tuple[float, float, float]:
        """The unit's B-life (all modes) with delta-method bounds on ln B."""
        from scipy.optimize import brentq

        c = -math.log1p(-percent / 100.0)
        ln_eta = np.log(self.eta_)

        def excess(u: float) -> float:
            return float(np.sum(np.exp(self.beta_ * (u - ln_eta)))) - c

        q_all = ln_eta + math.log(c) / self.beta_
        q_share = ln_eta + math.log(c / len(self.modes_)) / self.beta_
        lo, hi = float(np.min(q_share)), float(np.min(q_all))
        u = lo if hi - lo < 1e-12 else brentq(excess, lo - 1e-12, hi + 1e-12, xtol=1e-14)
        h = np.exp(self.beta_ * (u - ln_eta))  # each mode's cumulative hazard at B
        d_u = float(np.sum(self.beta_ * h))
        var = 0.0
        for k in range(len(self.modes_)):
            g = -np.array([-self.beta_[k] * h[k], h[k] * math.log(h[k])]) / d_u  # d u / d(ln eta_k, ln beta_k)
            var += float(g @ self.cov_[k] @ g)
        value = math.exp(u)
        se = math.sqrt(var)
        if not math.isfinite(se):
            return value, math.nan, math.nan
        z = self._z()
        return value, value * math.exp(-z * se), value * math.exp(z * se)

    def summary(self):
        z = self._z()
        out: dict[str, float] = {}
        failed = np.isfinite(self.upper_)
        for k, m in enumerate(self.modes_):
            se = np.sqrt(np.diag(self.cov_[k]))
            for name, v, s in (("eta", self.eta_[k], se[0]), ("beta", self.beta_[k], se[1])):
                out.update({f"{m}_{name}": float(v), f"{m}_{name}_lower": float(v * math.exp(-z * s)),
                            f"{m}_{name}_upper": float(v * math.exp(z * s))})
            out[f"{m}_failures"] = int(np.sum(failed & (self.labels_ == m)))
            out[f"{m}_log_likelihood"] = float(self.logliks_[k])
        out.update(self.b_life_summary())
        out["log_likelihood"] = float(self.logliks_.sum())
        out["modes"] = len(self.modes_)
        out["units"] = int(self.lower_.size)
        out["failures"] = int(failed.sum())
        out["confidence"] = self.params.confidence
        return finite_values(out)

    def predict(self, data, ctx):
        self.require_fitted("eta_")
        return self.b_life_dataset(data)

    def save_state(self, directory):
        np.savez(Path(directory) / "state.npz", eta=self.eta_, beta=self.beta_, cov=self.cov_,
                 logliks=self.logliks_, lower=self.lower_, upper=self.upper_, labels=self.labels_,
                 modes=np.asarray(self.modes_, dtype=str))
        (Path(directory) / "competing_modes.json").write_text(json.dumps(self.summary(), indent=2))

    def load_state(self, directory):
        with np.load(Path(directory) / "state.npz", allow_pickle=False) as st:
            self.eta_, self.beta_, self.cov_, self.logliks_ = st["eta"], st["beta"], st["cov"], st["logliks"]
            self.lower_, self.upper_, self.labels_ = st["lower"], st["upper"], st["labels"]
            self.modes_ = [str(m) for m in st["modes"]]

    def plot(self, folder: Path) -> list[Path]:
        """Weibull paper: each mode's failures (the others as suspensions) with its fit, and the unit's curve."""
        life = Censored(self.lower_, self.upper_)
        t = life.midpoint

        fig, ax = pyplot().subplots(figsize=(7, 5.2))
        grid = np.geomspace(max(t[life.failed].min() * 0.2, 1e-9), t.max() * 3, 300)
        for k, m in enumerate(self.modes_):
            ev = life.failed & (self.labels_ == m)
            ax.plot(np.sort(t[ev]), weibull_y(adjusted_ranks(t, ev)), "o", ms=4, color=f"C{k}",
                    label=f"mode {m}: {int(ev.sum())} failures")
            f = -np.expm1(-(grid / self.eta_[k]) ** self.beta_[k])
            keep = (f > 1e-4) & (f < 0.9999)
            ax.plot(grid[keep], weibull_y(f[keep]), "--", color=f"C{k}", lw=1,
                    label=f"mode {m}: eta = {self.eta_[k]:.4g}, beta = {self.beta_[k]:.3g}")
        ev = life.failed
        ax.plot(np.sort(t[ev]), weibull_y(adjusted_ranks(t, ev)), "k.", ms=3, label="all failures")
        f = 1.0 - self.reliability(grid)
        keep = (f > 1e-4) & (f < 0.9999)
        ax.plot(grid[keep], weibull_y(f[keep]), "-", color="k", lw=1.8, label="unit: R = prod R_k")
        return [finish_probability_plot(fig, ax, weibull_y, xlabel=self.params.time,
                                        ylabel="unreliability F (%), Weibull scale",
                                        title=f"competing modes ({len(self.modes_)}): one Weibull per mode",
                                        path=Path(folder) / "competing_modes_probability.png")]
