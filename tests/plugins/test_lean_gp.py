"""The lean posterior: BoTorch's posterior and acquisition values to 1e-12, BoTorch's path where it does not apply."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("botorch")

from botorch.acquisition.logei import qLogNoisyExpectedImprovement  # noqa: E402
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement  # noqa: E402
from botorch.acquisition.objective import ScalarizedPosteriorTransform  # noqa: E402
from botorch.models import SingleTaskGP  # noqa: E402
from botorch.models.transforms import Standardize  # noqa: E402
from botorch.sampling import SobolQMCNormalSampler  # noqa: E402
from gpytorch.distributions import MultitaskMultivariateNormal  # noqa: E402
from reflow.plugins.optimize import lean_gp as lp  # noqa: E402
from reflow.plugins.optimize import marginal_likelihood as ml  # noqa: E402


def _pair(n: int = 20, d: int = 4, outputs: int = 1, seed: int = 0):
    """A LeanSingleTaskGP and a plain SingleTaskGP with the same data and hyperparameters, away from the priors'
    modes (where a wrong term would show), in eval mode."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.double)
    y = torch.stack([torch.sin(3 * x[:, 0] + k) * 5 + x[:, 1:].sum(-1) ** (k + 1) for k in range(outputs)], -1)
    lean = lp.LeanSingleTaskGP(x, y, outcome_transform=Standardize(outputs))
    with torch.no_grad():
        lean.covar_module.lengthscale = torch.rand(lean.covar_module.lengthscale.shape, generator=g,
                                                   dtype=torch.double) + 0.3
        lean.likelihood.noise = torch.full_like(lean.likelihood.noise, 0.02)
        lean.mean_module.constant.fill_(0.3)
    plain = SingleTaskGP(x, y, outcome_transform=Standardize(outputs))
    plain.load_state_dict(lean.state_dict())
    return lean.eval(), plain.eval(), x, y


def _mixed_pair(n: int = 20, outputs: int = 2, seed: int = 0):
    """The same for BoTorch's mixed GP (two continuous inputs, a categorical one with three levels) with the
    kernel reflow fits it with."""
    from botorch.models import MixedSingleTaskGP
    from reflow.plugins.optimize.mixed_kernel import FusedMixedKernel

    g = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.rand(n, 2, generator=g, dtype=torch.double),
                   torch.randint(0, 3, (n, 1), generator=g).double()], -1)
    y = torch.stack([torch.sin(3 * x[:, 0] + k) + x[:, 2] * (k + 1) for k in range(outputs)], -1)
    models = []
    for cls in (lp.LeanMixedSingleTaskGP, MixedSingleTaskGP):
        model = cls(x, y, cat_dims=[2], outcome_transform=Standardize(outputs))
        model.covar_module = FusedMixedKernel(model.covar_module)
        models.append(model)
    with torch.no_grad():
        for value in models[0].parameters():
            # the mixed GP's raw values are its hyperparameters (bounded in the fit): positive, away from the priors
            value.copy_(torch.rand(value.shape, generator=g, dtype=torch.double) + 0.2)
        models[0].likelihood.noise = torch.full_like(models[0].likelihood.noise, 0.05)
    models[1].load_state_dict(models[0].state_dict())
    return models[0].eval(), models[1].eval(), x, y


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("outputs", [1, 3])
@pytest.mark.parametrize("shape", [(5,), (7, 5), (2, 3, 4)])
def test_posterior_equals_botorchs(outputs: int, shape: tuple[int, ...]) -> None:
    lean, plain, *_ = _pair(outputs=outputs)
    X = torch.rand(*shape, 4, dtype=torch.double)
    a, b = lean.posterior(X), plain.posterior(X)
    assert type(a.distribution) is type(b.distribution)
    assert a.mean.shape == b.mean.shape == (*shape, outputs)
    _close(a.mean, b.mean)
    _close(a.variance, b.variance)
    _close(a.distribution.covariance_matrix, b.distribution.covariance_matrix)
    assert lean.__dict__["_lean_cache"][3] is not None, "the lean path was not taken"


