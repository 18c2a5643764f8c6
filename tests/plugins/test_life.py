"""Life models: Weibull MLE against lifelines and a published example, Kaplan-Meier and Cox against lifelines,
the synthetic life test, clear errors, and the train -> Norris-Landzberg chain of a study."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import xarray as xr
from pydantic import ValidationError
from reflow.errors import DataError, StudyError, UserInputError
from reflow.plugins.reliability.lifetest import SyntheticLifeTest
from reflow.plugins.reliability.pof import NorrisLandzberg
from reflow.plugins.reliability.survival import CoxPH, KaplanMeier
from reflow.plugins.reliability.weibull import Weibull, adjusted_ranks
from reflow.testing import test_context


def _life(t, failed, **extra) -> xr.Dataset:
    data = {"cycles": ("sample", np.asarray(t, dtype=float)), "failed": ("sample", np.asarray(failed, dtype=int))}
    data.update({k: ("sample", np.asarray(v, dtype=float)) for k, v in extra.items()})
    return xr.Dataset(data, coords={"sample": np.arange(len(t))})


def _censored_weibull(n, shape, scale, end, seed):
    rng = np.random.default_rng(seed)
    life = scale * rng.weibull(shape, n)
    return _life(np.minimum(life, end), life <= end)


# Nelson (1982, p. 318): 70 diesel-engine fans, hours / 1000; 1 = censored in the source. 12 failures.
FANS = np.array([
    450, 0, 460, 1, 1150, 0, 1150, 0, 1560, 1, 1600, 0, 1660, 1, 1850, 1, 1850, 1, 1850, 1, 1850, 1, 1850, 1,
    2030, 1, 2030, 1, 2030, 1, 2070, 0, 2070, 0, 2080, 0, 2200, 1, 3000, 1, 3000, 1, 3000, 1, 3000, 1, 3100, 0,
    3200, 1, 3450, 0, 3750, 1, 3750, 1, 4150, 1, 4150, 1, 4150, 1, 4150, 1, 4300, 1, 4300, 1, 4300, 1, 4300, 1,
    4600, 0, 4850, 1, 4850, 1, 4850, 1, 4850, 1, 5000, 1, 5000, 1, 5000, 1, 6100, 1, 6100, 0, 6100, 1, 6100, 1,
    6300, 1, 6450, 1, 6450, 1, 6700, 1, 7450, 1, 7800, 1, 7800, 1, 8100, 1, 8100, 1, 8200, 1, 8500, 1, 8500, 1,
    8500, 1, 8750, 1, 8750, 0, 8750, 1, 9400, 1, 9900, 1, 10100, 1, 10100, 1, 10100, 1, 11500, 1,
], dtype=float).reshape(-1, 2)

# Meeker and Escobar (1998), alloy fatigue: 72 specimens, thousands of cycles, the last 5 unfailed at 300.
ALLOY = np.array([
    94, 96, 99, 99, 104, 108, 112, 114, 117, 117, 118, 121, 121, 123, 129, 131, 133, 135, 136, 139, 139, 140, 141,
    141, 143, 144, 149, 149, 152, 153, 159, 159, 159, 159, 162, 168, 168, 169, 170, 170, 171, 172, 173, 176, 177,
    180, 180, 184, 187, 188, 189, 190, 196, 197, 203, 205, 211, 213, 224, 226, 227, 256, 257, 269, 271, 274, 291,
    300, 300, 300, 300, 300,
], dtype=float)


@pytest.fixture
def ctx(tmp_path):
    return test_context(tmp_path)


# ---- Weibull ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("data", [
    pytest.param(lambda: _censored_weibull(50, 2.5, 1000.0, 900.0, seed=1), id="synthetic-50-units"),
    pytest.param(lambda: _life(FANS[:, 0] / 1000.0, 1 - FANS[:, 1]), id="nelson-fans-12-of-70-failed"),
])
def test_weibull_2p_equals_lifelines(data, ctx):
    from lifelines import WeibullFitter

    ds = data()
    model = Weibull(b_lives=[1, 10]).fit(ds, ctx)
    ref = WeibullFitter().fit(ds["cycles"].values, ds["failed"].values)
    # lifelines: S(t) = exp(-(t / lambda_)^rho_)
    assert model.beta == pytest.approx(ref.rho_, rel=1e-5)
    assert model.eta == pytest.approx(ref.lambda_, rel=1e-5)
    assert model.log_likelihood_ == pytest.approx(ref.log_likelihood_, rel=1e-9)
    se = model.standard_errors()
    ref_se = np.sqrt(np.diag(ref.variance_matrix_.loc[["lambda_", "rho_"], ["lambda_", "rho_"]].values))
    assert se["eta"] == pytest.approx(ref_se[0], rel=1e-3)
    assert se["beta"] == pytest.approx(ref_se[1], rel=1e-3)
    b10 = model.summary()["b10_cycles"]
    assert b10 == pytest.approx(model.eta * (-math.log(0.9)) ** (1.0 / model.beta), rel=1e-12)
    assert b10 == pytest.approx(ref.percentile(0.9), rel=1e-5)  # lifelines: the time where S = 0.9
    assert model.summary()["b1_cycles"] == pytest.approx(ref.percentile(0.99), rel=1e-5)


def test_weibull_3p_meeker_escobar_alloy_example(ctx):
    """Meeker & Escobar (1998) alloy fatigue data, 3-parameter Weibull as published in the SAS/QC PROC RELIABILITY
    "Three-Parameter Weibull" example: threshold 92.9928 (se 1.9516, 95 % 89.1676..96.8179), shape 1.3202
    (se 0.1565, 1.0465..1.6654), scale 93.2642 (se 9.4082, 76.5329..113.6531)."""
    ds = xr.Dataset({"kcycles": ("sample", ALLOY), "failed": ("sample", (np.arange(72) < 67).astype(int))})
    model = Weibull(parameters=3, time="kcycles", confidence=0.95).fit(ds, ctx)
    b = model.parameter_bounds()
    se = model.standard_errors()
    for name, (value, lo, hi), s in [("gamma", (92.9928, 89.1676, 96.8179), 1.9516),
                                     ("beta", (1.3202, 1.0465, 1.6654), 0.1565),
                                     ("eta", (93.2642, 76.5329, 113.6531), 9.4082)]:
        assert b[name][0] == pytest.approx(value, abs=1e-4 * max(1.0, value) + 5e-5), name
        assert b[name][1] == pytest.approx(lo, abs=1e-3 * max(1.0, lo)), name
        assert b[name][2] == pytest.approx(hi, abs=1e-3 * max(1.0, hi)), name
        assert se[name] == pytest.approx(s, rel=1e-3), name


def test_weibull_3p_recovers_a_known_location(ctx):
    rng = np.random.default_rng(5)
    life = 500.0 + 2000.0 * rng.weibull(2.0, 3000)
    model = Weibull(parameters=3).fit(_life(np.minimum(life, 3000.0), life <= 3000.0), ctx)
    gamma, lo, hi = model.parameter_bounds()["gamma"]
    assert lo <= 500.0 <= hi
    assert gamma == pytest.approx(500.0, rel=0.05)
    assert model.beta == pytest.approx(2.0, rel=0.08)
    assert model.eta == pytest.approx(2000.0, rel=0.05)
    # reliability is 1 before the failure-free period and the B-life lies beyond it
    assert model.reliability(np.array([gamma * 0.9]))[0][0] == 1.0
    assert model.b_life(1)[0] > gamma


def test_fisher_bounds_cover_the_truth_at_their_level(ctx):
    """Complete-ish samples from a known Weibull: the 90 % bounds on beta and B10 hold the truth ~90 % of the time."""
    rng = np.random.default_rng(7)
    true_b10 = 1000.0 * (-math.log(0.9)) ** (1 / 2.5)
    draws, hit_beta, hit_b10 = 200, 0, 0
    for _ in range(draws):
        life = 1000.0 * rng.weibull(2.5, 25)
        model = Weibull(b_lives=[10], confidence=0.9).fit(_life(np.minimum(life, 1100.0), life <= 1100.0), ctx)
        _, lo, hi = model.parameter_bounds()["beta"]
        hit_beta += lo <= 2.5 <= hi
        _, lo, hi = model.b_life(10)
        hit_b10 += lo <= true_b10 <= hi
    assert 0.8 <= hit_beta / draws <= 0.97
    assert 0.8 <= hit_b10 / draws <= 0.97


def test_complete_large_sample_recovers_the_parameters(ctx):
    life = 1500.0 * np.random.default_rng(3).weibull(3.0, 2000)
    model = Weibull().fit(_life(life, np.ones(life.size)), ctx)
    for name, truth in (("beta", 3.0), ("eta", 1500.0)):
        value, lo, hi = model.parameter_bounds()[name]
        assert lo <= truth <= hi
        assert value == pytest.approx(truth, rel=0.04)


def test_weibull_predict_outputs_and_bounds(ctx):
    ds = _censored_weibull(40, 2.0, 3000.0, 2500.0, seed=2)
    model = Weibull(b_lives=[10, 0.1]).fit(ds, ctx)
    assert model.targets == ["b10_cycles", "b10_cycles_lower", "b10_cycles_upper",
                             "b0p1_cycles", "b0p1_cycles_lower", "b0p1_cycles_upper"]
    assert model.features == []  # B-lives need no input
    b10, lo, hi = model.b_life(10)
    assert lo < b10 < hi
    probe = xr.Dataset({"cycles": ("sample", [0.0, b10, 2000.0, 5000.0])})
    pred = model.predict(probe, ctx)
    np.testing.assert_allclose(pred["b10_cycles_mean"].values, b10)
    r = pred["reliability_mean"].values
    assert r[0] == 1.0 and r[1] == pytest.approx(0.9, abs=1e-12)
    assert np.all(pred["reliability_lower"].values <= r) and np.all(r <= pred["reliability_upper"].values)
    np.testing.assert_allclose(pred["unreliability_mean"].values, 1 - r)
    # at B10, the reliability bounds and the B10 bounds describe the same uncertainty band from two sides
    assert pred["reliability_lower"].values[1] < 0.9 < pred["reliability_upper"].values[1]
    # no time variable: only the B-lives, one row per design (as an evaluator sees it)
    bare = model.predict(xr.Dataset(coords={"trial": np.arange(3)}), ctx)
    assert set(bare.data_vars) == {f"{n}_{s}" for n in ("b10_cycles", "b0p1_cycles") for s in ("mean", "lower",
                                                                                                 "upper")}
    assert bare.sizes["trial"] == 3


def test_weibull_save_load_and_plot(ctx, tmp_path):
    ds = _censored_weibull(30, 1.5, 800.0, 700.0, seed=4)
    model = Weibull().configure([], ["reliability", "b10_cycles"]).fit(ds, ctx)
    assert model.features == ["cycles"]  # reliability needs the time as input
    model.save(tmp_path / "m")
    assert not list((tmp_path / "m").glob("*.pkl"))
    again = Weibull.load(tmp_path / "m")
    assert again.targets == model.targets and again.features == ["cycles"]
    a, b = model.predict(ds, ctx), again.predict(ds, ctx)
    for name in a.data_vars:
        np.testing.assert_allclose(b[name].values, a[name].values, rtol=1e-12)
    assert json.loads((tmp_path / "m" / "weibull.json").read_text())["beta"] == pytest.approx(model.beta)
    paths = again.plot(tmp_path)
    assert [p.name for p in paths] == ["weibull_probability.png"] and paths[0].stat().st_size > 10_000


def test_johnson_adjusted_ranks():
    # complete data: Benard's approximation (i - 0.3) / (n + 0.4)
    np.testing.assert_allclose(adjusted_ranks(np.array([3.0, 1.0, 2.0]), np.ones(3, bool)),
                               (np.arange(1, 4) - 0.3) / 3.4)
    # failures at 1 and 3, suspension at 2 (n = 3): ranks 1 and 1 + (4 - 1) / (1 + 1) = 2.5
    ranks = adjusted_ranks(np.array([1.0, 2.0, 3.0]), np.array([True, False, True]))
    np.testing.assert_allclose(ranks, (np.array([1.0, 2.5]) - 0.3) / 3.4)


# ---- Kaplan-Meier -----------------------------------------------------------------------------------------------
def test_kaplan_meier_wraps_lifelines(ctx, tmp_path):
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times

    ds = _censored_weibull(60, 1.8, 1000.0, 1200.0, seed=8)
    model = KaplanMeier(confidence=0.9).fit(ds, ctx)
    ref = KaplanMeierFitter(alpha=0.1).fit(ds["cycles"].values, ds["failed"].values)
    med, lo, hi = model.median()
    assert med == ref.median_survival_time_
    ref_ci = median_survival_times(ref.confidence_interval_)
    assert (lo, hi) == (ref_ci.iloc[0, 0], ref_ci.iloc[0, 1])
    times = np.array([0.0, 50.0, 333.0, float(ds["cycles"].values[3]), 1199.0, 1500.0])
    r, r_lo, r_hi = model.reliability(times)
    np.testing.assert_allclose(r, ref.survival_function_at_times(times).values, rtol=0, atol=0)
    ci = ref.confidence_interval_
    idx = np.searchsorted(ci.index.values, times, side="right") - 1
    np.testing.assert_allclose(r_lo, ci.iloc[idx, 0].values)
    np.testing.assert_allclose(r_hi, ci.iloc[idx, 1].values)
    assert model.targets == ["median_cycles"] and model.features == []
    model.save(tmp_path / "km")
    again = KaplanMeier.load(tmp_path / "km")
    probe = xr.Dataset({"cycles": ("sample", times)})
    a, b = model.predict(probe, ctx), again.predict(probe, ctx)
    for name in ("reliability_mean", "reliability_lower", "reliability_upper", "median_cycles_mean"):
        np.testing.assert_array_equal(a[name].values, b[name].values)
    np.testing.assert_array_equal(a["median_cycles_mean"].values, med)
    assert again.summary() == model.summary()
    assert again.plot(tmp_path)[0].name == "kaplan_meier.png"


# ---- Cox PH -----------------------------------------------------------------------------------------------------
def test_cox_recovers_the_void_coefficient_and_matches_lifelines(ctx, tmp_path):
    import pandas as pd
    from lifelines import CoxPHFitter

    ds = SyntheticLifeTest(units=600, shape=2.0, scale=3000.0, test_cycles=2500.0, max_void_fraction=0.3,
                           void_log_hazard=8.0).load(ctx)
    model = CoxPH(confidence=0.9).fit(ds, ctx)
    assert model.covariates_ == ["void_fraction"]  # the default: every numeric variable but time and event
    s = model.summary()
    assert abs(s["coef_void_fraction"] - 8.0) < 3 * s["coef_void_fraction_se"]
    assert s["hr_void_fraction_lower"] < math.exp(8.0) < s["hr_void_fraction_upper"]
    frame = pd.DataFrame({"void_fraction": ds["void_fraction"].values, "T": ds["cycles"].values,
                          "E": ds["failed"].values})
    ref = CoxPHFitter(alpha=0.1).fit(frame, "T", "E")
    row = ref.summary.loc["void_fraction"]
    assert s["coef_void_fraction"] == pytest.approx(row["coef"], rel=1e-12)
    assert s["coef_void_fraction_se"] == pytest.approx(row["se(coef)"], rel=1e-12)
    assert s["hr_void_fraction"] == pytest.approx(row["exp(coef)"], rel=1e-12)
    assert s["hr_void_fraction_lower"] == pytest.approx(row["exp(coef) lower 90%"], rel=1e-12)
    assert s["hr_void_fraction_upper"] == pytest.approx(row["exp(coef) upper 90%"], rel=1e-12)
    assert s["concordance"] == pytest.approx(ref.concordance_index_, rel=1e-12)
    # new covariates: median life and reliability at given times, as lifelines predicts them
    new = pd.DataFrame({"void_fraction": [0.0, 0.1, 0.2, 0.3]})
    times = np.array([500.0, 1000.0, 1700.0, 2400.0])
    probe = xr.Dataset({"void_fraction": ("sample", new["void_fraction"].values), "cycles": ("sample", times)})
    pred = model.predict(probe, ctx)
    np.testing.assert_allclose(pred["median_cycles_mean"].values, ref.predict_median(new).values, rtol=1e-12)
    ref_r = [float(ref.predict_survival_function(new.iloc[[i]], times=[t]).values[0, 0]) for i, t in enumerate(times)]
    np.testing.assert_allclose(pred["reliability_mean"].values, ref_r, rtol=1e-10)
    assert np.all(np.diff(pred["median_cycles_mean"].values) < 0)  # more voids, shorter life
    model.save(tmp_path / "cox")
    again = CoxPH.load(tmp_path / "cox")
    np.testing.assert_array_equal(again.predict(probe, ctx)["median_cycles_mean"].values,
                                  pred["median_cycles_mean"].values)
    assert again.plot(tmp_path)[0].name == "cox_ph.png"


# ---- the data source --------------------------------------------------------------------------------------------
def test_synthetic_life_test_is_seeded_and_censored(tmp_path):
    src = SyntheticLifeTest(units=4000, shape=3.0, scale=2000.0, location=100.0, test_cycles=2000.0)
    a, b = src.load(test_context(tmp_path, seed=3)), src.load(test_context(tmp_path, seed=3))
    np.testing.assert_array_equal(a["cycles"].values, b["cycles"].values)
    c = src.load(test_context(tmp_path, seed=4))
    assert not np.array_equal(a["cycles"].values, c["cycles"].values)
    failed = a["failed"].values == 1
    assert np.all(a["cycles"].values[~failed] == 2000.0) and np.all(a["cycles"].values[failed] <= 2000.0)
    assert a["cycles"].values.min() >= 100.0 and "void_fraction" not in a
    expected = 1 - math.exp(-(((2000.0 - 100.0) / 2000.0) ** 3.0))
    assert failed.mean() == pytest.approx(expected, abs=0.03)
    assert a.attrs["true_shape"] == 3.0 and a["cycles"].attrs["units"] == "cycles"


# ---- errors -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [Weibull, KaplanMeier, CoxPH])
def test_bad_life_data_is_a_clear_error(cls, ctx):
    ok = SyntheticLifeTest(units=30, max_void_fraction=0.2, void_log_hazard=3.0).load(ctx)
    negative = ok.copy(deep=True)
    negative["cycles"].values[4] = -3.0
    with pytest.raises(DataError, match=r"'cycles'.*negative"):
        cls().fit(negative, ctx)
    none_failed = ok.copy(deep=True)
    none_failed["failed"].values[:] = 0
    with pytest.raises(DataError, match="no failures among 30 units"):
        cls().fit(none_failed, ctx)
    with pytest.raises(DataError, match="no time variable 'hours'"):
        cls(time="hours").fit(ok, ctx)
    with pytest.raises(DataError, match="no event indicator 'broken'"):
        cls(failed="broken").fit(ok, ctx)
    not_binary = ok.copy(deep=True)
    not_binary["failed"].values[0] = 2
    with pytest.raises(DataError, match="'failed' must be 1"):
        cls().fit(not_binary, ctx)
    with pytest.raises(DataError, match="'crack_um'"):
        cls(failure="crack_um > 5").fit(ok, ctx)
    with pytest.raises(UserInputError, match="cannot predict 'warpage_um'"):
        cls().configure([], ["warpage_um"]).fit(ok, ctx)
    if cls is not CoxPH:
        with pytest.raises(UserInputError, match="takes no covariates.*'void_fraction'"):
            cls().configure(["void_fraction"], []).fit(ok, ctx)


def test_bad_params_are_validation_errors():
    with pytest.raises(ValidationError, match="not both"):
        Weibull(failed="failed", failure="crack_um > 5")
    with pytest.raises(ValidationError, match="exactly one of"):
        Weibull(failure="crack_um >> 5")
    with pytest.raises(ValidationError, match="between 0 and 100"):
        Weibull(b_lives=[10, 100])
    with pytest.raises(ValidationError):
        Weibull(parameters=4)


def test_failure_condition_defines_the_events(ctx):
    ds = _censored_weibull(40, 2.0, 1000.0, 900.0, seed=6)
    ds["crack_um"] = ("sample", np.where(ds["failed"].values == 1, 12.0, 3.0))
    by_condition = Weibull(failure="crack_um > 5").fit(ds.drop_vars("failed"), ctx)
    by_indicator = Weibull().fit(ds, ctx)
    assert by_condition.beta == by_indicator.beta and by_condition.eta == by_indicator.eta


def test_degenerate_three_parameter_fit_says_so(ctx):
    life = 100.0 + 500.0 * np.random.default_rng(9).weibull(0.6, 200)  # shape < 1: no interior maximum
    with pytest.raises(DataError, match="use parameters: 2"):
        Weibull(parameters=3).fit(_life(life, np.ones(200)), ctx)


def test_norris_landzberg_translates_a_named_test_life():
    inputs = {"test_delta_t_k": 165.0, "field_delta_t_k": 60.0, "test_cycles_per_day": 48.0,
              "field_cycles_per_day": 2.0, "test_tmax_c": 125.0, "field_tmax_c": 85.0, "b10_cycles": 2000.0}
    nl = NorrisLandzberg(test_life="b10_cycles")
    assert "b10_cycles" in [v.name for v in nl.input_variables()]
    assert [v.name for v in nl.output_variables()] == ["acceleration_factor", "field_b10_cycles"]
    assert next(v for v in nl.input_variables() if v.name == "b10_cycles").default is None  # no silent 1000
    out = nl.evaluate_one(inputs)
    assert out["field_b10_cycles"] == pytest.approx(2000.0 * 17.48671411687, rel=1e-9)  # AF from test_pof
    assert [v.name for v in NorrisLandzberg().output_variables()] == ["acceleration_factor", "field_cycles"]


# ---- in a study -------------------------------------------------------------------------------------------------
STUDY = """
    study: life-chain
    seed: 3
    stages:
      test:
        task: data
        source: {synthetic-life-test: {units: 40, shape: 4.0, scale: 3000, test_cycles: 2800}}
      life:
        task: train
        model: {weibull: {b_lives: [10]}}
        data: test
        target: [b10_cycles, b10_cycles_lower]
      field:
        task: doe
        design: {full-factorial: {levels: 2}}
        space:
          field_delta_t_k: {low: 40, high: 80}
          field_tmax_c: {value: 85}
        evaluate: [{stage: life}, {norris-landzberg: {test_life: b10_cycles}}]
