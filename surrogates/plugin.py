"""The surrogate families as reflow models: ``gp``, ``ensemble``, ``mlp``, ``elm``, ``sklearn`` (family "surrogate").

Each model is a family's params plus the preprocessing params (``scale``, ``select``, ``pca``); train one with the
``train`` task and use it as an evaluator (``{stage: NAME}``) in ``doe``/``optimize`` pipelines::

    fit:
      task: train
      model: {gp: {kernel: matern52, scale: minmax}}
      data: sims.trials
      features: [die_thickness_mm, underfill_modulus_gpa]
      target: [warpage_um, max_stress_mpa]

Predictions are ``<target>_mean`` and, for families with uncertainty, ``<target>_std``. The model runs on the
study's device. Saved as ``params.json`` (reflow's) plus ``surrogate/`` (see :mod:`reflow.surrogates.base`).

This module imports no torch or scikit-learn: loading the plugin stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import reflow
from reflow.errors import DataError
from reflow.surrogates.elm import ELMParams
from reflow.surrogates.ensemble import EnsembleParams
from reflow.surrogates.gp import GPParams
from reflow.surrogates.mlp import MLPParams
from reflow.surrogates.preprocess import PreprocessParams
from reflow.surrogates.sklearn import SklearnParams

if TYPE_CHECKING:
    import xarray as xr
    from reflow.context import RunContext

SURROGATE_DIR = "surrogate"
UNITS_FILE = "units.json"


class SurrogateModel(reflow.Model):
    """Base of the surrogate models: a family (``surrogate_family``) behind the input preprocessing."""

    family = "surrogate"
    surrogate_family: ClassVar[str] = ""
    family_params: ClassVar[type[reflow.Params]] = reflow.Params

    def make_surrogate(self, device: str = "cpu", seed: int = 0) -> Any:
        """The unfitted surrogate (preprocessing + family) for these params."""
        from reflow.surrogates import make_surrogate
        from reflow.surrogates.preprocess import PreprocessedSurrogate

        values = self.params.model_dump()
        own = {k: values[k] for k in self.family_params.model_fields}
        pre = {k: values[k] for k in PreprocessParams.model_fields}
        inner = make_surrogate(self.surrogate_family, own, device=device, seed=seed)
        return PreprocessedSurrogate(pre, inner)

    def _dim(self, data: Any) -> str:
        return data[self.features[0]].dims[0]

    def _matrix(self, data: Any, names: list[str], role: str) -> np.ndarray:
        if not names:
            raise DataError(f"{self.surrogate_family}: no {role}s named; the train task sets features and targets "
                            "(or call configure(features, targets))")
        missing = [n for n in names if n not in data]
        if missing:
            raise DataError(f"{self.surrogate_family}: the data has no {role}s {', '.join(missing)} "
                            f"(has: {', '.join(map(str, data.data_vars))})")
        columns = []
        for n in names:
            values = np.asarray(data[n].values)
            if values.dtype.kind not in "fiub":
                raise DataError(f"{self.surrogate_family}: {role} {n!r} is not numeric (dtype {values.dtype}); "
                                "surrogates take numbers only")
            values = values.astype(float).reshape(-1)
            if not np.all(np.isfinite(values)):
                raise DataError(f"{self.surrogate_family}: {n!r} holds {int(np.sum(~np.isfinite(values)))} NaN or "
                                "infinite value(s); drop or fill them first")
            columns.append(values)
        return np.column_stack(columns)

    def fit(self, data: xr.Dataset, ctx: RunContext, validation: xr.Dataset | None = None) -> SurrogateModel:
        X = self._matrix(data, self.features, "feature")
        Y = self._matrix(data, self.targets, "target")
        held_out = None
        if validation is not None and all(n in validation for n in self.features + self.targets):
            held_out = (self._matrix(validation, self.features, "feature"),
                        self._matrix(validation, self.targets, "target"))
        surrogate = self.make_surrogate(ctx.device, ctx.seed)
        surrogate.quiet = ctx.quiet
        self.surrogate_ = surrogate.fit(X, Y, validation=held_out)
        self.units_ = {n: str(data[n].attrs.get("units", "")) for n in self.features + self.targets}
        return self

    def predict(self, data, ctx):
        import xarray as xr

        self.require_fitted("surrogate_")
        X = self._matrix(data, self.features, "feature")
        self.surrogate_.device = ctx.device
        mean, std = self.surrogate_.predict(X)
        dim = self._dim(data)
        out = {}
        for j, t in enumerate(self.targets):
            attrs = {"units": self.units_.get(t, "")}
            out[f"{t}_mean"] = (dim, mean[:, j], attrs)
            if std is not None:
                out[f"{t}_std"] = (dim, std[:, j], attrs)
        coords = {dim: data[dim].values} if dim in data.coords else {}
        return xr.Dataset(out, coords=coords, attrs={"component": self.surrogate_family})

    def summary(self):
        return self.surrogate_.summary() if self.is_fitted("surrogate_") else {}

    def save_state(self, directory: Path) -> None:
        self.surrogate_.save(directory / SURROGATE_DIR)
        (directory / UNITS_FILE).write_text(json.dumps(self.units_, indent=2))

    def load_state(self, directory: Path) -> None:
        from reflow.surrogates import load_surrogate

        self.surrogate_ = load_surrogate(directory / SURROGATE_DIR)
        path = directory / UNITS_FILE
        self.units_ = json.loads(path.read_text()) if path.exists() else {}


class GPModel(SurrogateModel):
    """Exact Gaussian process (BoTorch), independent outputs, posterior std. Small data sets (O(n^3))."""

    surrogate_family = "gp"
    family_params = GPParams

    class Params(PreprocessParams, GPParams):
        pass


class EnsembleModel(SurrogateModel):
    """Deep ensemble of MLPs with different seeds; std across members."""

    surrogate_family = "ensemble"
    family_params = EnsembleParams

    class Params(PreprocessParams, EnsembleParams):
        pass


class MLPModel(SurrogateModel):
    """BP-NN baseline: one MLP trained by back-propagation; no std."""

    surrogate_family = "mlp"
    family_params = MLPParams

    class Params(PreprocessParams, MLPParams):
        pass


class ELMModel(SurrogateModel):
    """Extreme learning machine (random hidden layer, closed-form output weights), optionally tuned like ICS-ELM."""

    surrogate_family = "elm"
    family_params = ELMParams

    class Params(PreprocessParams, ELMParams):
        pass


class SklearnModel(SurrogateModel):
    """A scikit-learn regressor (ols, lasso, ridge, poisson, bagging, svr, knn, random-forest, gradient-boosting)."""

    surrogate_family = "sklearn"
    family_params = SklearnParams

    class Params(PreprocessParams, SklearnParams):
        pass


MODELS = {"gp": GPModel, "ensemble": EnsembleModel, "mlp": MLPModel, "elm": ELMModel, "sklearn": SklearnModel}


@reflow.hookimpl
def register_models(register):
    for name, cls in MODELS.items():
        register(name, cls)