@pytest.mark.parametrize("outputs", [1, 2])
def test_acquisition_values_and_gradients_equal_botorchs(outputs: int) -> None:
    """qLogNEI / qLogNEHVI with the cached root (which reads the posterior's block structure) and a pruned
    baseline: the same values and gradients with either model."""
    lean, plain, x, y = _pair(n=25, outputs=outputs, seed=1)
    X = torch.rand(16, 1, 4, dtype=torch.double)
    results = []
    for model in (lean, plain):
        torch.manual_seed(0)  # the pruning of the baseline draws its sampler's seed from torch's generator
        sampler = SobolQMCNormalSampler(torch.Size([128]), seed=3)
        if outputs == 1:
            acqf = qLogNoisyExpectedImprovement(model, X_baseline=x, sampler=sampler, prune_baseline=True,
                                                cache_root=True)
        else:
            acqf = qLogNoisyExpectedHypervolumeImprovement(
                model, ref_point=y.min(0).values.tolist(), X_baseline=x, sampler=sampler, prune_baseline=True,
                cache_root=True)
        Xr = X.clone().requires_grad_(True)
        value = acqf(Xr)
        (gradient,) = torch.autograd.grad(value.sum(), Xr)
        results.append((value.detach(), gradient))
    assert torch.isfinite(results[0][0]).all() and results[0][1].abs().sum() > 0
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("outputs", [1, 2])
def test_the_mixed_gps_posterior_and_acquisition_equal_botorchs(outputs: int) -> None:
    lean, plain, x, y = _mixed_pair(outputs=outputs)
    X = torch.cat([torch.rand(8, 1, 2, dtype=torch.double), torch.randint(0, 3, (8, 1, 1)).double()], -1)
    a, b = lean.posterior(X), plain.posterior(X)
    assert type(a.distribution) is type(b.distribution)
    _close(a.mean, b.mean)
    _close(a.variance, b.variance)
    assert lean.__dict__["_lean_cache"][3] is not None, "the lean path was not taken"
    values = []
    for model in (lean, plain):
        torch.manual_seed(0)
        sampler = SobolQMCNormalSampler(torch.Size([64]), seed=3)
        if outputs == 1:
            acqf = qLogNoisyExpectedImprovement(model, X_baseline=x, sampler=sampler, cache_root=True)
        else:
            acqf = qLogNoisyExpectedHypervolumeImprovement(model, ref_point=y.min(0).values.tolist(),
                                                           X_baseline=x, sampler=sampler, cache_root=True)
        Xr = X.clone().requires_grad_(True)
        value = acqf(Xr)
        values.append((value.detach(), torch.autograd.grad(value.sum(), Xr)[0]))
    torch.testing.assert_close(values[0][0], values[1][0], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(values[0][1], values[1][1], rtol=1e-8, atol=1e-10)


def test_large_kernels_take_the_inner_products_with_the_same_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above ``DIFFERENCES_LIMIT`` the squared distances come from inner products (no tensor of differences):
    the same kernel to 1e-12, an exact diagonal where the inputs are the same tensor, and the same posterior."""
    g = torch.Generator().manual_seed(5)
    z1, z2 = (torch.randn(3, 2, n, 4, generator=g, dtype=torch.double) for n in (7, 9))
    small = [lp.rbf(z1, z2), lp.rbf(z1, z1)]
    lean, plain, *_ = _pair(outputs=2)
    X = torch.rand(6, 3, 4, dtype=torch.double)
    monkeypatch.setattr(lp, "DIFFERENCES_LIMIT", 10)
    large = [lp.rbf(z1, z2), lp.rbf(z1, z1)]
    for a, b in zip(small, large, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert torch.equal(torch.diagonal(large[1], dim1=-2, dim2=-1), torch.ones(3, 2, 7, dtype=torch.double))
    _close(lean.posterior(X).mean, plain.posterior(X).mean)
    _close(lean.posterior(X).variance, plain.posterior(X).variance)


def test_a_posterior_transform_is_applied() -> None:
    lean, plain, *_ = _pair(outputs=2)
    transform = ScalarizedPosteriorTransform(weights=torch.tensor([0.7, -1.5], dtype=torch.double))
    X = torch.rand(6, 3, 4, dtype=torch.double)
    a, b = lean.posterior(X, posterior_transform=transform), plain.posterior(X, posterior_transform=transform)
    _close(a.mean, b.mean)
    _close(a.variance, b.variance)


def _count_lean_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = lp.lean_posterior
    monkeypatch.setattr(lp, "lean_posterior", lambda *a: calls.append(1) or real(*a))
    return calls


def test_other_calls_take_botorchs_path(monkeypatch: pytest.MonkeyPatch) -> None:
    lean, plain, *_ = _pair(outputs=2)
    calls = _count_lean_calls(monkeypatch)
    X = torch.rand(3, 4, dtype=torch.double)
    for kwargs in ({"observation_noise": True}, {"output_indices": [1, 0]}):
        _close(lean.posterior(X, **kwargs).variance, plain.posterior(X, **kwargs).variance)
    assert calls == [], "the lean path ran where it does not apply"
    lean.train()
    assert lean._lean_factors() is None  # training mode: GPyTorch's prior, not a posterior
    lean.eval()
    lean.posterior(X)
    assert calls == [1]


def test_a_model_conditioned_on_more_data_is_not_served_stale_factors() -> None:
    lean, plain, *_ = _pair(outputs=2)
    X = torch.rand(3, 4, dtype=torch.double)
    lean.posterior(X)  # caches the factors of the 20 trials (and builds none of GPyTorch's caches)
    plain.posterior(X)  # GPyTorch's conditioning needs its prediction caches: BoTorch's model must predict first
    Y = torch.rand(3, 2, dtype=torch.double) * 4
    a = lean.condition_on_observations(X, Y).posterior(X)
    b = plain.condition_on_observations(X, Y).posterior(X)
    _close(a.mean, b.mean)
    _close(a.variance, b.variance)
    assert not torch.allclose(a.mean, lean.posterior(X).mean)


def test_a_batch_of_models_takes_botorchs_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _count_lean_calls(monkeypatch)
    x = torch.rand(2, 10, 3, dtype=torch.double)
    model = lp.LeanSingleTaskGP(x, x.sum(-1, keepdim=True)).eval()
    assert model._lean_factors() is None
    assert model.posterior(torch.rand(2, 4, 3, dtype=torch.double)).mean.shape == (2, 4, 1)
    assert calls == []


def test_a_covariance_that_does_not_factorize_takes_botorchs_path(monkeypatch: pytest.MonkeyPatch,
                                                                  fail_next_cholesky) -> None:
    """Where the Cholesky factorization fails, GPyTorch adds jitter (and warns): the lean posterior hands over."""
    lean, plain, *_ = _pair(outputs=2)
    calls = _count_lean_calls(monkeypatch)
    X = torch.rand(4, 4, dtype=torch.double)
    failed = fail_next_cholesky()
    _close(lean.posterior(X).mean, plain.posterior(X).mean)
    assert failed == [1] and calls == []


def test_changed_hyperparameters_are_seen() -> None:
    """The factors are cached per fitted model; a change of the hyperparameters refreshes them (GPyTorch's
    own caches would not: a model with the new values from the start is the reference)."""
    lean, plain, x, y = _pair(outputs=1)
    X = torch.rand(5, 4, dtype=torch.double)
    _close(lean.posterior(X).mean, plain.posterior(X).mean)
    with torch.no_grad():
        lean.covar_module.lengthscale = lean.covar_module.lengthscale * 1.7
    plain = SingleTaskGP(x, y, outcome_transform=Standardize(1))
    plain.load_state_dict(lean.state_dict())
    plain.eval()
    assert not torch.allclose(lean.posterior(X).mean, _pair(outputs=1)[0].posterior(X).mean)
    _close(lean.posterior(X).mean, plain.posterior(X).mean)
    _close(lean.posterior(X).variance, plain.posterior(X).variance)


def test_lean_likelihood_still_applies_to_the_lean_model() -> None:
    lean, *_ = _pair(outputs=2)
    assert ml.lean_applies(lean)
    assert isinstance(lean.posterior(torch.rand(3, 4, dtype=torch.double)).distribution,
                      MultitaskMultivariateNormal)


def test_a_lean_model_must_name_its_kernel() -> None:
    class NoKernel(lp.LeanPosterior, SingleTaskGP):
        pass

    x = torch.rand(5, 2, dtype=torch.double)
    with pytest.raises(TypeError, match="lean_kernel"):
        NoKernel(x, x.sum(-1, keepdim=True))


def test_the_optimizers_model_is_the_lean_one() -> None:
    import numpy as np
    from reflow.plugins.optimize import bayes
    from reflow.problem import Objective, OptimizationProblem
    from reflow.space import ParameterSpec, Space

    space = Space.from_specs({k: ParameterSpec(low=0, high=1) for k in "ab"})
    opt = bayes.QNEHVI()
    opt.setup(OptimizationProblem(space, [Objective("f", "min"), Objective("g", "min")]), 0)
    x = np.random.default_rng(0).random((10, 2))
    model = opt.fit(x, np.column_stack([(x ** 2).sum(1), np.cos(3 * x[:, 0])]))
    assert type(model) is lp.LeanSingleTaskGP
    assert model._lean_factors() is not None
