"""Competing failure modes: each mode's Weibull against lifelines with the other modes censored, the unit's
reliability and B-lives, recovery of a known truth, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from reflow.errors import DataError
from reflow.plugins.reliability.competing import CompetingModes
from reflow.testing import test_context


@pytest.fixture
def ctx(tmp_path):
    return test_context(tmp_path)


def _two_modes(n: int, seed: int, end: float = 2500.0):
    """Voids (Weibull 800, 0.8) and wear-out (Weibull 2000, 4) race; the first ends the unit's life."""
    rng = np.random.default_rng(seed)
    t1, t2 = 800 * rng.weibull(0.8, n), 2000 * rng.weibull(4.0, n)
    t = np.minimum(t1, t2)
    mode = np.where(t1 < t2, "void", "wearout")
    failed = t <= end
    ds = xr.Dataset({"cycles": ("sample", np.minimum(t, end)), "failed": ("sample", failed.astype(int)),
                     "failure_mode": ("sample", np.where(failed, mode, ""))})
    return ds, np.minimum(t, end), failed, mode


def test_each_mode_equals_lifelines_with_the_others_censored(ctx):
    from lifelines import WeibullFitter

    ds, t, failed, mode = _two_modes(100, seed=5)
    model = CompetingModes(mode="failure_mode", confidence=0.95).fit(ds, ctx)
    summary = model.summary()
    assert model.modes_ == ["void", "wearout"] or model.modes_ == ["wearout", "void"]
    for m in ("void", "wearout"):
        ref = WeibullFitter().fit(t, failed & (mode == m))  # lifelines: S(t) = exp(-(t / lambda_)^rho_)
        assert summary[f"{m}_eta"] == pytest.approx(ref.lambda_, rel=1e-5)
        assert summary[f"{m}_beta"] == pytest.approx(ref.rho_, rel=1e-5)
        assert summary[f"{m}_log_likelihood"] == pytest.approx(ref.log_likelihood_, rel=1e-7)
        se = np.sqrt(np.diag(ref.variance_matrix_.loc[["lambda_", "rho_"], ["lambda_", "rho_"]].values))
        z = 1.959963984540054
        got_se_eta = summary[f"{m}_eta"] * math.log(summary[f"{m}_eta_upper"] / summary[f"{m}_eta_lower"]) / (2 * z)
        assert got_se_eta == pytest.approx(se[0], rel=2e-3)
    assert summary["log_likelihood"] == pytest.approx(summary["void_log_likelihood"]
                                                      + summary["wearout_log_likelihood"], rel=1e-12)
    # the unit's B10: reliability of all modes together is 0.9 there
    b10 = summary["b10_cycles"]
    r = math.exp(-sum((b10 / summary[f"{m}_eta"]) ** summary[f"{m}_beta"] for m in ("void", "wearout")))
    assert r == pytest.approx(0.9, rel=1e-10)
    assert summary["b10_cycles_lower"] < b10 < summary["b10_cycles_upper"]
    assert b10 < min(summary[f"{m}_eta"] * (-math.log(0.9)) ** (1 / summary[f"{m}_beta"]) for m in ("void", "wearout"))


def test_recovers_the_modes_of_a_large_test(ctx, tmp_path):
    ds, *_ = _two_modes(4000, seed=2, end=1e9)
    model = CompetingModes(mode="failure_mode", confidence=0.95).fit(ds, ctx)
    s = model.summary()
    assert s["void_eta_lower"] < 800 < s["void_eta_upper"] and s["void_beta_lower"] < 0.8 < s["void_beta_upper"]
    assert s["wearout_eta_lower"] < 2000 < s["wearout_eta_upper"]
    assert s["wearout_beta_lower"] < 4 < s["wearout_beta_upper"]
    # true B10 of the race: sum of the modes' cumulative hazards = -ln 0.9
    from scipy.optimize import brentq

    true_b10 = brentq(lambda x: (x / 800) ** 0.8 + (x / 2000) ** 4 + math.log(0.9), 1e-6, 2000)
    assert s["b10_cycles_lower"] < true_b10 < s["b10_cycles_upper"]
    assert s["b10_cycles"] == pytest.approx(true_b10, rel=0.1)
    assert model.plot(tmp_path)[0].exists()
    model.save(tmp_path / "saved")
    again = CompetingModes.load(tmp_path / "saved")
    assert again.b_life(10) == pytest.approx(model.b_life(10), rel=1e-12)


def test_numeric_mode_codes_and_intervals(ctx):
    ds, t, failed, mode = _two_modes(200, seed=3)
    code = np.where(failed, np.where(mode == "void", 1.0, 2.0), np.nan)
    upper = np.where(failed, np.ceil(t / 100) * 100, np.inf)
    lower = np.where(failed, upper - 100, t)
    data = xr.Dataset({"lower": ("sample", lower), "upper": ("sample", upper), "mode": ("sample", code)})
    model = CompetingModes(lower="lower", upper="upper").fit(data, ctx)
    assert model.modes_ == ["1", "2"]
    exact = CompetingModes(mode="failure_mode").fit(ds, ctx).summary()
    s = model.summary()
    assert s["1_beta"] == pytest.approx(exact["void_beta"], rel=0.1)
    assert s["2_eta"] == pytest.approx(exact["wearout_eta"], rel=0.05)


def test_bad_input(ctx):
    ds, *_ = _two_modes(50, seed=1)
    ds["failure_mode"].values[np.flatnonzero(ds["failed"].values)[0]] = ""
    row = int(np.flatnonzero(ds["failed"].values)[0])
    with pytest.raises(DataError, match=rf"row {row} failed but its failure mode 'failure_mode' is empty"):
        CompetingModes(mode="failure_mode").fit(ds, ctx)
    with pytest.raises(DataError, match=r"no failure-mode variable 'mode'"):
        CompetingModes().fit(ds, ctx)
    one = xr.Dataset({"cycles": ("sample", [1.0, 2.0, 3.0, 4.0, 5.0]), "failed": ("sample", [1, 1, 1, 1, 1]),
                      "mode": ("sample", ["a", "a", "a", "a", "b"])})
    with pytest.raises(DataError, match=r"mode 'b'.*1 failure\(s\) among 5 units"):
        CompetingModes().fit(one, ctx)
    with pytest.raises(DataError, match=r"all 5 units are censored"):
        CompetingModes().fit(one.assign(failed=one["failed"] * 0), ctx)
