"""The life-stress (ALT) model against the `reliability` library's published examples, its Fisher bounds, the
common-shape test, recovery of a synthetic ALT's truth, bad input, and the model as a study's evaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from reflow.errors import DataError
from reflow.plugins.reliability.alt import LifeStress
from reflow.plugins.reliability.censoring import Censored, log_likelihood
from reflow.plugins.reliability.lifetest import SyntheticAltTest
from reflow.plugins.reliability.loglinear import LogLocationScale, frozen
from reflow.testing import test_context

# reliability.Datasets.ALT_temperature (M. Modarres, U. of Maryland; MatthewReid854/reliability, Datasets.py):
# 35 failures and 102 units suspended at 5000, at "temperatures" 40, 60, 80 (used as given, as in its docs).
ALT_TEMPERATURE_FAILURES = [
    (1298, 40), (1390, 40), (3187, 40), (3241, 40), (3261, 40), (3313, 40), (4501, 40), (4568, 40), (4841, 40),
    (4982, 40), (581, 60), (925, 60), (1432, 60), (1586, 60), (2452, 60), (2734, 60), (2772, 60), (4106, 60),
    (4674, 60), (283, 80), (361, 80), (515, 80), (638, 80), (854, 80), (1024, 80), (1030, 80), (1045, 80),
    (1767, 80), (1777, 80), (1856, 80), (1951, 80), (1964, 80), (1951, 80), (1964, 80), (2884, 80)]
ALT_TEMPERATURE_SUSPENDED = {40: 90, 60: 11, 80: 1}  # units still running at 5000

# reliability.Datasets.ALT_load2: 13 failures, 5 suspensions, at loads 100, 200, 300.
ALT_LOAD2 = ([245, 312, 409, 110, 180, 200, 222, 50, 70, 88, 112, 140, 160],
             [100, 100, 100, 200, 200, 200, 200, 300, 300, 300, 300, 300, 300],
             [500, 500, 500, 250, 250], [100, 100, 100, 200, 200])

# reliability.Datasets.ALT_temperature_voltage: 12 failures at (K, V).
ALT_TEMPERATURE_VOLTAGE = ([620, 632, 685, 822, 380, 416, 460, 596, 216, 146, 332, 400],
                           [348, 348, 348, 348, 348, 348, 348, 348, 378, 378, 378, 378],
                           [3, 3, 3, 3, 5, 5, 5, 5, 3, 3, 3, 3])


@pytest.fixture
def ctx(tmp_path):
    return test_context(tmp_path)


def _alt_temperature(name: str = "temperature_k") -> xr.Dataset:
    t = [f for f, _ in ALT_TEMPERATURE_FAILURES] + [5000] * sum(ALT_TEMPERATURE_SUSPENDED.values())
    s = [s for _, s in ALT_TEMPERATURE_FAILURES] + [k for k, n in ALT_TEMPERATURE_SUSPENDED.items() for _ in range(n)]
    failed = [1] * len(ALT_TEMPERATURE_FAILURES) + [0] * sum(ALT_TEMPERATURE_SUSPENDED.values())
    return xr.Dataset({"hours": ("sample", np.asarray(t, float)), "failed": ("sample", np.asarray(failed)),
                       name: ("sample", np.asarray(s, float))})


def _alt_load2() -> xr.Dataset:
    f, fs, c, cs = ALT_LOAD2
    return xr.Dataset({"hours": ("sample", np.asarray(f + c, float)),
                       "failed": ("sample", np.r_[np.ones(len(f)), np.zeros(len(c))]),
                       "stress": ("sample", np.asarray(fs + cs, float))})


# reliability docs, "Fitting all available models to ALT data", Example 3 (Fit_Everything_ALT on ALT_temperature):
# a, b or c, n, beta or sigma, log-likelihood, as printed (6 significant figures).
FIT_EVERYTHING_ALT_TEMPERATURE = [
    ("arrhenius", "weibull", {"a": 208.334, "b": 157.573, "beta": 1.39983}, -341.591),
    ("eyring", "weibull", {"a": 151.091, "c": -10.1367, "beta": 1.42117}, -341.206),
    ("arrhenius", "lognormal", {"a": 197.357, "b": 134.732, "sigma": 0.986886}, -340.144),
    ("eyring", "lognormal", {"a": 142.294, "c": -9.94803, "sigma": 0.976603}, -339.835),
    ("inverse-power", "weibull", {"n": -3.73732, "beta": 1.44776}, -340.39),
    ("inverse-power", "lognormal", {"n": -3.64018, "sigma": 0.961968}, -339.183),
]


@pytest.mark.parametrize(("relationship", "distribution", "ref", "ref_ll"), FIT_EVERYTHING_ALT_TEMPERATURE,
                         ids=[f"{r}-{d}" for r, d, _, _ in FIT_EVERYTHING_ALT_TEMPERATURE])
def test_equals_reliability_fit_everything_alt(relationship, distribution, ref, ref_ll, ctx):
    name = "stress" if relationship == "inverse-power" else "temperature_k"
    model = LifeStress(relationship=relationship, distribution=distribution, time="hours").fit(
        _alt_temperature(name), ctx)
    got = {k: v[0] for k, v in model.coefficients().items()}
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, rel=1e-4), key
    assert model.log_likelihood_ == pytest.approx(ref_ll, rel=1e-5)


def test_power_law_intercept_lies_on_a_flat_ridge(ctx):
    """Fit_Everything_ALT prints a = 2.52681e10 for Weibull_Power on ALT_temperature, 2e-4 from ours: the
    log-likelihood is the same at both to 1e-9 (the intercept is ill-determined along n), so the optimizers
    agree on the maximum, not on the last digits of a."""
    ds = _alt_temperature("stress")
    model = LifeStress(relationship="inverse-power", time="hours").fit(ds, ctx)
    a = model.coefficients()["a"][0]
    assert a == pytest.approx(2.52681e10, rel=5e-4)
    life = Censored.from_times(ds["hours"].values, ds["failed"].values)
    s = ds["stress"].values
    at_theirs = log_likelihood(life, frozen("weibull", np.log(2.52681e10 * s ** -3.73732), 1.44776))
    assert at_theirs == pytest.approx(model.log_likelihood_, abs=1e-6)
    assert model.log_likelihood_ >= at_theirs - 1e-9


def test_weibull_power_on_alt_load2_with_bounds_and_use_life(ctx):
    model = LifeStress(relationship="inverse-power", time="hours", use={"stress": 60}, confidence=0.95).fit(
        _alt_load2(), ctx)
    coef = model.coefficients()
    # reliability 0.5 docs, "Fitting a model to ALT data" (Fit_Weibull_Power, ALT_load2, use level 60):
    # a = 398816.334596, n = -1.417306, beta = 3.017297, mean life at 60 = 1075.32844
    assert coef["a"][0] == pytest.approx(398816.334596, rel=1e-5)
    assert coef["n"][0] == pytest.approx(-1.417306, rel=1e-5)
    assert coef["beta"][0] == pytest.approx(3.017297, rel=1e-5)
    summary = model.summary()
    assert summary["use_mean_life"] == pytest.approx(1075.32844, rel=1e-5)
    # reliability docs, "Fitting a single stress model to ALT data", Example 1: log-likelihood -76.8541, AICc
    # 161.422, BIC 162.379; standard errors n 0.24427, beta 0.716506; per-stress Weibull_2P fits
    assert model.log_likelihood_ == pytest.approx(-76.8541, rel=1e-5)
    assert summary["aicc"] == pytest.approx(161.422, rel=1e-5)
    assert summary["bic"] == pytest.approx(162.379, rel=1e-5)
    z = 1.959963984540054
    assert (coef["n"][2] - coef["n"][1]) / (2 * z) == pytest.approx(0.24427, rel=2e-3)
    se_log_beta = math.log(coef["beta"][2] / coef["beta"][1]) / (2 * z)
    assert coef["beta"][0] * se_log_beta == pytest.approx(0.716506, rel=2e-3)
    own = {row["stress"]: (row["own_scale"], row["own_shape"]) for row in model.conditions()}
    for stress, alpha, beta in ((300, 116.173, 3.01009), (200, 240.182, 3.57635), (100, 557.42, 2.6792)):
        assert own[stress][0] == pytest.approx(alpha, rel=1e-4)
        assert own[stress][1] == pytest.approx(beta, rel=1e-4)
    # B-lives at use, with bounds around them
    assert summary["use_b10_hours_lower"] < summary["use_b10_hours"] < summary["use_b10_hours_upper"]
    eta_use = coef["a"][0] * 60.0 ** coef["n"][0]
    assert summary["use_b10_hours"] == pytest.approx(eta_use * (-math.log(0.9)) ** (1 / coef["beta"][0]), rel=1e-9)


def test_peck_equals_reliability_power_exponential(ctx):
    """Peck, A RH^n exp(a / T), is the reliability library's Power-Exponential model with RH as the non-thermal
    stress; reliability 0.5 docs, "Fitting a model to ALT data", Fit_Weibull_Power_Exponential on
    ALT_temperature_voltage, use level (325 K, 0.5): a 3404.486466, c 0.087610, n -0.713424, beta 4.997525,
    mean life 4673.15311."""
    f, temp, volt = ALT_TEMPERATURE_VOLTAGE
    ds = xr.Dataset({"hours": ("sample", np.asarray(f, float)), "failed": ("sample", np.ones(12)),
                     "temperature_k": ("sample", np.asarray(temp, float)),
                     "volts": ("sample", np.asarray(volt, float))})
    model = LifeStress(relationship="peck", time="hours", stresses={"humidity": "volts"},
                       use={"temperature_k": 325, "volts": 0.5}).fit(ds, ctx)
    coef = model.coefficients()
    assert coef["a"][0] == pytest.approx(3404.486466, rel=1e-5)
    assert coef["A"][0] == pytest.approx(0.087610, rel=1e-4)
    assert coef["n"][0] == pytest.approx(-0.713424, rel=1e-5)
    assert coef["beta"][0] == pytest.approx(4.997525, rel=1e-5)
    assert model.summary()["use_mean_life"] == pytest.approx(4673.15311, rel=1e-5)
    assert coef["activation_energy_ev"][0] == pytest.approx(3404.486466 * 8.617333262e-5, rel=1e-5)


def test_fast_log_location_scale_equals_scipy():
    from scipy import stats

    t = np.array([1e-3, 5.0, 80.0, 1200.0, 3000.0, 1e6])
    mu = np.log(np.array([50.0, 60.0, 70.0, 80.0, 90.0, 100.0]))
    for dist, ref in (("weibull", stats.weibull_min(1.7, scale=np.exp(mu))),
                      ("lognormal", stats.lognorm(0.8, scale=np.exp(mu)))):
        fast = LogLocationScale(dist, mu, 1.7 if dist == "weibull" else 0.8)
        for method in ("logpdf", "logcdf", "logsf"):
            np.testing.assert_allclose(getattr(fast, method)(t), getattr(ref, method)(t), rtol=1e-10)
        zero = LogLocationScale(dist, mu[:1], 1.0)
        assert zero.logsf(np.zeros(1))[0] == 0.0 and zero.logcdf(np.zeros(1))[0] == -np.inf


def test_common_shape_test_is_the_likelihood_ratio(ctx):
    from reflow.plugins.reliability.distributions import fit_distribution
    from scipy.stats import chi2

    ds = _alt_load2()
    model = LifeStress(relationship="inverse-power", time="hours").fit(ds, ctx)
    st = model.summary()
    life = Censored.from_times(ds["hours"].values, ds["failed"].values)
    separate = sum(fit_distribution("weibull", life.subset(ds["stress"].values == s)).loglik
                   for s in (100, 200, 300))
    assert st["conditions_log_likelihood_separate"] == pytest.approx(separate, rel=1e-7)
    assert st["shape_lr_statistic"] == pytest.approx(
        2 * (separate - st["conditions_log_likelihood_common_shape"]), rel=1e-9)
    assert st["shape_lr_df"] == 2
    assert st["shape_lr_p_value"] == pytest.approx(chi2.sf(st["shape_lr_statistic"], 2), rel=1e-12)
    # one scale per condition can only fit better than the law through them
    assert st["conditions_log_likelihood_common_shape"] >= model.log_likelihood_ - 1e-7


def test_recovers_synthetic_arrhenius_truth_with_intervals(ctx):
    src = SyntheticAltTest(units_per_condition=150, test_cycles=30000, readout_every=250, shape=2.0)
    ds = src.load(test_context(ctx.folder, seed=11))
    model = LifeStress(lower="lower", upper="upper", use={"temperature_k": 328}, b_lives=[10]).fit(ds, ctx)
    coef, summary = model.coefficients(), model.summary()
    assert coef["a"][1] < ds.attrs["true_a"] < coef["a"][2]
    assert coef["beta"][1] < ds.attrs["true_shape"] < coef["beta"][2]
    assert summary["use_b10_cycles_lower"] < ds.attrs["true_b10_reference"] < summary["use_b10_cycles_upper"]
    assert coef["activation_energy_ev"][0] == pytest.approx(0.7, rel=0.1)


def test_recovers_synthetic_norris_landzberg_truth(ctx):
    src = SyntheticAltTest(relationship="norris-landzberg",
                           levels={"delta_t": [165, 125, 165, 100, 140], "frequency": [24, 48, 48, 72, 12],
                                   "t_max": [398, 398, 373, 373, 383]},
                           reference={"delta_t": 60, "frequency": 12, "t_max": 343}, reference_scale=20000,
                           shape=3.0, activation_energy_ev=0.12, exponent=-1.9, units_per_condition=120)
    ds = src.load(test_context(ctx.folder, seed=5))
    model = LifeStress(relationship="norris-landzberg", use={"delta_t_k": 60, "frequency_per_day": 12,
                                                               "t_max_k": 343}).fit(ds, ctx)
    coef = model.coefficients()
    for name in ("n", "m", "a", "A", "beta"):
        truth = ds.attrs["true_shape"] if name == "beta" else ds.attrs[f"true_{name}"]
        assert coef[name][1] < truth < coef[name][2], name
    assert model.summary()["use_scale"] == pytest.approx(20000, rel=0.25)


def test_as_evaluator_gives_b_lives_and_lower_bounds_at_the_design_stresses(ctx, tmp_path):
    from reflow.evaluation import ModelEvaluator

    model = LifeStress(relationship="arrhenius", time="hours", use={"temperature_k": 30}, b_lives=[10]).fit(
        _alt_temperature(), ctx)
    ev = ModelEvaluator(model, ctx)
    assert [v.name for v in ev.input_variables()] == ["temperature_k"]
    assert [v.name for v in ev.output_variables()] == ["b10_hours", "b10_hours_lower", "b10_hours_upper"]
    designs = xr.Dataset({"temperature_k": ("trial", [30.0, 40.0, 80.0])}, coords={"trial": [0, 1, 2]})
    out = ev.evaluate(designs, ctx)
    summary = model.summary()
    assert out["b10_hours"].values[0] == pytest.approx(summary["use_b10_hours"], rel=1e-12)
    assert out["b10_hours_lower"].values[0] == pytest.approx(summary["use_b10_hours_lower"], rel=1e-12)
    assert np.all(out["b10_hours_lower"].values < out["b10_hours"].values)
    assert np.all(np.diff(out["b10_hours"].values) < 0)  # hotter, shorter
    width = np.log(out["b10_hours_upper"].values / out["b10_hours_lower"].values)
    assert width[0] > width[1]  # extrapolating far below the test temperatures widens the bounds
    model.save(tmp_path / "saved")
    again = LifeStress.load(tmp_path / "saved")
    np.testing.assert_allclose(again.predict(designs, ctx)["b10_hours_lower"].values,
                               out["b10_hours_lower"].values, rtol=1e-12)
    paths = model.plot(tmp_path)
    assert all(p.exists() for p in paths) and len(paths) == 2


def test_celsius_is_converted(ctx):
    ds = _alt_temperature()
    kelvin = LifeStress(time="hours").fit(ds.assign(temperature_k=ds["temperature_k"] + 273.15), ctx)
    celsius = LifeStress(time="hours", temperature_unit="C").fit(ds, ctx)
    assert celsius.coefficients()["a"][0] == pytest.approx(kelvin.coefficients()["a"][0], rel=1e-6)


# ---- bad input ------------------------------------------------------------------------------------------------
def test_temperature_at_or_below_zero_kelvin_names_column_and_row(ctx):
    ds = _alt_temperature()
    ds["temperature_k"].values[7] = 0.0
    with pytest.raises(DataError, match=r"'temperature_k' at row 7 is 0 K.*above 0 K"):
        LifeStress(time="hours").fit(ds, ctx)
    with pytest.raises(DataError, match=r"row 3 is -233.15 K"):
        LifeStress(time="hours", temperature_unit="C").fit(
            ds.assign(temperature_k=ds["temperature_k"].copy(data=np.r_[40, 40, 40, -506.3, ds[
                "temperature_k"].values[4:]])), ctx)


def test_single_stress_level_is_refused(ctx):
    ds = _alt_temperature()
    ds["temperature_k"].values[:] = 358.0
    with pytest.raises(DataError, match=r"'temperature_k' has the single value 358 in all 137 rows.*at least 2"):
        LifeStress(time="hours").fit(ds, ctx)


def test_more_parameters_than_failures_and_all_censored(ctx):
    ds = _alt_load2()
    few = ds.assign(failed=("sample", np.r_[1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
    with pytest.raises(DataError, match=r"2 failure\(s\) among 18 units.*3 parameters"):
        LifeStress(relationship="inverse-power", time="hours").fit(few, ctx)
    with pytest.raises(DataError, match=r"all 18 units are censored"):
        LifeStress(relationship="inverse-power", time="hours").fit(ds.assign(failed=ds["failed"] * 0), ctx)


def test_missing_stress_and_wrong_roles(ctx):
    from pydantic import ValidationError

    with pytest.raises(DataError, match=r"no stress variable 'stress'.*params.stresses.stress"):
        LifeStress(relationship="inverse-power", time="hours").fit(_alt_temperature(), ctx)
    with pytest.raises(ValidationError, match="arrhenius takes the stresses temperature"):
        LifeStress(relationship="arrhenius", stresses={"humidity": "rh"})
    with pytest.raises(ValidationError, match="use: give the use condition of each stress variable, temperature_k"):
        LifeStress(relationship="arrhenius", use={"temp": 300})
    with pytest.raises(DataError, match=r"'humidity_rh' at row 0 is -3.*must be > 0"):
        LifeStress(relationship="peck", time="hours").fit(
            _alt_temperature().assign(humidity_rh=("sample", np.r_[-3.0, np.full(136, 85.0)])), ctx)


# ---- in a study ---------------------------------------------------------------------------------------------
STUDY = """
    study: alt-chain
    seed: 4
    stages:
      test:
        task: data
        source: {synthetic-alt-test: {units_per_condition: 15, test_cycles: 20000, reference_scale: 40000}}
      alt:
        task: train
        model: {life-stress: {relationship: arrhenius, b_lives: [10], use: {temperature_k: 328}}}
        data: test
      field:
        task: doe
        design: {full-factorial: {levels: 2}}
        space:
          temperature_k: {low: 318, high: 338}
        evaluate: [{stage: alt}]
