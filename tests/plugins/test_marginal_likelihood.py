"""The lean exact marginal likelihood: GPyTorch's value and gradient, BoTorch's fit, and the models it leaves alone."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("botorch")

from botorch.fit import fit_gpytorch_mll  # noqa: E402
from botorch.models import MixedSingleTaskGP, SingleTaskGP  # noqa: E402
from botorch.models.transforms import Normalize, Standardize  # noqa: E402
from gpytorch.kernels import MaternKernel  # noqa: E402
from gpytorch.mlls import ExactMarginalLogLikelihood  # noqa: E402
from reflow.plugins.optimize import marginal_likelihood as ml  # noqa: E402
from reflow.plugins.optimize.lean_gp import LeanMixedSingleTaskGP, LeanSingleTaskGP  # noqa: E402


def _model(n: int = 20, d: int = 4, outputs: int = 1, seed: int = 0) -> LeanSingleTaskGP:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.double)
    y = torch.stack([torch.sin(3 * x[:, 0] + k) + x[:, 1:].sum(-1) ** (k + 1) for k in range(outputs)], -1)
    return LeanSingleTaskGP(x, y, outcome_transform=Standardize(outputs))


def _gpytorch_loss(mll):
    model = mll.model
    return -ExactMarginalLogLikelihood.forward(mll, model(*model.train_inputs), model.train_targets,
                                               *model.train_inputs)


@pytest.mark.parametrize("outputs", [1, 3])
def test_value_and_gradient_equal_gpytorchs_away_from_the_defaults(outputs: int) -> None:
    model = _model(outputs=outputs)
    with torch.no_grad():  # hyperparameters where a wrong term would show: not the priors' modes
        model.covar_module.lengthscale = torch.rand_like(model.covar_module.lengthscale) + 0.2
        model.likelihood.noise = torch.full_like(model.likelihood.noise, 0.03)
        model.mean_module.constant.fill_(0.4)
    mll = ml.exact_mll(model).train()
    assert isinstance(mll, ml.LeanExactMLL)
    params = [p for p in mll.parameters() if p.requires_grad]
    lean = ml.lean_loss(mll)
    reference = _gpytorch_loss(mll)
    assert lean.shape == reference.shape == ((outputs,) if outputs > 1 else ())
    torch.testing.assert_close(lean, reference, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(lean.sum(), params), torch.autograd.grad(reference.sum(), params),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("outputs", [1, 2])
def test_the_mixed_gps_value_and_gradient_equal_gpytorchs(outputs: int) -> None:
    from reflow.plugins.optimize.mixed_kernel import FusedMixedKernel

    g = torch.Generator().manual_seed(2)
    x = torch.cat([torch.rand(15, 2, generator=g, dtype=torch.double),
                   torch.randint(0, 3, (15, 1), generator=g).double()], -1)
    y = torch.stack([torch.cos(4 * x[:, 1] + k) + x[:, 2] for k in range(outputs)], -1)
    model = LeanMixedSingleTaskGP(x, y, cat_dims=[2], outcome_transform=Standardize(outputs))
    model.covar_module = FusedMixedKernel(model.covar_module)
    with torch.no_grad():
        for value in model.parameters():
            # the mixed GP's raw values are its hyperparameters (bounded in the fit): positive, away from the priors
            value.copy_(torch.rand(value.shape, generator=g, dtype=torch.double) + 0.2)
        model.likelihood.noise = torch.full_like(model.likelihood.noise, 0.05)
    mll = ml.exact_mll(model).train()
    assert isinstance(mll, ml.LeanExactMLL)
    params = [p for p in mll.parameters() if p.requires_grad]
    lean, reference = ml.lean_loss(mll), _gpytorch_loss(mll)
    torch.testing.assert_close(lean, reference, rtol=1e-12, atol=1e-12)
    for a, b in zip(torch.autograd.grad(lean.sum(), params), torch.autograd.grad(reference.sum(), params),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("outputs", [1, 2])
def test_botorchs_fit_through_the_lean_loss_reaches_the_same_hyperparameters(outputs: int) -> None:
    fitted = []
    for lean in (False, True):
        model = _model(n=25, d=3, outputs=outputs, seed=1)
        mll = ml.exact_mll(model) if lean else ExactMarginalLogLikelihood(model.likelihood, model)
        fit_gpytorch_mll(mll)
        fitted.append(torch.cat([model.covar_module.lengthscale.detach().flatten(),
                                 model.likelihood.noise.detach().flatten(),
                                 model.mean_module.constant.detach().flatten()]))
    # L-BFGS-B stops where its tolerances say: the same optimum to a few parts in a thousand
    torch.testing.assert_close(fitted[1], fitted[0], rtol=5e-3, atol=1e-5)


def test_other_models_keep_gpytorchs_likelihood() -> None:
    x = torch.rand(12, 3, dtype=torch.double)
    y = x.sum(-1, keepdim=True)
    matern = LeanSingleTaskGP(x, y, covar_module=MaternKernel(ard_num_dims=3))
    normalized = LeanSingleTaskGP(x * 10, y, input_transform=Normalize(3))
    categorical = torch.cat([x, torch.randint(0, 3, (12, 1)).double()], -1)
    unfused = LeanMixedSingleTaskGP(categorical, y, cat_dims=[3])  # BoTorch's kernel of seven modules
    for model in (matern, normalized, unfused, SingleTaskGP(x, y), MixedSingleTaskGP(categorical, y, cat_dims=[3])):
        assert not ml.lean_applies(model)
        assert type(ml.exact_mll(model)) is ExactMarginalLogLikelihood
    assert ml.lean_applies(_model())


def test_a_covariance_that_does_not_factorize_takes_gpytorchs_path(fail_next_cholesky) -> None:
    """Where the Cholesky factorization fails, GPyTorch adds jitter (and warns): the lean loss hands over."""
    mll = ml.exact_mll(_model()).train()
    expected = _gpytorch_loss(mll)
    failed = fail_next_cholesky()
    torch.testing.assert_close(ml.lean_loss(mll), expected, rtol=1e-12, atol=1e-12)
    assert failed == [1]


def test_the_optimizers_fit_uses_the_lean_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np
    from reflow.plugins.optimize import bayes
    from reflow.problem import Objective, OptimizationProblem
    from reflow.space import ParameterSpec, Space

    calls = []
    real = ml.lean_loss
    monkeypatch.setattr(ml, "lean_loss", lambda mll: calls.append(1) or real(mll))
    space = Space.from_specs({k: ParameterSpec(low=0, high=1) for k in "ab"})
    opt = bayes.QNEHVI()
    opt.setup(OptimizationProblem(space, [Objective("f", "min"), Objective("g", "min")]), 0)
    x = np.random.default_rng(0).random((10, 2))
    model = opt.fit(x, np.column_stack([(x ** 2).sum(1), np.cos(3 * x[:, 0])]))
    assert calls, "the fit did not go through the lean loss"
    assert model.covar_module.lengthscale.shape == (2, 1, 2)
