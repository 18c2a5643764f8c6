"""The exact marginal log likelihood of BoTorch's default GP in a few plain torch operations, for its fit.

Fitting the GP's hyperparameters is a third of a Bayesian ask on small problems (Hartmann6, 30 evaluations:
0.08 of 0.23 s per step, benchmarks/ask_breakdown.py), and almost all of it is GPyTorch's per-call overhead:
its lazily evaluated kernel, linear operators and prior distributions wrap a 30 x 30 Cholesky factorization in
hundreds of Python calls. :class:`LeanExactMLL` is GPyTorch's ``ExactMarginalLogLikelihood`` with BoTorch's
documented hook for a custom loss (``compute_custom_loss``, found by ``botorch.optim.closures.get_loss_closure``),
which computes the same value, per output of a batched model, from the same parameters:

    -(log N(y | c, K + s I) + log p(hyperparameters)) / n,    K = k(X, X) (lean_gp.py's kernel)

so BoTorch's fit (its bounds, L-BFGS-B, the independent fit of a batched model's outputs, its retries) is
unchanged and only the arithmetic behind each evaluation is leaner (value and gradient equal GPyTorch's to
about 1e-12; tests/plugins/test_marginal_likelihood.py). It applies to the models of lean_gp.py with BoTorch's
default modules (``SingleTaskGP``'s ARD RBF kernel, or ``MixedSingleTaskGP``'s kernel fused; a constant mean,
homoskedastic Gaussian noise, no input transform); any other model, and any evaluation whose covariance is not
numerically positive definite (where GPyTorch adds jitter and warns), takes GPyTorch's own path. Imported by
the fit only (it imports torch).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import LogNormalPrior

from .lean_gp import LeanPosterior

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
LOG_SQRT_2PI = math.log(math.sqrt(2 * math.pi))  # torch.distributions.Normal's constant, bit for bit


def exact_mll(model) -> ExactMarginalLogLikelihood:
    """The exact marginal log likelihood of ``model`` for ``fit_gpytorch_mll``: :class:`LeanExactMLL` where its
    lean path applies (:func:`lean_applies`), else GPyTorch's ``ExactMarginalLogLikelihood``."""
    cls = LeanExactMLL if lean_applies(model) else ExactMarginalLogLikelihood
    return cls(model.likelihood, model)


def lean_applies(model) -> bool:
    """Whether :func:`lean_loss` computes ``model``'s likelihood exactly: a model of lean_gp.py (BoTorch's
    ``SingleTaskGP`` or ``MixedSingleTaskGP``) whose modules are the defaults its lean formulas compute."""
    return isinstance(model, LeanPosterior) and model.lean_applies()


class LeanExactMLL(ExactMarginalLogLikelihood):
    """GPyTorch's ``ExactMarginalLogLikelihood`` whose loss, in BoTorch's fit, is :func:`lean_loss`."""

    def compute_custom_loss(self, **kwargs: Any) -> torch.Tensor:
        return lean_loss(self)


def lean_loss(mll: ExactMarginalLogLikelihood) -> torch.Tensor:
    """The negative exact marginal log likelihood per datum of ``mll.model`` (one value per output of a batched
    model), in training mode, as BoTorch's loss closure returns it; GPyTorch's computation where the covariance
    cannot be factorized as it is."""
    model = mll.model
    x, y = model.train_inputs[0], model.train_targets
    n = y.shape[-1]
    covariance = model.lean_kernel(x, x)
    noise = model.likelihood.noise
    covariance = covariance + torch.diag_embed(noise.expand(*noise.shape[:-1], n))
    factor, info = torch.linalg.cholesky_ex(covariance)
    if bool(info.any()):  # not positive definite: GPyTorch's own computation, with its jitter and warnings
        return -mll(model(*model.train_inputs), y, *model.train_inputs)
    residual = (y - model.mean_module.constant.unsqueeze(-1)).unsqueeze(-1)
    white = torch.linalg.solve_triangular(factor, residual, upper=False)
    log_det = torch.log(torch.diagonal(factor, dim1=-2, dim2=-1)).sum(-1)
    log_likelihood = -0.5 * white.pow(2).sum((-1, -2)) - log_det - n * HALF_LOG_2PI
    for _, module, prior, closure, _ in model.named_priors():
        value = closure(module)
        if type(prior) is LogNormalPrior:  # torch.distributions' log_prob, its operations in its order, unchecked
            log_value = torch.log(value)  # (its loc and scale may be single precision: scale**2 is taken in it)
            term = -log_value + (-((log_value - prior.loc) ** 2) / (2 * prior.scale ** 2) - prior.scale.log()
                                 - LOG_SQRT_2PI)
        else:
            term = prior.log_prob(value)
        log_likelihood = log_likelihood + term.reshape(*term.shape[:log_likelihood.ndim], -1).sum(-1)
    return -log_likelihood / n
