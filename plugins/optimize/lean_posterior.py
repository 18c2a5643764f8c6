"""The posterior of BoTorch's default GP in a few plain torch operations, for the acquisition search.

The acquisition search evaluates the GP's posterior at about a hundred points per ask and start (WeldedBeam,
30 evaluations: 2,300 posterior calls in 22 asks), and most of each call is not arithmetic: GPyTorch's
prediction strategy, the lazy linear operators it builds (their shape checks alone were a sixth of the run,
``torch.broadcast_shapes`` called 150,000 times) and the outcome transform's rescaling of them. For the model
the fit's lean likelihood covers (:func:`marginal_likelihood.lean_applies`: an ARD RBF kernel, constant mean,
homoskedastic noise, no input transform), :class:`LeanSingleTaskGP` computes the same posterior from factors
cached once per fitted model,

    mean = c + k(x, X) a,   cov = k(x, x') - k(x, X) (K + s I)^-1 k(X, x'),   a = (K + s I)^-1 (y - c)

rescaled by the ``Standardize`` outcome transform, and returns the distribution BoTorch's own path returns
(a ``MultivariateNormal`` for one output; for several, a ``MultitaskMultivariateNormal`` with one dense block
per output, the structure BoTorch's cached-root sampling reads). Values agree with GPyTorch's to about 1e-12
(tests/plugins/test_lean_posterior.py). Any other call (output indices, observation noise, a fantasy or
batched model, a covariance that does not factorize) takes BoTorch's path. The hyperparameters are constants
here: gradients flow to the inputs only, which is all the acquisition search asks for.
"""

from __future__ import annotations

from typing import Any

import torch
from botorch.models import SingleTaskGP
from botorch.models.transforms import Standardize
from botorch.posteriors import GPyTorchPosterior
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal
from linear_operator.operators import BlockDiagLinearOperator, DenseLinearOperator

from .marginal_likelihood import lean_applies, rbf


class LeanSingleTaskGP(SingleTaskGP):
    """BoTorch's ``SingleTaskGP`` whose posterior is :func:`lean_posterior` where that applies."""

    def posterior(self, X: torch.Tensor, output_indices: list[int] | None = None,
                  observation_noise: bool | torch.Tensor = False, posterior_transform: Any = None,
                  **kwargs: Any) -> Any:
        factors = None
        if output_indices is None and observation_noise is False and not kwargs:
            factors = self._lean_factors()
        if factors is None:
            return super().posterior(X, output_indices=output_indices, observation_noise=observation_noise,
                                     posterior_transform=posterior_transform, **kwargs)
        posterior = lean_posterior(self, X, factors)
        return posterior if posterior_transform is None else posterior_transform(posterior=posterior, X=X)

    def condition_on_observations(self, X: torch.Tensor, Y: torch.Tensor, **kwargs: Any) -> Any:
        """BoTorch's conditioning (fantasies), which starts from GPyTorch's prediction caches: they are built
        first where only the lean posterior has run."""
        if self.prediction_strategy is None:
            with torch.no_grad():
                super().posterior(X.reshape(-1, X.shape[-1])[:1])
        return super().condition_on_observations(X, Y, **kwargs)

    def _lean_factors(self) -> dict[str, torch.Tensor] | None:
        """The cached factors of the training data (computed once per fitted model), or None where the lean
        posterior does not apply."""
        if self.training or not lean_applies(self):
            return None
        outputs = self.num_outputs
        x = self.train_inputs[0]
        if x.dim() != (3 if outputs > 1 else 2) or (outputs > 1 and x.shape[0] != outputs):
            return None  # a batch of models, or a fantasy model: BoTorch's path
        transform = getattr(self, "outcome_transform", None)
        if transform is not None and (type(transform) is not Standardize or transform._outputs is not None
                                      or transform.means.shape != (1, outputs)):
            return None
        values = [p.detach() for p in self.parameters()]  # compared by value: GPyTorch's setters write .data
        cached = self.__dict__.get("_lean_cache")
        if (cached is not None and cached[0] is x and cached[1] is self.train_targets
                and all(torch.equal(a, b) for a, b in zip(cached[2], values, strict=True))):
            return cached[3]
        factors = _factorize(self) if transform is None or transform._is_trained else None
        self.__dict__["_lean_cache"] = (x, self.train_targets, [v.clone() for v in values], factors)
        return factors


def _factorize(model: SingleTaskGP) -> dict[str, torch.Tensor] | None:
    """Cholesky factor's inverse, weights and constants of the fitted model (None if K + s I is not
    numerically positive definite: GPyTorch then adds jitter, and its path is taken)."""
    with torch.no_grad():
        lengthscale = model.covar_module.lengthscale  # (m, 1, d) or (1, d)
        x = model.train_inputs[0]
        n = x.shape[-2]
        constant = model.mean_module.constant.unsqueeze(-1)  # (m, 1) or (1,)
        covariance = rbf(x / lengthscale, x / lengthscale)
        noise = model.likelihood.noise
        covariance = covariance + torch.diag_embed(noise.expand(*noise.shape[:-1], n))
        factor, info = torch.linalg.cholesky_ex(covariance)
        if bool(info.any()):
            return None
        eye = torch.eye(n, dtype=x.dtype, device=x.device)
        inverse_factor = torch.linalg.solve_triangular(factor, eye, upper=False)
        residual = (model.train_targets - constant).unsqueeze(-1)
        weights = torch.cholesky_solve(residual, factor)  # (m, n, 1) or (n, 1)
        factors = {"lengthscale": lengthscale.detach().clone(), "scaled_x": (x / lengthscale).detach(),
                   "constant": constant.detach().clone(), "weights": weights,
                   "inverse_factor_t": inverse_factor.transpose(-1, -2).contiguous()}
        transform = getattr(model, "outcome_transform", None)
        if transform is not None:
            factors["offset"] = transform.means.detach().clone()  # (1, m)
            factors["scale"] = transform.stdvs.detach().clone()
        return factors


def lean_posterior(model: SingleTaskGP, X: torch.Tensor, factors: dict[str, torch.Tensor]) -> GPyTorchPosterior:
    """The posterior of ``model`` at ``X`` (``batch x q x d``) in the outcome's units, from its ``factors``."""
    several = model.num_outputs > 1
    z = (X.unsqueeze(-3) if several else X) / factors["lengthscale"]  # (batch, [m,] q, d)
    cross = rbf(z, factors["scaled_x"])  # (batch, [m,] q, n)
    mean = factors["constant"] + (cross @ factors["weights"]).squeeze(-1)
    root = cross @ factors["inverse_factor_t"]
    covariance = rbf(z, z) - root @ root.transpose(-1, -2)
    if "scale" in factors:
        scale = factors["scale"].squeeze(-2)  # (m,)
        if several:
            mean = mean.transpose(-1, -2) * scale + factors["offset"].squeeze(-2)
            covariance = covariance * (scale * scale).unsqueeze(-1).unsqueeze(-1)
        else:
            mean = mean * scale + factors["offset"].squeeze(-2)
            covariance = covariance * (scale * scale)
    elif several:
        mean = mean.transpose(-1, -2)
    if several:
        distribution = MultitaskMultivariateNormal(
            mean, BlockDiagLinearOperator(DenseLinearOperator(covariance), block_dim=-3), interleaved=False)
    else:
        distribution = MultivariateNormal(mean, DenseLinearOperator(covariance))
    return GPyTorchPosterior(distribution)
