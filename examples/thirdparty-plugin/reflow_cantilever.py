"""reflow-cantilever: an example third-party reflow plugin.

It adds two components, registered through the hooks below and found by reflow through the entry point
``[project.entry-points.reflow] cantilever = "reflow_cantilever"`` in this package's pyproject.toml:

- evaluator ``cantilever-deflection``: tip deflection and root bending stress of a rectangular cantilever
  (a probe-card needle, a lead-frame finger, a MEMS spring) under a point load at its tip;
- model ``least-squares-poly``: a polynomial least-squares regressor (numpy only) with a residual std,
  usable as a surrogate of any evaluator.

Copy this file to start your own plugin; README.md next to it walks through every part.
"""

from __future__ import annotations

import json
from itertools import combinations_with_replacement
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import reflow
import xarray as xr
from pydantic import Field
from reflow import Variable

if TYPE_CHECKING:
    from reflow.context import RunContext

__version__ = "0.1.0"


# --------------------------------------------------------------------------------------------------
# Evaluator: closed-form Euler-Bernoulli cantilever
# --------------------------------------------------------------------------------------------------


def cantilever(length_mm: float, width_mm: float, thickness_mm: float, modulus_gpa: float,
               load_n: float) -> dict[str, float]:
    """Euler-Bernoulli cantilever with a point load F at the free end, SI inside.

    delta = F L^3 / (3 E I) with I = w t^3 / 12 (tip deflection), sigma = M c / I = 6 F L / (w t^2)
    (bending stress at the clamped root, top and bottom faces). Returns um and MPa.
    """
    length, width, thickness = length_mm * 1e-3, width_mm * 1e-3, thickness_mm * 1e-3
    modulus = modulus_gpa * 1e9
    inertia = width * thickness**3 / 12.0
    deflection = load_n * length**3 / (3.0 * modulus * inertia)
    stress = 6.0 * load_n * length / (width * thickness**2)
    return {"tip_deflection_um": deflection * 1e6, "max_stress_mpa": stress / 1e6}


class CantileverDeflection(reflow.Evaluator):
    """Tip deflection and root bending stress of a rectangular cantilever under a tip load.

    Euler-Bernoulli beam theory (slender beam, small deflection, linear elastic): delta = F L^3 / (3 E I),
    I = w t^3 / 12, sigma_max = 6 F L / (w t^2). Defaults describe a copper-alloy lead-frame finger;
    any input can be a design factor, the others take their defaults.
    """

    # Inputs: name, units, low, high (the range a study's space may use), default, description.
    inputs = (
        Variable("length_mm", "mm", 0.1, 50.0, default=3.0, description="free length L"),
        Variable("width_mm", "mm", 0.005, 10.0, default=0.2, description="width w"),
        Variable("thickness_mm", "mm", 0.005, 5.0, default=0.15, description="thickness t (bending direction)"),
        Variable("modulus_gpa", "GPa", 1.0, 1000.0, default=120.0, description="Young's modulus E (Cu alloy)"),
        Variable("load_n", "N", 0.0, 100.0, default=0.05, description="point load F at the tip"),
    )
    outputs = (
        Variable("tip_deflection_um", "um", description="tip deflection F L^3 / (3 E I)"),
        Variable("max_stress_mpa", "MPa", description="bending stress at the root 6 F L / (w t^2)"),
    )

    class Params(reflow.Params):
        load_factor: float = Field(1.0, gt=0, description="multiplies the load (dynamic or safety factor)")

    def evaluate_one(self, inputs: dict) -> dict:
        for name in ("length_mm", "width_mm", "thickness_mm", "modulus_gpa"):
            if inputs[name] <= 0:
                raise ValueError(f"{name} must be positive, got {inputs[name]}")
        return cantilever(inputs["length_mm"], inputs["width_mm"], inputs["thickness_mm"], inputs["modulus_gpa"],
                          inputs["load_n"] * self.params.load_factor)


# --------------------------------------------------------------------------------------------------
# Model: polynomial least squares
# --------------------------------------------------------------------------------------------------


