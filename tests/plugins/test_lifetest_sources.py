"""Synthetic readout and multi-stress (ALT) life-test sources: what they generate matches their documented ground
truth, fits recover it, they are seeded, and bad params are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError
from reflow.plugins.reliability.alt import BOLTZMANN_EV, LifeStress
from reflow.plugins.reliability.censoring import Censored
from reflow.plugins.reliability.distributions import fit_distribution
from reflow.plugins.reliability.lifetest import SyntheticAltTest, SyntheticReadoutTest
from reflow.testing import test_context


@pytest.fixture
def ctx(tmp_path):
    return test_context(tmp_path, seed=12)


# ---- readout test ---------------------------------------------------------------------------------------------
def test_readout_intervals_hold_the_true_lives(ctx):
    ds = SyntheticReadoutTest(units=300, shape=2.5, scale=1500, readout_every=250, test_cycles=2000).load(ctx)
    lo, up, life = ds["lower"].values, ds["upper"].values, ds["true_cycles"].values
    failed = ds["failed"].values == 1
    assert np.all(lo[failed] < life[failed]) and np.all(life[failed] <= up[failed])
    assert np.all(np.isin(np.r_[lo, up[failed]], np.arange(0, 2001, 250)))
    assert np.all(up[failed] - lo[failed] == 250)
    assert np.all(np.isinf(up[~failed])) and np.all(lo[~failed] == 2000) and np.all(life[~failed] > 2000)
    assert (lo == 0).any()  # failed before the first readout: left-censored
    assert ds.attrs["true_b10"] == pytest.approx(1500 * (-math.log(0.9)) ** (1 / 2.5), rel=1e-12)
    assert (ds.attrs["true_shape"], ds.attrs["true_scale"], ds.attrs["readout_every"]) == (2.5, 1500, 250)
    again = SyntheticReadoutTest(units=300, shape=2.5, scale=1500, readout_every=250, test_cycles=2000).load(
        test_context(ctx.folder, seed=12))
    np.testing.assert_array_equal(again["true_cycles"].values, life)  # seeded


def test_interval_fit_recovers_the_truth(ctx):
    ds = SyntheticReadoutTest(units=2000, shape=3.0, scale=2000, readout_every=500, test_cycles=3000).load(ctx)
    fit = fit_distribution("weibull", Censored.from_bounds(ds["lower"].values, ds["upper"].values))
    eta, beta = fit.params
    se = np.sqrt(np.diag(fit.cov))  # on (ln eta, ln beta)
    assert abs(math.log(eta / 2000)) < 3 * se[0]
    assert abs(math.log(beta / 3.0)) < 3 * se[1]


def test_readings_layout_crosses_the_threshold_at_the_true_life(ctx):
    p = {"units": 40, "shape": 2.0, "scale": 1500, "readout_every": 250, "test_cycles": 2500}
    readings = SyntheticReadoutTest(**p, layout="readings", threshold=0.2, path_exponent=1.5).load(ctx)
    units = SyntheticReadoutTest(**p).load(test_context(ctx.folder, seed=12))
    assert readings.sizes["reading"] == 40 * 11
    unit, t, d = readings["unit"].values, readings["cycles"].values, readings["degradation"].values
    life = readings["true_cycles"].values
    np.testing.assert_allclose(d, 0.2 * (t / life) ** 1.5, rtol=1e-12)  # noise 0: the documented path
    np.testing.assert_array_equal(life[::11], units["true_cycles"].values)  # same draws as the units layout
    for u in range(40):
        mine = unit == u
        past = t[mine][d[mine] > 0.2]
        if past.size:  # the first readout past the threshold is the interval's upper end
            assert past[0] == units["upper"].values[u]
        else:
            assert np.isinf(units["upper"].values[u])
    noisy = SyntheticReadoutTest(**p, layout="readings", path_exponent=1.5, noise=0.01).load(
        test_context(ctx.folder, seed=12))
    assert 0.005 < np.std(noisy["degradation"].values - d) < 0.02


def test_readout_params_are_checked():
    with pytest.raises(ValidationError, match="readout_every .* longer than the test"):
        SyntheticReadoutTest(readout_every=5000, test_cycles=3000)
    with pytest.raises(ValidationError):
        SyntheticReadoutTest(shape=0)


# ---- multi-stress (ALT) test ------------------------------------------------------------------------------------
def test_alt_source_follows_its_documented_law(ctx):
    src = SyntheticAltTest(levels={"temperature": [358, 378, 398]}, reference={"temperature": 328},
                           reference_scale=50000, shape=2.0, activation_energy_ev=0.7, units_per_condition=4000)
    ds = src.load(ctx)
    a = 0.7 / BOLTZMANN_EV
    assert ds.attrs["true_a"] == pytest.approx(a, rel=1e-12)
    assert ds.attrs["true_b"] == pytest.approx(50000 * math.exp(-a / 328), rel=1e-12)  # L = b exp(a / T)
    assert ds.attrs["true_b10_reference"] == pytest.approx(50000 * (-math.log(0.9)) ** 0.5, rel=1e-12)
    for temp in (358, 378, 398):
        t = ds["cycles"].values[ds["temperature_k"].values == temp]
        eta = 50000 * math.exp(a * (1 / temp - 1 / 328))
        # the 63.2 % quantile of a Weibull is its scale
        assert np.quantile(t, 1 - math.exp(-1)) == pytest.approx(eta, rel=0.05)
    assert ds["failed"].values.all()  # no test_cycles: run to failure


@pytest.mark.parametrize("relationship,levels,reference", [
    ("eyring", {"temperature": [358, 398]}, {"temperature": 328}),
    ("coffin-manson", {"delta_t": [100, 165]}, {"delta_t": 60}),
    ("peck", {"humidity": [85, 85, 60], "temperature": [358, 388, 388]}, {"humidity": 40, "temperature": 313}),
])
def test_true_coefficients_reproduce_the_scale(relationship, levels, reference):
    src = SyntheticAltTest(relationship=relationship, levels=levels, reference=reference, reference_scale=1e4,
                           exponent=-2.5, activation_energy_ev=0.6)
    coef = src.true_coefficients()
    stress = {r: np.asarray(v, float) for r, v in levels.items()}
    if relationship == "eyring":  # (1 / T) exp(-(c - a / T))
        law = np.exp(-(coef["c"] - coef["a"] / stress["temperature"])) / stress["temperature"]
    elif relationship == "coffin-manson":  # a dT^n
        law = coef["a"] * stress["delta_t"] ** coef["n"]
    else:  # A RH^n exp(a / T)
        law = coef["A"] * stress["humidity"] ** coef["n"] * np.exp(coef["a"] / stress["temperature"])
    np.testing.assert_allclose(src.scale_at(stress), law, rtol=1e-10)
    assert src.scale_at({r: np.array([v]) for r, v in reference.items()})[0] == pytest.approx(1e4, rel=1e-12)


def test_alt_fit_recovers_the_truth_from_a_censored_lognormal_test(ctx):
    src = SyntheticAltTest(relationship="coffin-manson", distribution="lognormal", levels={"delta_t": [100, 140, 180]},
                           reference={"delta_t": 60}, reference_scale=20000, shape=0.5, exponent=-2.0,
                           units_per_condition=80, test_cycles=6000)
    ds = src.load(ctx)
    assert 0 < ds["failed"].sum() < ds.sizes["sample"]  # some suspended at 6000
    model = LifeStress(relationship="coffin-manson", distribution="lognormal", use={"delta_t_k": 60}).fit(ds, ctx)
    coef, summary = model.coefficients(), model.summary()
    assert coef["n"][1] < -2.0 < coef["n"][2]
    assert coef["sigma"][1] < 0.5 < coef["sigma"][2]
    assert summary["use_b10_cycles_lower"] < ds.attrs["true_b10_reference"] < summary["use_b10_cycles_upper"]


def test_alt_readouts_and_bad_params(ctx):
    ds = SyntheticAltTest(units_per_condition=30, test_cycles=20000, readout_every=1000).load(ctx)
    lo, up = ds["lower"].values, ds["upper"].values
    failed = ds["failed"].values == 1
    assert np.all(up[failed] - lo[failed] == 1000) and np.all(np.isinf(up[~failed]))
    with pytest.raises(ValidationError, match="arrhenius needs levels for temperature"):
        SyntheticAltTest(levels={"delta_t": [100, 150]})
    with pytest.raises(ValidationError, match="at least 2"):
        SyntheticAltTest(levels={"temperature": [358]})
    with pytest.raises(ValidationError, match="must be > 0"):
        SyntheticAltTest(levels={"temperature": [358, -10]})
    with pytest.raises(ValidationError, match="readout_every needs test_cycles"):
        SyntheticAltTest(readout_every=100)