"""


def test_life_stress_stage_as_an_evaluator(write_study, tmp_path):
    from reflow.runner import run_study
    from reflow.study import load_study

    run = run_study(load_study(write_study(STUDY)), out=tmp_path / "runs", quiet=True)
    metrics = run.result("alt").metrics
    assert metrics["use_b10_cycles_lower"] < metrics["use_b10_cycles"] < metrics["use_b10_cycles_upper"]
    trials = run.output("field")
    assert list(trials["status"].values) == ["ok", "ok"]
    assert np.all(trials["b10_cycles_lower"].values < trials["b10_cycles"].values)
    assert trials["b10_cycles"].values[0] > trials["b10_cycles"].values[1]  # 318 K outlives 338 K
    assert (run.dir / "alt" / "life_stress.png").exists()


def test_likelihood_ratio_bounds_at_a_use_stress(ctx):
    """Each end of the profile-likelihood interval on B10 at stress 60 is where the maximum log-likelihood under
    the constraint ln B10(60) = end lies chi2_1(0.90) / 2 below the overall maximum: checked here by an
    independent constrained maximization (scipy SLSQP on Weibull_Power's natural parameters, scipy weibull_min)."""
    from scipy import optimize, stats

    ds = _alt_load2()
    fisher = LifeStress(relationship="inverse-power", time="hours", b_lives=[10], use={"stress": 60}).fit(ds, ctx)
    model = LifeStress(relationship="inverse-power", time="hours", b_lives=[10], use={"stress": 60},
                       bounds="likelihood-ratio").fit(ds, ctx)
    s = model.summary()
    assert s["use_b10_hours"] == pytest.approx(fisher.summary()["use_b10_hours"], rel=1e-12)
    t, failed, stress = ds["hours"].values, ds["failed"].values == 1, ds["stress"].values

    def loglik(y):  # y = (ln a, n, ln beta); eta = a S^n
        dist = stats.weibull_min(math.exp(y[2]), scale=np.exp(y[0] + y[1] * np.log(stress)))
        return float(np.sum(np.where(failed, dist.logpdf(t), dist.logsf(t))))

    coef = model.coefficients()
    y_hat = np.array([math.log(coef["a"][0]), coef["n"][0], math.log(coef["beta"][0])])
    assert loglik(y_hat) == pytest.approx(model.log_likelihood_, rel=1e-10)
    for end in (s["use_b10_hours_lower"], s["use_b10_hours_upper"]):
        cons = {"type": "eq", "fun": lambda y, end=end: y[0] + y[1] * math.log(60) + math.log(-math.log(0.9))
                / math.exp(y[2]) - math.log(end)}
        res = optimize.minimize(lambda y: -loglik(y), y_hat, method="SLSQP", constraints=[cons],
                                options={"ftol": 1e-12, "maxiter": 500})
        assert 2 * (model.log_likelihood_ + res.fun) == pytest.approx(stats.chi2.ppf(0.9, 1), rel=1e-3)
    # small sample: the profile interval is not the Wald one; both hold the estimate
    assert s["use_b10_hours_lower"] != pytest.approx(fisher.summary()["use_b10_hours_lower"], rel=1e-2)
    assert s["use_b10_hours_lower"] < s["use_b10_hours"] < s["use_b10_hours_upper"]


def test_degradation_readouts_at_two_temperatures(ctx):
    """Trajectories read out at two temperatures: each unit's crossing interval (degradation method interval)
    and its temperature (from its rows) feed the joint fit."""
    from reflow.plugins.reliability.lifetest import SyntheticReadoutTest

    parts = []
    for k, (temp, scale) in enumerate(((358.0, 4000.0), (398.0, 800.0))):
        r = SyntheticReadoutTest(units=60, shape=2.5, scale=scale, readout_every=100, test_cycles=6000,
                                 layout="readings").load(test_context(ctx.folder, seed=k))
        parts.append(r.assign(unit=r["unit"] + 1000 * k, temperature_k=("reading", np.full(r.sizes["reading"], temp))))
    data = xr.concat(parts, dim="reading")
    model = LifeStress(time="cycles", degradation={"unit": "unit", "variable": "degradation", "threshold": 0.2},
                       use={"temperature_k": 328}).fit(data, ctx)
    failed = np.isfinite(model.upper_)
    assert np.all(model.upper_[failed] - model.lower_[failed] == 100)  # between two readouts
    assert np.all(model.lower_[~failed] == 6000) and 0 < (~failed).sum() < 10  # a few outlast the test at 358 K
    truth_a = math.log(4000.0 / 800.0) / (1 / 358.0 - 1 / 398.0)
    coef = model.coefficients()
    assert coef["a"][1] < truth_a < coef["a"][2]
    assert coef["beta"][1] < 2.5 < coef["beta"][2]


def test_one_sided_bound_is_the_two_sided_one_at_twice_the_tail(ctx):
    ds = _alt_load2()
    one = LifeStress(relationship="inverse-power", time="hours", use={"stress": 60}, confidence=0.9,
                     one_sided=True).fit(ds, ctx).summary()
    two = LifeStress(relationship="inverse-power", time="hours", use={"stress": 60}, confidence=0.8).fit(
        ds, ctx).summary()
    assert one["use_b10_hours_lower"] == pytest.approx(two["use_b10_hours_lower"], rel=1e-12)
