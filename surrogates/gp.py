"""Exact Gaussian process surrogate on BoTorch/GPyTorch: one independent GP per output, std from the posterior.

The outputs are modelled by a batched ``SingleTaskGP`` (one batch member per output, each with its own kernel
hyperparameters, so the outputs are independent), inputs mapped onto the unit cube (``Normalize``) and outputs
standardized (``Standardize``) inside the model, hyperparameters by maximizing the exact marginal likelihood
(``fit_gpytorch_mll``). Tensors are double precision on ``device``.

Exact GPs cost O(n^3) in the number of training points: a few thousand points are fine, far more are not.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field
from reflow.components import Params
from reflow.device import quiet_torch_imports
from reflow.surrogates.base import Surrogate, load_arrays, save_arrays, torch_seeded


class GPParams(Params):
    """Params of the ``gp`` family."""

    kernel: Literal["rbf", "matern52"] = Field(
        "rbf", description="rbf: BoTorch's default RBF kernel with dimension-scaled length-scale priors; "
                           "matern52: a scaled Matern-5/2 kernel with Gamma priors")
    noise: float | None = Field(None, gt=0, description="known observation-noise standard deviation in target units "
                                                        "(null: learn the noise from the data)")
    include_noise: bool = Field(False, description="std of a new observation (adds the noise) instead of the std "
                                                   "of the predicted mean")
    batch_size: int = Field(4096, ge=1, description="points per posterior evaluation when predicting")


class GPSurrogate(Surrogate):
    """Exact GP regression with independent outputs; ``std`` is the posterior standard deviation."""

    family = "gp"
    has_std = True
    uses_torch = True
    Params = GPParams

    def _build(self, X: Any, Y: Any, Yvar: Any) -> Any:
        quiet_torch_imports()
        import torch
        from botorch.models import SingleTaskGP
        from botorch.models.transforms import Normalize, Standardize
        from botorch.models.utils.gpytorch_modules import (
            get_covar_module_with_dim_scaled_prior,
            get_matern_kernel_with_gamma_prior,
        )

        d, m = X.shape[-1], Y.shape[-1]
        batch = torch.Size([m]) if m > 1 else torch.Size()
        if self.params.kernel == "matern52":
            covar = get_matern_kernel_with_gamma_prior(ard_num_dims=d, batch_shape=batch)
        else:
            covar = get_covar_module_with_dim_scaled_prior(ard_num_dims=d, batch_shape=batch)
        return SingleTaskGP(X, Y, train_Yvar=Yvar, covar_module=covar, input_transform=Normalize(d=d),
                            outcome_transform=Standardize(m=m)).to(X)

    def _tensors(self, X: np.ndarray, Y: np.ndarray) -> tuple[Any, Any, Any]:
        import torch

        kw = {"dtype": torch.float64, "device": self._torch_device()}
        Xt, Yt = torch.as_tensor(X, **kw), torch.as_tensor(Y, **kw)
        Yvar = None if self.params.noise is None else torch.full_like(Yt, self.params.noise**2)
        return Xt, Yt, Yvar

    def _fit(self, X, Y, validation):
        quiet_torch_imports()
        from botorch.fit import fit_gpytorch_mll
        from gpytorch.mlls import ExactMarginalLogLikelihood

        self.train_X_, self.train_Y_ = X, Y
        from threadpoolctl import threadpool_limits

        with torch_seeded(self.seed):  # fit retries draw from the priors: keep them repeatable
            model = self._build(*self._tensors(X, Y))
            mll = ExactMarginalLogLikelihood(model.likelihood, model)
            # scipy's L-BFGS-B works on a dozen hyperparameters: a multi-threaded BLAS only adds thread
            # hand-offs (5x slower on a busy 2-core machine), so it runs on one thread
            with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
                warnings.filterwarnings("ignore", message=".*not p.d.*")
                fit_gpytorch_mll(mll)
        model.eval()
        self.model_ = model

    def _on_device(self) -> Any:
        dev = self._torch_device()
        if self.model_.train_inputs[0].device != dev:
            self.model_ = self.model_.to(dev)
        return dev

    def _predict(self, X):
        import torch

        dev = self._on_device()
        means, stds = [], []
        with torch.no_grad():
            for start in range(0, X.shape[0], self.params.batch_size):
                Xt = torch.as_tensor(X[start:start + self.params.batch_size], dtype=torch.float64, device=dev)
                post = self.model_.posterior(Xt, observation_noise=self.params.include_noise)
                means.append(post.mean.cpu().numpy())
                stds.append(post.variance.clamp_min(0.0).sqrt().cpu().numpy())
        return np.concatenate(means), np.concatenate(stds)

    def lengthscales(self) -> np.ndarray:
        """Fitted length-scales in the unit-cube input space, shape (m, d)."""
        kernel = self.model_.covar_module
        base = getattr(kernel, "base_kernel", kernel)
        return base.lengthscale.detach().cpu().numpy().reshape(self.n_outputs_, self.n_features_in_)

    def noise_variance(self) -> np.ndarray:
        """Observation-noise variance per output in standardized target units, shape (m,)."""
        return self.model_.likelihood.noise.detach().cpu().numpy().reshape(self.n_outputs_, -1).mean(axis=1)

    def _summary(self):
        return {"gp_mean_lengthscale": float(self.lengthscales().mean()),
                "gp_noise_variance_std_units": float(self.noise_variance().mean())}

    def _save_state(self, directory: Path):
        state = {f"model.{k}": v for k, v in self.model_.state_dict().items()}
        # the standardized targets as the fitted model holds them: rebuilding them from train_Y can differ in the
        # last bit, and the loaded model should predict exactly what the saved one did
        save_arrays(directory / "state.npz", {"train_X": self.train_X_, "train_Y": self.train_Y_,
                                              "train_targets": self.model_.train_targets, **state})
        return {"arrays": "train_X, train_Y, train_targets and model.* (the GPyTorch state dict)"}

    def _load_state(self, directory: Path, state: dict[str, Any]) -> None:
        import torch

        arrays = load_arrays(directory / "state.npz")
        self.train_X_, self.train_Y_ = arrays["train_X"], arrays["train_Y"]
        dev = self._torch_device()
        with torch_seeded(self.seed):
            model = self._build(*self._tensors(self.train_X_, self.train_Y_))
        model.load_state_dict({k.removeprefix("model."): torch.as_tensor(v, device=dev)
                               for k, v in arrays.items() if k.startswith("model.")})
        model.set_train_data(targets=torch.as_tensor(arrays["train_targets"], device=dev), strict=True)
        model.eval()
        self.model_ = model
