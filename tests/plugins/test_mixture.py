"""The two-subpopulation Weibull mixture against the `reliability` library's published Fit_Weibull_Mixture
examples, its bounds and B-lives, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from reflow.errors import DataError
from reflow.plugins.reliability.mixture import WeibullMixture, WeibullMixtureDist
from reflow.testing import test_context


@pytest.fixture
def ctx(tmp_path):
    return test_context(tmp_path)


def _weibull_samples(alpha: float, beta: float, n: int, seed: int) -> np.ndarray:
    """reliability's Weibull_Distribution(alpha, beta).random_samples(n, seed): np.random.seed(seed), then
    scipy.stats.weibull_min.rvs(beta, scale=alpha, size=n) (reliability/Distributions.py)."""
    from scipy import stats

    np.random.seed(seed)
    return stats.weibull_min.rvs(beta, scale=alpha, size=n)


def _life(t, failed=None) -> xr.Dataset:
    t = np.asarray(t, dtype=float)
    failed = np.ones(t.size) if failed is None else np.asarray(failed)
    return xr.Dataset({"cycles": ("sample", t), "failed": ("sample", failed.astype(int))})


def test_equals_reliability_fit_weibull_mixture_example_2(ctx):
    """reliability docs, "Mixture models", Example 2: 40 units Weibull(10, 3) and 60 Weibull(40, 4), seed 2.
    Printed (95 % CI): alpha1 8.65511 (7.91663-9.46248), beta1 3.91197 (3.03021-5.0503), alpha2 38.1103
    (35.4431-40.9781), beta2 3.82192 (3.07916-4.74385), proportion 0.388491 (0.295595-0.490263);
    log-likelihood -375.991, AICc 762.619, BIC 775.007."""
    t = np.hstack([_weibull_samples(10, 3, 40, 2), _weibull_samples(40, 4, 60, 2)])
    model = WeibullMixture(confidence=0.95).fit(_life(t), ctx)
    pb = model.parameter_bounds()
    for name, ref in (("eta1", (8.65511, 7.91663, 9.46248)), ("beta1", (3.91197, 3.03021, 5.0503)),
                      ("eta2", (38.1103, 35.4431, 40.9781)), ("beta2", (3.82192, 3.07916, 4.74385)),
                      ("proportion", (0.388491, 0.295595, 0.490263))):
        assert pb[name][0] == pytest.approx(ref[0], rel=1e-4), name
        # bounds: the same observed information (theirs by autograd, ours by differences): to 1e-3
        assert pb[name][1] == pytest.approx(ref[1], rel=1e-3), name
        assert pb[name][2] == pytest.approx(ref[2], rel=1e-3), name
    summary = model.summary()
    assert summary["log_likelihood"] == pytest.approx(-375.991, rel=1e-5)
    assert summary["aicc"] == pytest.approx(762.619, rel=1e-5)
    assert summary["bic"] == pytest.approx(775.007, rel=1e-5)
    # the B-life is where the mixture's cdf reaches the fraction
    b10 = summary["b10_cycles"]
    assert float(WeibullMixtureDist(model.x_).cdf(np.array([b10]))[0]) == pytest.approx(0.1, rel=1e-9)
    assert summary["b10_cycles_lower"] < b10 < summary["b10_cycles_upper"]
    assert summary["bic"] < summary["single_weibull_bic"]  # the bend is real


def test_equals_reliability_mixture_with_right_censoring_example_3(ctx):
    """reliability docs, "Mixture models", Example 3: 700 units Weibull(10, 2) and 300 Weibull(30, 3) (seed 2),
    right-censored at 30 (make_right_censored_data, threshold: above it suspended at it). Printed:
    Weibull_Mixture BIC 6431.578404076784, Weibull_2P BIC 6511.511759597337."""
    t = np.hstack([_weibull_samples(10, 2, 700, 2), _weibull_samples(30, 3, 300, 2)])
    failed = t <= 30
    model = WeibullMixture().fit(_life(np.where(failed, t, 30.0), failed), ctx)
    summary = model.summary()
    assert summary["bic"] == pytest.approx(6431.578404076784, rel=1e-6)
    assert summary["single_weibull_bic"] == pytest.approx(6511.511759597337, rel=1e-6)
    assert summary["failures"] == int(failed.sum())


def test_interval_data_and_plot(ctx, tmp_path):
    t = np.hstack([_weibull_samples(300, 1.2, 30, 4), _weibull_samples(3000, 5, 70, 5)])
    step = 100.0
    upper = np.ceil(t / step) * step
    ds = xr.Dataset({"lower": ("sample", upper - step), "upper": ("sample", upper)})
    model = WeibullMixture(lower="lower", upper="upper").fit(ds, ctx)
    pb = model.parameter_bounds()
    assert pb["eta1"][0] < pb["eta2"][0]  # component 1 is the early one
    assert pb["proportion"][1] < 0.3 < pb["proportion"][2]
    assert pb["eta2"][1] < 3000 < pb["eta2"][2]
    path = model.plot(tmp_path)[0]
    assert path.exists()
    model.save(tmp_path / "saved")
    again = WeibullMixture.load(tmp_path / "saved")
    assert again.b_life(10)[0] == pytest.approx(model.b_life(10)[0], rel=1e-12)
    assert math.isfinite(again.summary()["b10_cycles_lower"])


def test_bad_input(ctx):
    with pytest.raises(DataError, match=r"all 20 units are censored"):
        WeibullMixture().fit(_life(np.arange(1.0, 21.0), np.zeros(20)), ctx)
    with pytest.raises(DataError, match=r"4 failure\(s\) among 20 units.*5 parameters"):
        WeibullMixture().fit(_life(np.arange(1.0, 21.0), np.r_[np.ones(4), np.zeros(16)]), ctx)
    with pytest.raises(DataError, match=r"fewer than 4 distinct times"):
        WeibullMixture().fit(_life(np.r_[np.full(6, 5.0), np.full(6, 9.0)]), ctx)
    with pytest.raises(DataError, match=r"row 2.*'lower' = 9 is above 'upper' = 3"):
        WeibullMixture(lower="lower", upper="upper").fit(
            xr.Dataset({"lower": ("sample", [1.0, 2.0, 9.0]), "upper": ("sample", [2.0, 3.0, 3.0])}), ctx)
