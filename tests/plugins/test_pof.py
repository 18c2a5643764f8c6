"""Physics-of-failure closed forms against worked examples computed by hand (numbers in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError
from reflow.plugins.reliability.pof import (
    Arrhenius,
    Black,
    CoffinManson,
    Engelmaier,
    NorrisLandzberg,
    engelmaier_exponent,
)
from reflow.testing import check_component


def test_arrhenius_classic_55_to_125_degc():
    # Ea = 0.7 eV, use 55 degC = 328.15 K, test 125 degC = 398.15 K
    # 1/328.15 - 1/398.15 = 0.00053577064 1/K;  Ea/k = 0.7 / 8.617333262e-5 = 8123.1627 K
    # exponent = 8123.1627 * 0.00053577064 = 4.3521521;  AF = e^4.3521521 = 77.645
    # (the textbook figure for this pair is "about 78")
    out = Arrhenius().evaluate_one({"use_temp_c": 55.0, "test_temp_c": 125.0})
    assert out["acceleration_factor"] == pytest.approx(77.6453820553, rel=1e-9)


def test_arrhenius_is_one_at_equal_temperatures_and_inverts():
    a = Arrhenius()
    assert a.evaluate_one({"use_temp_c": 85.0, "test_temp_c": 85.0})["acceleration_factor"] == pytest.approx(1.0)
    up = a.evaluate_one({"use_temp_c": 55.0, "test_temp_c": 125.0})["acceleration_factor"]
    down = a.evaluate_one({"use_temp_c": 125.0, "test_temp_c": 55.0})["acceleration_factor"]
    assert up * down == pytest.approx(1.0)


def test_norris_landzberg_sac_worked_example():
    # Test: -40..125 degC (dT 165 K), 48 cycles/day, Tmax 125 degC; field: dT 60 K, 2 cycles/day, Tmax 85 degC.
    # SAC constants (Pan et al. 2005): n = 2.65, m = 0.136, Ea/k = 2185 K
    # (165/60)^2.65 = 2.75^2.65 = 14.595926
    # (2/48)^0.136 = 0.0416667^0.136 = 0.649070
    # 1/358.15 - 1/398.15 = 0.000280510 1/K; * 2185 = 0.612914; e^0.612914 = 1.845803
    # AF = 14.595926 * 0.649070 * 1.845803 = 17.48671
    out = NorrisLandzberg().evaluate_one({
        "test_delta_t_k": 165.0, "field_delta_t_k": 60.0, "test_cycles_per_day": 48.0,
        "field_cycles_per_day": 2.0, "test_tmax_c": 125.0, "field_tmax_c": 85.0, "test_cycles": 1000.0,
    })
    assert out["acceleration_factor"] == pytest.approx(17.48671411687, rel=1e-9)
    assert out["field_cycles"] == pytest.approx(17486.71411687, rel=1e-9)


def test_norris_landzberg_snpb_and_custom_constants():
    inputs = {"test_delta_t_k": 165.0, "field_delta_t_k": 60.0, "test_cycles_per_day": 48.0,
              "field_cycles_per_day": 2.0, "test_tmax_c": 125.0, "field_tmax_c": 85.0, "test_cycles": 1.0}
    # SnPb (Norris & Landzberg 1969): 2.75^1.9 = 6.834899; (1/24)^(1/3) = 0.346681; e^(1414*0.00028051) = 1.486822
    # AF = 6.834899 * 0.346681 * 1.486822 = 3.523066
    snpb = NorrisLandzberg(alloy="snpb").evaluate_one(inputs)["acceleration_factor"]
    assert snpb == pytest.approx(3.52306576249, rel=1e-9)
    custom = NorrisLandzberg(alloy="custom", n=1.9, m=1 / 3, ea_over_k=1414.0).evaluate_one(inputs)
    assert custom["acceleration_factor"] == pytest.approx(snpb)
    with pytest.raises(ValidationError, match="needs n, m and ea_over_k"):
        NorrisLandzberg(alloy="custom", n=2.0)
    with pytest.raises(ValidationError, match="set alloy: custom"):
        NorrisLandzberg(alloy="sac", n=2.0)


def test_coffin_manson_worked_example():
    # N_f = 1/2 (0.01 / (2 * 0.325))^(1/-0.5) = 1/2 * (0.0153846)^-2 = 1/2 * 4225 = 2112.5
    out = CoffinManson().evaluate_one({"plastic_strain_range": 0.01})
    assert out["cycles_to_failure"] == pytest.approx(2112.5, rel=1e-12)


def test_engelmaier_worked_example_and_void_derating():
    # c = -0.442 - 6e-4 * 25 + 1.74e-2 * ln(1 + 24) = -0.442 - 0.015 + 0.0174 * 3.2188758 = -0.4009916
    # N_f = 1/2 (0.01 / 0.65)^(1/c) = 1/2 * 0.0153846^-2.4938181 = 16597.63
    e = Engelmaier()
    base = {"shear_strain_range": 0.01, "mean_solder_temp_c": 25.0, "cycles_per_day": 24.0, "void_fraction": 0.0}
    out = e.evaluate_one(base)
    assert out["fatigue_exponent"] == pytest.approx(-0.40099156065, rel=1e-10)
    assert out["cycles_to_failure"] == pytest.approx(16597.630542, rel=1e-8)
    # 20 % voids: strain 0.01 / 0.8 = 0.0125; N_f = 1/2 (0.0125 / 0.65)^-2.4938181 = 9514.15
    voided = e.evaluate_one({**base, "void_fraction": 0.2})
    assert voided["effective_strain_range"] == pytest.approx(0.0125)
    assert voided["cycles_to_failure"] == pytest.approx(9514.1534, rel=1e-7)


def test_engelmaier_exponent_trends():
    # hotter joints and slower cycling give a more negative c, hence fewer cycles to failure
    assert engelmaier_exponent(100.0, 24.0) < engelmaier_exponent(25.0, 24.0)
    assert engelmaier_exponent(25.0, 1.0) < engelmaier_exponent(25.0, 100.0)


@pytest.mark.parametrize("bad, match", [
    ({"void_fraction": 1.0}, "void_fraction"),
    ({"cycles_per_day": 5000.0}, "1 to 1000 cycles per day"),
    ({"shear_strain_range": 0.0}, "strain range must be positive"),
])
def test_engelmaier_rejects_inputs_outside_the_model(bad, match):
    base = {"shear_strain_range": 0.01, "mean_solder_temp_c": 25.0, "cycles_per_day": 24.0, "void_fraction": 0.0}
    with pytest.raises(ValueError, match=match):
        Engelmaier().evaluate_one({**base, **bad})


def test_black_mttf_and_acceleration():
    b = Black(activation_energy_ev=0.7, current_exponent=2.0, prefactor_h=1e10)
    out = b.evaluate_one({"current_density_a_per_cm2": 1e6, "temp_c": 105.0,
                          "test_current_density_a_per_cm2": 2e6, "test_temp_c": 250.0})
    # MTTF = 1e10 * (1e6)^-2 * exp(0.7 / (8.617333262e-5 * 378.15)) = 1e-2 * exp(21.481205)
    assert out["mttf_h"] == pytest.approx(1e-2 * math.exp(0.7 / (8.617333262e-5 * 378.15)), rel=1e-12)
    # AF = 2^2 * exp(8123.1627 * (1/378.15 - 1/523.15)) = 4 * exp(8123.1627 * 0.000732954) = 4 * e^5.953904
    assert out["acceleration_factor"] == pytest.approx(4 * math.exp(8123.16268522 * (1 / 378.15 - 1 / 523.15)))
    test_mttf = 1e10 * 2e6 ** -2 * math.exp(0.7 / (8.617333262e-5 * 523.15))
    assert out["acceleration_factor"] == pytest.approx(out["mttf_h"] / test_mttf, rel=1e-9)


@pytest.mark.parametrize("cls", [Arrhenius, Black, CoffinManson, Engelmaier, NorrisLandzberg])
def test_contract(cls, tmp_path):
    check_component(cls, tmp_path=tmp_path)


def test_engelmaier_in_a_pipeline_after_a_void_doe(write_study, tmp_path):
    from reflow.runner import run_study
    from reflow.study import load_study

    study = write_study("""
        study: voids-to-life
        stages:
          life:
            task: doe
            design: {full-factorial: {levels: 3}}
            space:
              void_fraction: {low: 0.0, high: 0.3}
              shear_strain_range: {value: 0.01}
            evaluate: [engelmaier, norris-landzberg]
    """)
    run = run_study(load_study(study), out=tmp_path / "runs", quiet=True)
    trials = run.result("life").outputs["trials"]
    lives = trials["cycles_to_failure"].values
    assert list(trials["status"].values) == ["ok"] * 3
    assert lives[0] > lives[1] > lives[2]  # more voids, shorter life
    assert trials["field_cycles"].values[0] == pytest.approx(1000 * 17.48671411687, rel=1e-6)


# --- Engelmaier calibrated to a test, B10 from a Weibull shape, the strain from a named input -----------------

REFERENCE = {"cycles_to_failure": 2000.0, "shear_strain_range": 0.004, "mean_solder_temp_c": 42.5,
             "cycles_per_day": 48.0, "void_fraction": 0.05}


def test_engelmaier_calibration_hand_computed():
    # test -40..125 degC (mean 42.5), 48 cycles/day: c = -0.442 - 6e-4 * 42.5 + 0.0174 ln 49
    #   = -0.442 - 0.0255 + 0.0174 * 3.8918203 = -0.39978233
    # derated strain 0.004 / 0.95 = 0.00421053; eps_f = 0.00421053 / (2 * 4000^-0.39978233)
    #   = 0.00421053 / (2 * exp(-0.39978233 * 8.2940496)) = 0.00421053 / (2 * 0.0363046) = 0.0579891
    e = Engelmaier(calibrate=REFERENCE, weibull_shape=3.0)
    assert e.ductility() == pytest.approx(0.0579891, rel=1e-5)
    at_reference = e.evaluate_one({"shear_strain_range": 0.004, "mean_solder_temp_c": 42.5, "cycles_per_day": 48.0,
                                   "void_fraction": 0.05})
    assert at_reference["cycles_to_failure"] == pytest.approx(2000.0, rel=1e-12)  # the test is reproduced
    assert at_reference["fatigue_ductility"] == pytest.approx(0.0579891, rel=1e-5)
    # B10 = eta (-ln 0.9)^(1/3) = 2000 * 0.1053605^(1/3) = 2000 * 0.4723087 = 944.617
    assert at_reference["b10_cycles"] == pytest.approx(944.6174, rel=1e-6)
    # the field: 55 degC mean, 2 cycles/day: c = -0.442 - 0.033 + 0.0174 ln 3 = -0.45588415;
    # strain 0.0015 with 10 % voids: 0.0016667; N_f = 1/2 (0.0016667 / (2 * 0.0579891))^(1 / -0.45588415)
    #   = 1/2 * 0.01437054^-2.1935502 = 5503.35; B10 = 5503.35 * 0.4723087 = 2599.28
    field = e.evaluate_one({"shear_strain_range": 0.0015, "mean_solder_temp_c": 55.0, "cycles_per_day": 2.0,
                            "void_fraction": 0.1})
    assert field["fatigue_exponent"] == pytest.approx(-0.45588415, rel=1e-7)
    assert field["cycles_to_failure"] == pytest.approx(5503.35, rel=1e-5)
    assert field["b10_cycles"] == pytest.approx(2599.28, rel=1e-5)
    names = [v.name for v in e.output_variables()]
    assert names[-2:] == ["fatigue_ductility", "b10_cycles"]
    assert [v.name for v in Engelmaier().output_variables()] == ["cycles_to_failure", "fatigue_exponent",
                                                                  "effective_strain_range"]


def test_engelmaier_more_voids_in_the_test_mean_a_tougher_solder():
    """The same observed life with more voids in the tested joints means the solder itself lasts longer."""
    clean = Engelmaier(calibrate={**REFERENCE, "void_fraction": 0.0}).ductility()
    voided = Engelmaier(calibrate={**REFERENCE, "void_fraction": 0.2}).ductility()
    assert voided == pytest.approx(clean / 0.8, rel=1e-12)  # eps_f' is linear in the derated strain


def test_engelmaier_strain_from_a_named_input():
    e = Engelmaier(strain="solder_shear_strain_range")
    names = [v.name for v in e.input_variables()]
    assert names[0] == "solder_shear_strain_range" and "shear_strain_range" not in names
    assert e.input_variables()[0].default is None  # a pipeline without the simulation fails, never takes 0.01
    base = {"mean_solder_temp_c": 25.0, "cycles_per_day": 24.0, "void_fraction": 0.0}
    out = e.evaluate_one({**base, "solder_shear_strain_range": 0.01})
    assert out["cycles_to_failure"] == pytest.approx(16597.630542, rel=1e-8)  # the worked example above
    from reflow.errors import EvaluationError
    from reflow.evaluation import run_step

    with pytest.raises(EvaluationError, match="missing inputs solder_shear_strain_range"):
        run_step(e, base)


def test_engelmaier_bad_calibration_params():
    with pytest.raises(ValidationError, match="either fatigue_ductility or calibrate"):
        Engelmaier(fatigue_ductility=0.3, calibrate=REFERENCE)
    with pytest.raises(ValidationError, match="cycles_to_failure"):
        Engelmaier(calibrate={**REFERENCE, "cycles_to_failure": 0})
    with pytest.raises(ValidationError, match="cycles_per_day"):
        Engelmaier(calibrate={**REFERENCE, "cycles_per_day": 5000})
    with pytest.raises(ValidationError, match="extra"):
        Engelmaier(calibrate={**REFERENCE, "cycles": 3})
    with pytest.raises(ValidationError, match="weibull_shape"):
        Engelmaier(weibull_shape=0)
    with pytest.raises(ValidationError, match="strain"):
        Engelmaier(strain="solder strain")


def test_engelmaier_calibrated_from_stage_values_in_an_optimization(write_study, tmp_path):
    """Stage values inside the nested calibrate mapping; b10_cycles (an output only weibull_shape adds) is an
    objective: checked when the stage starts, with the numbers in place."""
    import json

    from reflow.runner import run_study
    from reflow.study import load_study

    study = write_study("""
        study: calibrated-life
        seed: 2
        stages:
          test:
            task: doe
            design: {full-factorial: {levels: 2}}
            space:
              shear_strain_range: {low: 0.004, high: 0.006}
              void_fraction: {value: 0.05}
            evaluate: engelmaier
          design:
            task: optimize
            space:
              shear_strain_range: {low: 0.001, high: 0.003}
              mean_solder_temp_c: {value: 55}
              cycles_per_day: {value: 2}
            evaluate:
              engelmaier:
                calibrate:
                  cycles_to_failure: "${test.trials.cycles_to_failure:min}"
                  shear_strain_range: "${test.trials.shear_strain_range:max}"
                  mean_solder_temp_c: 25
                  cycles_per_day: 24
                  void_fraction: 0.05
                weibull_shape: "${test.trials.fatigue_exponent:count}"
            optimizer: sobol
            objectives: {b10_cycles: max}
            budget: {initial: 0, evaluations: 4}
    """)
    run = run_study(load_study(study), out=tmp_path / "runs", quiet=True)
    trials = run.result("design").outputs["trials"]
    assert list(trials["status"].values) == ["ok"] * 4
    # the reference is the test's worst design (strain 0.006), so eps_f' is the default 0.325 again
    assert np.allclose(trials["fatigue_ductility"].values, 0.325, rtol=1e-12)
    expected = trials["cycles_to_failure"].values * (-math.log(0.9)) ** (1 / 2.0)  # shape: the 2 test trials
    assert np.allclose(trials["b10_cycles"].values, expected, rtol=1e-12)
    values = json.loads((run.dir / "design" / "stage_values.json").read_text())
    assert values["${test.trials.shear_strain_range:max}"] == pytest.approx(0.006)
    assert values["${test.trials.fatigue_exponent:count}"] == 2.0
