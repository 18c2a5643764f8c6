"""Intermetallic (IMC) layer growth laws fitted to aging data, with the uncertainty of their constants.

Seed 000 gives the two empirical laws:

- ``power``: X(t) = X0 + D t^n (X0 the initial thickness, D a rate constant, n the time exponent; n = 0.5
  for diffusion-controlled growth), fitted by nonlinear least squares (scipy.optimize.curve_fit);
- ``zhu``: X(t) = B1 t + B2 t^0.5 + X0 (Zhu and Sun 2017, size factors B1 for the reaction rate and B2 for
  diffusion), linear in its constants, fitted by ordinary least squares.

Constants come with their standard errors from the fit's covariance; predictions carry the standard deviation
of a new measurement (parameter uncertainty plus the residual scatter).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Literal

import numpy as np
import reflow
from pydantic import Field
from reflow.errors import DataError

if TYPE_CHECKING:
    import xarray as xr
    from reflow.context import RunContext


def _power(t, x0, d, n):
    return x0 + d * np.power(t, n)


class ImcGrowth(reflow.Model):
    """IMC thickness against aging time: X0 + D t^n or B1 t + B2 t^0.5 + X0, constants with standard errors.

    Train it with one feature (the aging time) and one target (the thickness), e.g.
    ``{task: train, model: {imc-growth: {law: power}}, features: [aging_h], target: imc_um}``.
    """

    family = "regressor"
    NAMES = {"power": ("x0", "d", "n"), "zhu": ("b1", "b2", "x0")}

    class Params(reflow.Params):
        law: Literal["power", "zhu"] = Field("power", description="power: X0 + D t^n; zhu: B1 t + B2 t^0.5 + X0")

    def _xy(self, data, need_target: bool = True):
        if len(self.features) != 1:
            raise DataError(f"imc-growth takes exactly one feature (the aging time), got {self.features}")
        t = np.asarray(data[self.features[0]].values, dtype=float)
        if np.any(t < 0):
            raise DataError(f"{self.features[0]}: aging times must be >= 0")
        if not need_target:
            return t, None
        if len(self.targets) != 1:
            raise DataError(f"imc-growth predicts exactly one target (the thickness), got {self.targets}")
        return t, np.asarray(data[self.targets[0]].values, dtype=float)

    def _design(self, t):
        return np.column_stack([t, np.sqrt(t), np.ones_like(t)])

    def fit(self, data: xr.Dataset, ctx: RunContext, validation: xr.Dataset | None = None) -> ImcGrowth:
        t, y = self._xy(data)
        if t.size < 4:
            raise DataError(f"imc-growth needs at least 4 measurements to fit 3 constants, got {t.size}")
        if self.params.law == "zhu":
            a = self._design(t)
            coef, *_ = np.linalg.lstsq(a, y, rcond=None)
            resid = y - a @ coef
            dof = max(t.size - 3, 1)
            s2 = float(resid @ resid) / dof
            cov = s2 * np.linalg.pinv(a.T @ a)
        else:
            from scipy.optimize import curve_fit

            scale = max(float(np.max(t)), 1e-12)
            d0 = max((float(np.max(y)) - float(np.min(y))) / np.sqrt(scale), 1e-12)
            coef, cov = curve_fit(_power, t, y, p0=[float(np.min(y)), d0, 0.5],
                                  bounds=([-np.inf, 0.0, 0.01], [np.inf, np.inf, 3.0]), maxfev=20000)
            resid = y - _power(t, *coef)
            s2 = float(resid @ resid) / max(t.size - 3, 1)
        self.coef_ = np.asarray(coef, dtype=float)
        self.cov_ = np.asarray(cov, dtype=float)
        self.residual_var_ = s2
        return self

    def _gradient(self, t):
        if self.params.law == "zhu":
            return self._design(t)
        x0, d, n = self.coef_
        tn = np.power(t, n)
        with np.errstate(divide="ignore", invalid="ignore"):
            dn = np.where(t > 0, d * tn * np.log(np.where(t > 0, t, 1.0)), 0.0)
        return np.column_stack([np.ones_like(t), tn, dn])

    def predict(self, data, ctx):
        import xarray as xr

        self.require_fitted("coef_")
        t, _ = self._xy(data, need_target=False)
        dim = data[self.features[0]].dims[0]
        mean = self._design(t) @ self.coef_ if self.params.law == "zhu" else _power(t, *self.coef_)
        g = self._gradient(t)
        var = np.einsum("ij,jk,ik->i", g, self.cov_, g) + self.residual_var_
        target = self.targets[0]
        return xr.Dataset({f"{target}_mean": (dim, mean), f"{target}_std": (dim, np.sqrt(np.maximum(var, 0.0)))})

    def constants(self) -> dict[str, tuple[float, float]]:
        """Each fitted constant with its standard error."""
        se = np.sqrt(np.maximum(np.diag(self.cov_), 0.0))
        return {name: (float(v), float(s)) for name, v, s in zip(self.NAMES[self.params.law], self.coef_, se,
                                                                  strict=True)}

    def summary(self):
        out = {}
        for name, (value, se) in self.constants().items():
            out[name] = value
            out[f"{name}_se"] = se
        return out

    def save_state(self, directory):
        np.savez(directory / "state.npz", coef=self.coef_, cov=self.cov_, residual_var=self.residual_var_)
        (directory / "constants.json").write_text(json.dumps(self.constants(), indent=2))

    def load_state(self, directory):
        with np.load(directory / "state.npz", allow_pickle=False) as state:
            self.coef_ = state["coef"]
            self.cov_ = state["cov"]
            self.residual_var_ = float(state["residual_var"])
