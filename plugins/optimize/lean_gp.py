"""BoTorch's default GPs with their posterior and marginal likelihood in a few plain torch operations.

A Bayesian ask on a small problem is mostly GPyTorch's per-call overhead, not arithmetic: its lazily evaluated
kernels, the linear operators they build (their shape checks alone were a sixth of a WeldedBeam run,
``torch.broadcast_shapes`` called 150,000 times in 22 asks), its prior distributions and the outcome
transform's rescaling, around matrices of 30 x 30. The acquisition search evaluates the posterior about a
hundred times per ask and start; the fit evaluates the marginal likelihood about as often. The models here are
BoTorch's, with their modules, parameters, priors, state-dict entries and every method, and compute from the
same values

    mean = c + k(x, X) a,   cov = k(x, x') - k(x, X) (K + s I)^-1 k(X, x'),   a = (K + s I)^-1 (y - c)

with the factors of ``K + s I`` cached once per fitted model, rescaled by the ``Standardize`` outcome
transform, returned as the distribution BoTorch's own path returns (a ``MultivariateNormal`` for one output;
for several a ``MultitaskMultivariateNormal`` with one dense block per output, the structure BoTorch's
cached-root sampling reads); the fit's loss is marginal_likelihood.py's. Values agree with GPyTorch's to about
1e-12 (tests/plugins/test_lean_gp.py). Where a model's modules are not BoTorch's defaults
(:meth:`LeanPosterior.lean_applies`), and for any other call (output indices, observation noise, a batch of
models, a covariance that does not factorize), BoTorch's path runs. GPyTorch's caches are not used: a change
of the hyperparameters is seen at the next call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from botorch.models import MixedSingleTaskGP, SingleTaskGP
from botorch.models.transforms import Standardize
from botorch.posteriors import GPyTorchPosterior
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal
from gpytorch.kernels import RBFKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.likelihoods.noise_models import HomoskedasticNoise
from gpytorch.means import ConstantMean
from linear_operator.operators import BlockDiagLinearOperator, DenseLinearOperator

DIFFERENCES_LIMIT = 2**24
"""Elements of the tensor of pairwise differences above which :func:`rbf` takes the squared distances from inner
products instead (128 MB in double precision: a batch of 32 starts against 200 trials of 6 outputs in 6-D would need
370 MB per call). Every fit and posterior of the 30-evaluation benchmark stays below it (at most 1.5 million)."""


def rbf(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The RBF kernel between inputs already divided by their lengthscales: ``exp(-|z1 - z2|^2 / 2)``, from the
    differences (exactly 1 on the diagonal, where GPyTorch's expanded square can leave a rounding error); from
    ``|z1|^2 + |z2|^2 - 2 z1 z2`` (as GPyTorch, its diagonal set to 0 where ``z2 is z1``) where the differences
    would exceed ``DIFFERENCES_LIMIT`` elements."""
    batch = max(z1.numel() // max(z1.shape[-2] * z1.shape[-1], 1), z2.numel() // max(z2.shape[-2] * z2.shape[-1], 1))
    if batch * z1.shape[-2] * z2.shape[-2] * z1.shape[-1] <= DIFFERENCES_LIMIT:  # (one batch holds the other's)
        return torch.exp(-0.5 * (z1.unsqueeze(-2) - z2.unsqueeze(-3)).pow(2).sum(-1))
    squared = (z1.pow(2).sum(-1, keepdim=True) + z2.pow(2).sum(-1).unsqueeze(-2)
               - 2 * z1 @ z2.transpose(-1, -2)).clamp_min(0)
    if z2 is z1:
        squared = squared - torch.diag_embed(torch.diagonal(squared, dim1=-2, dim2=-1))
    return torch.exp(-0.5 * squared)


class LeanPosterior(ABC):
    """The lean posterior for a BoTorch GP class (mixed in before it): :func:`lean_posterior` where
    :meth:`lean_applies`, the class's own path otherwise. A model names its kernel in :meth:`lean_kernel`."""

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
        if self.training or not self.lean_applies():
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

    def lean_applies(self) -> bool:
        """Whether the model's mean, likelihood and kernel are those :meth:`lean_kernel` and the lean formulas
        compute: a constant mean, homoskedastic Gaussian noise, no input transform (and the kernel's own check)."""
        likelihood = self.likelihood
        return (type(self.mean_module) is ConstantMean and type(likelihood) is GaussianLikelihood
                and type(likelihood.noise_covar) is HomoskedasticNoise
                and getattr(self, "input_transform", None) is None and not list(self.added_loss_terms()))

    @abstractmethod
    def lean_kernel(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """The prior covariance between ``x1`` and ``x2`` (outputs' batch dimension in front of the points), a
        dense tensor."""


class LeanSingleTaskGP(LeanPosterior, SingleTaskGP):
    """BoTorch's ``SingleTaskGP``, lean where its kernel is the default ARD RBF on all inputs."""

    def lean_applies(self) -> bool:
        kernel = self.covar_module
        return (super().lean_applies() and type(kernel) is RBFKernel and kernel.active_dims is None
                and kernel.ard_num_dims == self.train_inputs[0].shape[-1])

    def lean_kernel(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        scale = self.covar_module.lengthscale  # (m, 1, d) or (1, d)
        z1 = x1 / scale
        return rbf(z1, z1 if x2 is x1 else x2 / scale)  # one division where the fit differentiates k(X, X)


class LeanMixedSingleTaskGP(LeanPosterior, MixedSingleTaskGP):
    """BoTorch's ``MixedSingleTaskGP``, lean where its kernel is fused (mixed_kernel.py, as reflow fits it)."""

    def lean_applies(self) -> bool:
        from .mixed_kernel import FusedMixedKernel

        return super().lean_applies() and type(self.covar_module) is FusedMixedKernel

    def lean_kernel(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.covar_module.forward(x1, x2)


def _factorize(model: LeanPosterior) -> dict[str, torch.Tensor] | None:
    """Inverse Cholesky factor, weights and constants of the fitted model (None if K + s I is not numerically
    positive definite: GPyTorch then adds jitter, and its path is taken)."""
    with torch.no_grad():
        x = model.train_inputs[0]  # (m, n, d) or (n, d)
        n = x.shape[-2]
        constant = model.mean_module.constant.detach().unsqueeze(-1)  # (m, 1) or (1,)
        covariance = model.lean_kernel(x, x)
        noise = model.likelihood.noise
        covariance = covariance + torch.diag_embed(noise.expand(*noise.shape[:-1], n))
        factor, info = torch.linalg.cholesky_ex(covariance)
        if bool(info.any()):
            return None
        eye = torch.eye(n, dtype=x.dtype, device=x.device)
        inverse_factor = torch.linalg.solve_triangular(factor, eye, upper=False)
        residual = (model.train_targets - constant).unsqueeze(-1)
        factors = {"x": x, "constant": constant, "weights": torch.cholesky_solve(residual, factor),
                   "inverse_factor_t": inverse_factor.transpose(-1, -2).contiguous()}
        transform = getattr(model, "outcome_transform", None)
        if transform is not None:
            factors["offset"] = transform.means.detach().clone()  # (1, m)
            factors["scale"] = transform.stdvs.detach().clone()
        return factors


def lean_posterior(model: LeanPosterior, X: torch.Tensor, factors: dict[str, torch.Tensor]) -> GPyTorchPosterior:
    """The posterior of ``model`` at ``X`` (``batch x q x d``) in the outcome's units, from its ``factors``."""
    several = model.num_outputs > 1
    if several:
        X = X.unsqueeze(-3)  # the outputs' batch dimension
    cross = model.lean_kernel(X, factors["x"])  # (batch, [m,] q, n)
    mean = factors["constant"] + (cross @ factors["weights"]).squeeze(-1)
    root = cross @ factors["inverse_factor_t"]
    covariance = model.lean_kernel(X, X) - root @ root.transpose(-1, -2)
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