class LeastSquaresPoly(reflow.Model):
    """Polynomial least-squares regressor (degree 1 or 2, all cross terms) with a residual std.

    Features are standardized, the polynomial is fitted to every target at once with numpy.linalg.lstsq,
    and ``<target>_std`` is the residual standard deviation of the fit (the same for every sample).
    Saved as ``state.npz`` (numbers only, loaded with allow_pickle=False) plus reflow's ``params.json``.

    What reflow.Model does for it: ``configure(features, targets)`` (the ``train`` task names them) and saving
    them with the params. What it implements: ``fit``, ``predict``, ``save_state``, ``load_state`` (the
    contract) and ``score``, ``plot``, ``summary`` (optional; the base's defaults add nothing).
    """

    family = "regressor"
    uses_images = False  # the default, declared here to show it: True for a model that reads the image variable
    coef_: np.ndarray | None = None
    """Fitted state ends in ``_``; a class-level None lets ``require_fitted`` say "call fit" before a fit."""

    class Params(reflow.Params):
        degree: Literal[1, 2] = Field(2, description="polynomial degree: 1 (linear) or 2 (quadratic with cross terms)")
        ridge: float = Field(0.0, ge=0, description="L2 penalty on the non-constant coefficients (0: plain lstsq)")

    # ---- the contract: fit / predict ----------------------------------------------------------------

    def fit(self, data: xr.Dataset, ctx: RunContext | None, validation: xr.Dataset | None = None
            ) -> LeastSquaresPoly:
        """Fit every target on the features.

        Args:
            data: the training set; ``self.features`` and ``self.targets`` (set by ``configure``) are
                1-D variables over one dim (``sample`` or ``trial``) of length n.
            ctx: the run context (unused: the fit is deterministic).
            validation: the rows a study's ``split`` holds out, or None. A least-squares fit has nothing to
                stop early or select, so it is unused; an iterative model would watch its loss on them.
        """
        if not self.features or not self.targets:
            raise reflow.DataError("least-squares-poly: call configure(features, targets) before fit")
        x = self._matrix(data, self.features)
        y = self._matrix(data, self.targets)
        self.x_mean_ = x.mean(axis=0)
        scale = x.std(axis=0)
        self.x_scale_ = np.where(scale > 0, scale, 1.0)
        basis = self._basis(x)
        n, p = basis.shape
        if n < p:
            raise reflow.DataError(f"least-squares-poly: degree {self.params.degree} with {len(self.features)} "
                                   f"features has {p} coefficients but only {n} training samples")
        if self.params.ridge > 0:
            penalty = np.sqrt(self.params.ridge) * np.eye(p)[1:]  # never shrink the intercept
            a, b = np.vstack([basis, penalty]), np.vstack([y, np.zeros((p - 1, y.shape[1]))])
        else:
            a, b = basis, y
        self.coef_, *_ = np.linalg.lstsq(a, b, rcond=None)  # (p, n_targets)
        residual = y - basis @ self.coef_
        self.residual_std_ = np.sqrt((residual**2).sum(axis=0) / max(n - p, 1))
        return self

    def predict(self, data: xr.Dataset, ctx: RunContext | None) -> xr.Dataset:
        """Predict ``<target>_mean`` and ``<target>_std`` on the dim of the features (n values each)."""
        self.require_fitted("coef_")  # a clear "call fit" error instead of an AttributeError
        dim = data[self.features[0]].dims[0] if self.features and self.features[0] in data else "sample"
        mean = self._basis(self._matrix(data, self.features)) @ self.coef_
        out = xr.Dataset(coords={dim: data[dim].values} if dim in data.coords else None)
        for j, target in enumerate(self.targets):
            out[f"{target}_mean"] = (dim, mean[:, j])
            out[f"{target}_std"] = (dim, np.full(mean.shape[0], self.residual_std_[j]))
        return out

    # ---- optional: score, plot, summary ---------------------------------------------------------------

    def score(self, data: xr.Dataset, ctx: RunContext | None, predictions: xr.Dataset | None = None
              ) -> dict[str, float]:
        """Beyond the ``train`` task's per-target scores: each target's held-out RMSE over the fit's residual
        std (about 1 for a good fit, much more for an overfit one). ``predictions`` is ``predict(data)``
        when the task made it already."""
        pred = predictions if predictions is not None else self.predict(data, ctx)
        out = {}
        for j, target in enumerate(self.targets):
            error = np.asarray(pred[f"{target}_mean"].values) - np.asarray(data[target].values, dtype=float)
            rmse = float(np.sqrt(np.mean(error**2)))
            out[f"{target}_rmse_over_residual_std"] = rmse / max(float(self.residual_std_[j]), 1e-300)
        return out

    def plot(self, folder: Path) -> list[Path]:
        """The standardized coefficients of every target as ``coefficients.png`` (the ``train`` task calls this
        on the saved model and shows the figure in the report)."""
        from reflow.plotting import pyplot, save_figure

        self.require_fitted("coef_")
        plt = pyplot()
        terms = self.term_names()
        fig, ax = plt.subplots(figsize=(6, 0.3 * len(terms) + 1.5))
        for j, target in enumerate(self.targets):
            ax.barh(np.arange(len(terms)) + 0.8 * j / len(self.targets), self.coef_[:, j],
                    height=0.8 / len(self.targets), label=target)
        ax.set_yticks(np.arange(len(terms)), terms)
        ax.set_xlabel("coefficient (standardized features)")
        ax.legend()
        path = Path(folder) / "coefficients.png"
        save_figure(fig, path)
        return [path]

    def summary(self) -> dict[str, float]:
        """The residual std of each target: the ``train`` task adds it to the stage's metrics."""
        if not self.is_fitted("coef_"):
            return {}
        return {f"{t}_residual_std": float(s) for t, s in zip(self.targets, self.residual_std_, strict=True)}

    # ---- saving: numbers in npz (never pickle); reflow's save()/load() add params.json ------------------

    def save_state(self, directory: Path) -> None:
        np.savez(Path(directory) / "state.npz", coef=self.coef_, x_mean=self.x_mean_, x_scale=self.x_scale_,
                 residual_std=self.residual_std_)
        (Path(directory) / "terms.json").write_text(json.dumps(self.term_names(), indent=1))

    def load_state(self, directory: Path) -> None:
        with np.load(Path(directory) / "state.npz", allow_pickle=False) as state:
            self.coef_ = state["coef"]
            self.x_mean_ = state["x_mean"]
            self.x_scale_ = state["x_scale"]
            self.residual_std_ = state["residual_std"]

    # ---- helpers -------------------------------------------------------------------------------------

    def term_names(self) -> list[str]:
        """Names of the polynomial terms, in coefficient order (``1``, ``a``, ``a*b``, ...)."""
        return ["1"] + ["*".join(self.features[i] for i in combo) for combo in self._combos()]

    def _combos(self) -> list[tuple[int, ...]]:
        k = len(self.features)
        return [c for d in range(1, self.params.degree + 1) for c in combinations_with_replacement(range(k), d)]

    def _basis(self, x: np.ndarray) -> np.ndarray:
        z = (x - self.x_mean_) / self.x_scale_
        columns = [np.ones(len(z))] + [np.prod(z[:, list(c)], axis=1) for c in self._combos()]
        return np.column_stack(columns)

    @staticmethod
    def _matrix(data: xr.Dataset, names: list[str]) -> np.ndarray:
        missing = [n for n in names if n not in data]
        if missing:
            raise reflow.DataError(f"least-squares-poly: no variables {', '.join(missing)} in the data "
                                   f"(has: {', '.join(map(str, data.data_vars))})")
        return np.column_stack([np.asarray(data[n].values, dtype=float) for n in names])


# --------------------------------------------------------------------------------------------------
# Registration: reflow calls these hooks once, when it loads plugins.
# --------------------------------------------------------------------------------------------------


@reflow.hookimpl
def register_evaluators(register):
    register("cantilever-deflection", CantileverDeflection)


@reflow.hookimpl
def register_models(register):
    register("least-squares-poly", LeastSquaresPoly)
