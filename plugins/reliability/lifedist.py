"""The general life model: any of eight distributions (or the best of them) fitted to exact, right-, left-,
interval-censored and truncated life data, with Fisher-matrix or likelihood-ratio bounds.

A separate model from ``weibull`` rather than a ``distribution:`` param on it: ``weibull``'s outputs and state
(``beta``, ``eta``, ``gamma``) are Weibull quantities that studies already read (``${life.eta}``), while this
model's parameters depend on the distribution it ends up with (``mu``/``sigma`` for a lognormal). Both share the
data reading (:mod:`lifedata`), the fit (:mod:`distributions`), the bounds (:mod:`bounds`) and the plots
(:mod:`probplot`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import reflow
from pydantic import Field, field_validator
from reflow.errors import DataError

from . import bounds as cb
from .censoring import Censored, log_likelihood
from .distributions import CANDIDATES, DISTRIBUTIONS, Fit, fit_distribution, get
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

if TYPE_CHECKING:
    import xarray as xr
    from reflow.context import RunContext

DistributionName = Literal["weibull", "weibull-3p", "lognormal", "exponential", "exponential-2p", "normal", "gamma",
                           "loglogistic", "auto"]


class LifeDistribution(BLifeOutputs, reflow.Model):
    """Life distribution fitted by maximum likelihood to censored life data: exact, right-, left- and
    interval-censored units (``lower``/``upper`` or degradation readouts), optional left truncation.

    ``distribution: auto`` fits every candidate and keeps the best by AICc (or BIC), reporting the ranking in
    the metrics (``aicc_<name>``) and in ``distribution_ranking.csv``; each fit gets a probability plot on its
    own paper. Outputs as the ``weibull`` model's: B-lives ``b10_cycles`` with ``b10_cycles_lower`` and
    ``_upper`` (Fisher-matrix or likelihood-ratio, two- or one-sided), and with ``target: reliability`` the
    reliability at the input time. Usable as an evaluator (``{stage: life}``).
    """

    family = "life-model"
    excluded_units_: int = 0
    """Units past the degradation threshold at time 0, left out of the fit (0 unless from trajectories)."""

    class Params(LifeParams):
        distribution: DistributionName = Field(
            "weibull", description="weibull (2-P), weibull-3p, lognormal, exponential (1-P), exponential-2p, "
                                   "normal, gamma, loglogistic, or auto: fit them all and keep the best")
        candidates: list[str] | None = Field(None, description="distribution auto: the ones to compare "
                                                               "(default: all eight)")
        criterion: Literal["aicc", "bic"] = Field("aicc", description="distribution auto: the ranking criterion")
        bounds: Literal["fisher", "likelihood-ratio"] = Field(
            "fisher", description="confidence bounds: fisher (Fisher matrix, delta method) or likelihood-ratio "
                                  "(profile likelihood; better for few failures, slower)")
        b_lives: list[float] = b_lives_field("B-lives to report: percent of units failed, e.g. [1, 10]")

        _percent = b_lives_validator(list_bad=True)

        @field_validator("candidates")
        @classmethod
        def _known(cls, value: list[str] | None) -> list[str] | None:
            if value is None:
                return None
            unknown = [v for v in value if v not in DISTRIBUTIONS]
            if unknown or not value:
                raise ValueError(f"unknown candidate distribution(s) {unknown}; choose from {', '.join(CANDIDATES)}")
            return list(dict.fromkeys(value))

    who = "life-distribution"

    # ---- names -------------------------------------------------------------------------------------------
    def outputs(self) -> list[str]:
        return with_bounds(self._b_names() + ["reliability", "unreliability"])

    # ---- fit ---------------------------------------------------------------------------------------------
    def fit(self, data: xr.Dataset, ctx: RunContext, validation: xr.Dataset | None = None) -> LifeDistribution:
        no_covariates(self.features, self.params.time, self.who)
        life = read_life_data(data, self.params, self.who, min_failures=1, intervals=True)
        censored = life.life
        if self.params.distribution == "auto":
            self.fits_, self.skipped_ = rank(censored, self.params.candidates or list(CANDIDATES),
                                             self.params.criterion, self.who)
        else:
            self.fits_, self.skipped_ = [fit_distribution(self.params.distribution, censored, who=self.who)], {}
        self.excluded_units_ = life.excluded
        self._set_targets_and_time(self.who)
        wants_bounds = any(t.endswith(("_lower", "_upper")) for t in self.targets)
        if wants_bounds and self.params.bounds == "fisher" and not np.all(np.isfinite(self.fit_.cov)):
            raise DataError(f"{self.who}: the {self.fit_.distribution.title} fit has no Fisher-matrix bounds (its "
                            f"observed information is not positive definite: too few distinct failures for "
                            f"{self.fit_.k} parameters); use bounds: likelihood-ratio, or ask for the point "
                            f"estimates only (target: [{self._b_names()[0]}])")
        return self

    @property
    def fit_(self) -> Fit:
        return self.fits_[0]

    # ---- fitted quantities ----------------------------------------------------------------------------------
    def _bound_args(self) -> tuple[str, float, bool]:
        return self.params.bounds, self.params.confidence, self.params.one_sided

    def b_life(self, percent: float) -> tuple[float, float, float]:
        return cb.b_life(self.fit_, percent, *self._bound_args())

    def reliability(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return cb.reliability(self.fit_, t, *self._bound_args())

    def summary(self):
        fit = self.fit_
        out: dict[str, float | int | str] = {"distribution": fit.distribution.name}
        out.update(bounded_values(cb.parameter_bounds(fit, *self._bound_args())))
        if not fit.fixed:
            out.update({f"{k}_se": v for k, v in fit.standard_errors().items()})
        out.update(self.b_life_summary())
        mean = float(fit.frozen().mean())
        out[f"mean_{self.params.time}"] = mean
        out.update({"units": fit.n, "failures": fit.failures, "log_likelihood": fit.loglik, "aicc": fit.aicc,
                    "bic": fit.bic, "confidence": self.params.confidence})
        out.update({f"{k}_units": v for k, v in fit.data.counts().items() if k != "exact" and v})
        if self.excluded_units_:
            out["units_excluded_at_start"] = int(self.excluded_units_)
        if len(self.fits_) > 1:
            for f in self.fits_:
                key = f.distribution.name.replace("-", "_")
                out.update({f"aicc_{key}": f.aicc, f"bic_{key}": f.bic, f"log_likelihood_{key}": f.loglik})
        return finite_values(out)

    def ranking(self) -> list[dict[str, float | int | str]]:
        """The ranking table: one row per fitted candidate (best first), then the ones that could not be fit."""
        best = self.fits_[0]
        rows: list[dict[str, float | int | str]] = []
        for i, f in enumerate(self.fits_):
            rows.append({"rank": i + 1, "distribution": f.distribution.name, "parameters": f.k,
                         "log_likelihood": f.loglik, "aicc": f.aicc, "bic": f.bic,
                         "delta_aicc": f.aicc - best.aicc, "delta_bic": f.bic - best.bic,
                         "values": "; ".join(f"{k}={v:.6g}" for k, v in f.named().items()), "note": ""})
        for name, why in self.skipped_.items():
            rows.append({"rank": "", "distribution": name, "parameters": get(name).k, "log_likelihood": "",
                         "aicc": "", "bic": "", "delta_aicc": "", "delta_bic": "", "values": "", "note": why})
        return rows

    # ---- predict -------------------------------------------------------------------------------------------
    def predict(self, data, ctx):
        import xarray as xr

        self.require_fitted("fits_")
        dim, n = output_dim(data, self.features[0] if self.features else None)
        out = {**self.b_life_columns(dim, n), **self.reliability_columns(data, dim, self.who)}
        coords = {dim: data[dim].values} if dim in data.coords else None
        return xr.Dataset(out, coords=coords)

    def score(self, data: xr.Dataset, ctx: RunContext, predictions: xr.Dataset | None = None
              ) -> dict[str, float]:
        """On held-out units: the mean log-likelihood per unit (compare with the training value)."""
        life = read_life_data(data, self.params, self.who, min_failures=0, intervals=True).life
        ll = log_likelihood(life, self.fit_.frozen())
        return {"test_log_likelihood_per_unit": ll / life.n,
                "train_log_likelihood_per_unit": self.fit_.loglik / self.fit_.n}

    # ---- state ---------------------------------------------------------------------------------------------
    def save_state(self, directory):
        directory = Path(directory)
        data = self.fit_.data
        arrays = {"lower": data.lower, "upper": data.upper,
                  "truncation": data.truncation if data.truncation is not None else np.zeros(0)}
        for i, f in enumerate(self.fits_):
            arrays.update({f"params_{i}": f.params, f"cov_{i}": f.cov, f"fixed_{i}": np.asarray(f.fixed, int)})
        np.savez(directory / "state.npz", **arrays)
        meta = {"distributions": [f.distribution.name for f in self.fits_],
                "logliks": [f.loglik for f in self.fits_], "skipped": self.skipped_,
                "excluded_units": int(self.excluded_units_)}
        (directory / "fits.json").write_text(json.dumps(meta, indent=2))
        (directory / "life_distribution.json").write_text(json.dumps(self.summary(), indent=2))
        write_ranking(self.ranking(), directory / "distribution_ranking.csv")

    def load_state(self, directory):
        directory = Path(directory)
        meta = json.loads((directory / "fits.json").read_text())
        with np.load(directory / "state.npz", allow_pickle=False) as state:
            trunc = state["truncation"]
            data = Censored(state["lower"], state["upper"], trunc if trunc.size else None)
            self.fits_ = [Fit(get(name), state[f"params_{i}"], float(ll), state[f"cov_{i}"], data,
                              tuple(int(j) for j in state[f"fixed_{i}"]))
                          for i, (name, ll) in enumerate(zip(meta["distributions"], meta["logliks"], strict=True))]
        self.skipped_ = dict(meta.get("skipped", {}))
        self.excluded_units_ = int(meta.get("excluded_units", 0))

    # ---- plot ----------------------------------------------------------------------------------------------
    def plot(self, folder: Path) -> list[Path]:
        """A probability plot per fitted distribution (the chosen one first) and the ranking table as CSV."""
        from .probplot import probability_plot

        paths = []
        for i, f in enumerate(self.fits_):
            marks = [(name.split("_")[0].upper(), p / 100.0, f.quantile(p / 100.0))
                     for p, name in zip(self.params.b_lives, self._b_names(), strict=True)]
            note = ("" if len(self.fits_) == 1 else
                    f"; {self.params.criterion.upper()} rank {i + 1} of {len(self.fits_)}"
                    f" ({self.params.criterion.upper()} {f.criterion(self.params.criterion):.2f})")
            paths.append(probability_plot(f, Path(folder) / f"probability_{f.distribution.name}.png",
                                          confidence=self.params.confidence, one_sided=self.params.one_sided,
                                          time=self.params.time, marks=marks, note=note))
        if len(self.fits_) > 1:
            write_ranking(self.ranking(), Path(folder) / "distribution_ranking.csv")
        return paths


def rank(data: Censored, names: list[str], criterion: str, who: str) -> tuple[list[Fit], dict[str, str]]:
    """Fit every candidate; (the fits, best first by ``criterion``; the ones that could not be fit and why)."""
    fits, skipped = [], {}
    for name in names:
        try:
            fits.append(fit_distribution(name, data, who=who))
        except DataError as exc:
            skipped[name] = str(exc).removeprefix(f"{who}: ")
    if not fits:
        raise DataError(f"{who}: no candidate distribution could be fit: "
                        + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    fits.sort(key=lambda f: (f.criterion(criterion), f.k))
    return fits, skipped


def write_ranking(rows: list[dict], path: Path) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
