"""BoTorch's mixed-space GP kernel evaluated in one call instead of seven.

``MixedSingleTaskGP`` models continuous parameters ``x`` and categorical ones ``c`` with the kernel

    K = s_sum * (K_rbf1(x, x') + s_cat * K_cat1(c, c')) + s_prod * K_rbf2(x, x') * K_cat2(c, c')

built from seven GPyTorch modules (two ScaleKernels around an AdditiveKernel and a ProductKernel, each around
an RBF and a categorical kernel). On the small training sets of a Bayesian optimization the arithmetic is
trivial and GPyTorch's per-module overhead (lazy kernel tensors, batch-shape broadcasts, active-dimension
selection) is most of the time: on mixed-branin it made the GP fit and the acquisition search cost about as much
as Ax's whole step. :class:`FusedMixedKernel` keeps BoTorch's modules (their parameters, constraints, priors
and state-dict entries, so the fit and its warm start see the same hyperparameters) and evaluates the same
formula from their values in one forward. tests/plugins/test_optimize.py checks it against BoTorch's kernel.
"""

from __future__ import annotations

import torch
from botorch.models.kernels.categorical import CategoricalKernel
from gpytorch.kernels import AdditiveKernel, Kernel, ProductKernel, RBFKernel, ScaleKernel


class FusedMixedKernel(Kernel):
    """The covariance of a ``MixedSingleTaskGP`` (``covar``, with continuous and categorical parameters) in one
    forward; diagonal-only and last-dim-is-batch calls go to ``covar`` itself."""

    def __init__(self, covar: Kernel):
        super().__init__()
        try:
            total, product = covar.kernels
            rbf_sum, cat_scale = total.base_kernel.kernels
            rbf_prod, cat_prod = product.base_kernel.kernels
            botorchs = (isinstance(covar, AdditiveKernel) and isinstance(product.base_kernel, ProductKernel)
                        and all(isinstance(k, ScaleKernel) for k in (total, product, cat_scale))
                        and isinstance(rbf_sum, RBFKernel) and isinstance(rbf_prod, RBFKernel)
                        and isinstance(cat_scale.base_kernel, CategoricalKernel)
                        and isinstance(cat_prod, CategoricalKernel))
        except (AttributeError, ValueError):
            botorchs = False
        if not botorchs:
            raise TypeError(f"not the kernel of BoTorch's MixedSingleTaskGP: {type(covar).__name__}")
        self.covar = covar
        self._parts = (total, rbf_sum, cat_scale, product, rbf_prod, cat_prod)
        self._shape = covar.batch_shape

    @property
    def batch_shape(self) -> torch.Size:
        """Fixed at construction: GPyTorch would broadcast the seven modules' shapes again at every call."""
        return self._shape

    @batch_shape.setter
    def batch_shape(self, value: torch.Size) -> None:
        self._shape = value

    def forward(self, x1, x2, diag: bool = False, last_dim_is_batch: bool = False, **params):
        if diag or last_dim_is_batch:
            return self.covar(x1, x2, diag=diag, last_dim_is_batch=last_dim_is_batch, **params)
        total, rbf_sum, cat_scale, product, rbf_prod, cat_prod = self._parts
        ordinal, categorical_dims = rbf_sum.active_dims, cat_prod.active_dims
        xo1, xo2 = x1.index_select(-1, ordinal), x2.index_select(-1, ordinal)
        different = (x1.index_select(-1, categorical_dims).unsqueeze(-2)
                     != x2.index_select(-1, categorical_dims).unsqueeze(-3)).to(x1.dtype)

        def rbf(kernel):
            scale = kernel.lengthscale
            return kernel.covar_dist(xo1.div(scale), xo2.div(scale), square_dist=True).div(-2).exp()

        def categorical(kernel):
            return torch.exp(-(different / kernel.lengthscale.unsqueeze(-2)).mean(-1))

        def scale(kernel):
            return kernel.outputscale.view(*kernel.outputscale.shape, 1, 1)

        inner = rbf(rbf_sum) + scale(cat_scale) * categorical(cat_scale.base_kernel)
        return scale(total) * inner + scale(product) * rbf(rbf_prod) * categorical(cat_prod)