"""


def test_weibull_stage_feeds_norris_landzberg(write_study, tmp_path):
    from reflow.runner import run_study
    from reflow.study import load_study

    run = run_study(load_study(write_study(STUDY)), out=tmp_path / "runs", quiet=True)
    metrics = run.result("life").metrics
    assert (metrics["train_samples"], metrics["test_samples"]) == (40, 0)  # no split given: every unit
    assert metrics["b10_cycles_lower"] < metrics["b10_cycles"] < metrics["b10_cycles_upper"]
    assert metrics["beta"] > 0 and metrics["eta"] > 0 and 0 < metrics["failures"] < 40
    assert (run.dir / "life" / "weibull_probability.png").exists()
    assert "<code>weibull_probability.png</code>" in (run.dir / "report.html").read_text()
    assert run.manifest["stages"]["life"]["plots"] == ["weibull_probability.png"]
    trials = run.output("field")
    assert list(trials["status"].values) == ["ok", "ok"]
    np.testing.assert_allclose(trials["b10_cycles"].values, metrics["b10_cycles"])
    np.testing.assert_allclose(trials["field_b10_cycles"].values,
                               metrics["b10_cycles"] * trials["acceleration_factor"].values, rtol=1e-12)
    assert trials["field_b10_cycles"].values[0] > trials["field_b10_cycles"].values[1]  # milder swing lives longer


def test_life_models_with_a_held_out_part(write_study, tmp_path):
    from reflow.runner import run_study
    from reflow.study import load_study

    path = write_study("""
        study: cox-split
        seed: 1
        stages:
          test:
            task: data
            source: {synthetic-life-test: {units: 120, max_void_fraction: 0.3, void_log_hazard: 8}}
          cox:
            task: train
            model: cox-ph
            data: test
            split: {test: 0.25}
          weibull:
            task: train
            model: weibull
            data: test
            split: {test: 0.25}
    """)
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    cox = run.result("cox").metrics
    assert (cox["train_samples"], cox["test_samples"]) == (90, 30)
    assert 0.5 < cox["test_concordance"] <= 1.0
    pred = run.output("cox.predictions")
    assert {"cycles", "failed", "void_fraction", "median_cycles_mean", "reliability_mean"} <= set(pred.data_vars)
    assert (run.dir / "cox" / "cox_ph.png").exists()
    weib = run.result("weibull").metrics
    assert math.isfinite(weib["test_log_likelihood_per_unit"])


def test_train_without_target_needs_a_life_model(write_study):
    from reflow.study import load_study

    path = write_study("""
        study: no-target
        stages:
          doe:
            task: data
            source: {synthetic-life-test: {units: 10}}
          fit:
            task: train
            model: imc-growth
            data: doe
    """)
    with pytest.raises(StudyError, match="name the variable"):
        load_study(path)


# ---- failure times from degradation trajectories ---------------------------------------------------------------
# (unit, cycles, delta_bmax): the rows are shuffled below, so the reader must sort each unit by time
TRAJECTORIES = [
    ("A", 0, 0.05), ("A", 100, 0.10), ("A", 500, 0.30), ("A", 1000, 0.50),  # 100 + 0.1/0.2*400 = 300
    ("B", 0, 0.00), ("B", 500, 0.10), ("B", 1000, 0.15), ("B", 1500, 0.18),  # never: censored at 1500
    ("C", 0, 0.25), ("C", 100, 0.30), ("C", 500, 0.40),  # defective at 0: left out
    ("D", 100, 0.30), ("D", 500, 0.40),  # past it at its first measurement (100): failed at 100
    ("E", 0, 0.10), ("E", 500, 0.21), ("E", 1000, 0.19), ("E", 1500, 0.40),  # 0.1/0.11*500 = 454.545; dip ignored
    ("F", 0, 0.00), ("F", 1000, 0.10), ("F", 1000, 0.20), ("F", 1500, 0.35),  # 1000 averages 0.15: 1125
    ("G", 0, 0.10), ("G", 500, np.nan), ("G", 1000, 0.30),  # the missing value is skipped: 0.1/0.2*1000 = 500
]
EXPECTED = {"A": (300.0, True), "B": (1500.0, False), "D": (100.0, True), "E": (500 / 1.1, True),
            "F": (1125.0, True), "G": (500.0, True)}


def _trajectories(rows=TRAJECTORIES, seed=0, **extra) -> xr.Dataset:
    order = np.random.default_rng(seed).permutation(len(rows))
    unit, cycles, value = (np.array([rows[i][k] for i in order]) for k in range(3))
    data = {"led_id": ("sample", unit), "cycles": ("sample", cycles.astype(float)),
            "delta_bmax_mean": ("sample", value.astype(float))}
    data.update({k: ("sample", np.asarray(v)[order]) for k, v in extra.items()})
    return xr.Dataset(data, coords={"sample": np.arange(len(rows))})


DEGRADATION = {"unit": "led_id", "variable": "delta_bmax_mean", "threshold": 0.2}


def test_first_crossing_by_hand():
    from reflow.plugins.reliability.lifedata import first_crossing

    t = np.array([0.0, 100.0, 500.0])
    assert first_crossing(t, np.array([0.0, 0.1, 0.3]), 0.2) == (pytest.approx(300.0), True)
    assert first_crossing(t, np.array([0.0, 0.1, 0.2]), 0.2) == (500.0, False)  # reaching it is not passing it
    # a strength falling below 0.8: 100 + (0.8 - 0.9) / (0.6 - 0.9) * 400 = 233.33
    assert first_crossing(t, np.array([1.0, 0.9, 0.6]), 0.8, "below")[0] == pytest.approx(100 + 400 / 3)


def test_degradation_gives_per_unit_failure_times(caplog):
    from reflow.plugins.reliability.lifedata import LifeParams, read_life_data

    data = _trajectories()
    with caplog.at_level("WARNING", logger="reflow.reliability"):
        life = read_life_data(data, LifeParams(time="cycles", degradation=DEGRADATION), "weibull")
    got = {str(u): (t, bool(e)) for u, t, e in zip(life.units, life.time, life.event, strict=True)}
    assert got.keys() == EXPECTED.keys() and life.excluded == 1  # C was defective before the test
    for unit, (t, failed) in EXPECTED.items():
        assert got[unit][0] == pytest.approx(t, rel=1e-12) and got[unit][1] == failed, unit
    assert "1 unit(s) past delta_bmax_mean > 0.2 per led_id at time 0" in caplog.text and "C" in caplog.text
    assert "1 measurement(s) without a delta_bmax_mean value" in caplog.text
    # each unit's first row in time order (its per-unit covariates come from there)
    first = life.unit_data(data)
    assert list(first["led_id"].values) == list(life.units)
    assert list(first["cycles"].values) == [0.0, 0.0, 100.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("cls", [Weibull, KaplanMeier])
def test_life_models_fit_the_crossing_times(cls, ctx, tmp_path):
    # interpolated crossings: Kaplan-Meier's default; the Weibull's default is the interval (below)
    by_trajectory = cls(degradation={**DEGRADATION, "method": "interpolate"}).fit(_trajectories(), ctx)
    times = [EXPECTED[u][0] for u in sorted(EXPECTED)]
    events = [EXPECTED[u][1] for u in sorted(EXPECTED)]
    by_table = cls().fit(_life(times, events), ctx)
    fitted = {k: v for k, v in by_trajectory.summary().items() if k != "units_excluded_at_start"}
    assert fitted == pytest.approx(by_table.summary(), rel=1e-5)  # the same data up to rounding
    if cls is Weibull:
        assert by_trajectory.summary()["units_excluded_at_start"] == 1
        by_trajectory.save(tmp_path / "w")
        assert Weibull.load(tmp_path / "w").summary()["units_excluded_at_start"] == 1


# the readouts around each crossing, by hand from TRAJECTORIES: (lower, upper); lower 0: past it at the first
# readout after 0 (left-censored); upper inf: never past it (suspended at the last readout)
INTERVALS = {"A": (100.0, 500.0), "B": (1500.0, np.inf), "D": (0.0, 100.0), "E": (0.0, 500.0),
             "F": (1000.0, 1500.0), "G": (0.0, 1000.0)}


def test_weibull_default_is_the_interval_between_readouts(ctx):
    from reflow.plugins.reliability.lifedata import LifeParams, read_life_data

    life = read_life_data(_trajectories(), LifeParams(time="cycles", degradation=DEGRADATION), "weibull",
                          intervals=True)
    got = {str(u): (lo, up) for u, lo, up in zip(life.units, life.censored.lower, life.censored.upper, strict=True)}
    assert got == INTERVALS
    by_trajectory = Weibull(degradation=DEGRADATION).fit(_trajectories(), ctx)
    lower, upper = (np.array([INTERVALS[u][k] for u in sorted(INTERVALS)]) for k in (0, 1))
    table = xr.Dataset({"lo": ("sample", lower), "up": ("sample", upper)})
    by_table = Weibull(lower="lo", upper="up").fit(table, ctx)
    fitted = {k: v for k, v in by_trajectory.summary().items() if k != "units_excluded_at_start"}
    assert fitted == pytest.approx(by_table.summary(), rel=1e-9)
    assert fitted["left_units"] == 3 and fitted["interval_units"] == 2 and fitted["right_units"] == 1
    with pytest.raises(DataError, match="exact and right-censored times only"):
        KaplanMeier(degradation={**DEGRADATION, "method": "interval"}).fit(_trajectories(), ctx)


def test_cox_takes_one_covariate_value_per_unit(ctx):
    voids = {"A": 0.3, "B": 0.0, "C": 0.2, "D": 0.25, "E": 0.15, "F": 0.05, "G": 0.1}
    data = _trajectories(void_fraction=[voids[r[0]] for r in TRAJECTORIES])
    cox = CoxPH(degradation=DEGRADATION, penalizer=0.1).fit(data, ctx)
    units = sorted(EXPECTED)
    table = _life([EXPECTED[u][0] for u in units], [EXPECTED[u][1] for u in units],
                  void_fraction=[voids[u] for u in units])
    reference = CoxPH(penalizer=0.1).configure(["void_fraction"], []).fit(table, ctx)
    assert cox.covariates_ == ["void_fraction"]  # not the unit, the time or the degradation measure
    assert cox.coef_ == pytest.approx(reference.coef_, rel=1e-6)
    assert cox.score(data, ctx)["test_concordance"] == pytest.approx(reference.score(table, ctx)["test_concordance"])
    changing = _trajectories(void_fraction=np.linspace(0.0, 0.3, len(TRAJECTORIES)))
    with pytest.raises(DataError, match="'void_fraction' changes within unit"):
        CoxPH(degradation=DEGRADATION).fit(changing, ctx)


def test_bad_degradation_input_is_a_clear_error(ctx):
    with pytest.raises(ValidationError, match="not both 'failure' and 'degradation'"):
        Weibull(failure="delta_bmax > 0.2", degradation=DEGRADATION)
    with pytest.raises(ValidationError, match="extra"):
        Weibull(degradation={**DEGRADATION, "limit": 3})
    with pytest.raises(DataError, match="no degradation variable 'delta_bmax'"):
        Weibull(degradation={**DEGRADATION, "variable": "delta_bmax"}).fit(_trajectories(), ctx)
    with pytest.raises(DataError, match="no unit 'led'"):
        Weibull(degradation={**DEGRADATION, "unit": "led"}).fit(_trajectories(), ctx)
    with pytest.raises(DataError, match=r"no failures among 7 units \(events from degradation delta_bmax_mean > "
                                        r"0.9 per led_id\)"):
        Weibull(degradation={**DEGRADATION, "threshold": 0.9}).fit(_trajectories(), ctx)
