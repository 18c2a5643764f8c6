"""IGBT junction-temperature samples: the electro-thermal fixed point, Vce(sat)'s temperature coefficient, aging."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from pydantic import ValidationError
from reflow.errors import DataError
from reflow.plugins.physics.igbt import IgbtJunctionSamples, ThermalRunaway, VceSatModel, solve_operating_point
from reflow.plugins.physics.thermal import JunctionTemperature
from reflow.plugins.tasks.data import DataTask
from reflow.testing import check_component, test_context

CHIP = VceSatModel()
THERMAL = JunctionTemperature()
QUIET = {"noise": {"vce_v": 0.0, "ic_rel": 0.0, "tj_k": 0.0},
         "spread": {"void_fraction": [0.0, 0.0], "life_sigma": 0.0, "chip_rel": 0.0}}


def _load(tmp_path, seed: int = 0, **params):
    return IgbtJunctionSamples(**params).load(test_context(tmp_path, seed=seed))


def test_fixed_point_satisfies_the_electrical_and_the_thermal_equation():
    op = solve_operating_point(400.0, 45.0, 25000.0, chip=CHIP, thermal=THERMAL, duty=0.25, void_fraction=0.05)
    lift = CHIP.lift_fraction(25000.0)
    # electrical: Vce(sat) is the characteristic at the solved Tj; the power is Vce Ic duty
    assert op.vce_sat_v == pytest.approx(CHIP.vce(op.tj_c, 400.0, lift), abs=1e-12)
    assert op.power_w == pytest.approx(op.vce_sat_v * 400.0 * 0.25, rel=1e-12)
    # thermal: the junction-temperature evaluator gives back the same Tj for that power
    thermal = THERMAL.evaluate_one({"power_w": op.power_w, "ambient_c": 45.0, "aging_cycles": 25000.0,
                                    "void_fraction": 0.05, "time_s": 0.0})
    assert thermal["tj_c"] == pytest.approx(op.tj_c, abs=1e-8)
    # and both match the closed form of the affine map Tj = Ta + k (A + B (Tj - 25)), k = Rth duty Ic
    k, b = op.rth_ja_k_per_w * 0.25 * 400.0, CHIP.temperature_coefficient(400.0)
    a = CHIP.vce(25.0, 400.0, lift)
    assert op.tj_c == pytest.approx((45.0 + k * (a - 25.0 * b)) / (1.0 - k * b), abs=1e-8)
    assert op.tj_c > 45.0 + k * a  # the positive coefficient heats the junction beyond the uncoupled estimate


def test_iteration_contracts_by_the_loop_gain():
    op = solve_operating_point(450.0, 25.0, 0.0, chip=CHIP, thermal=THERMAL, duty=0.25, tol_k=1e-10)
    assert 0.0 < op.loop_gain < 0.2
    ratios = np.array(op.residuals_k[1:6]) / np.array(op.residuals_k[:5])
    np.testing.assert_allclose(ratios, op.loop_gain, rtol=1e-6)  # linear convergence at rate |g| (Banach)
    assert op.residuals_k[-1] <= 1e-10 and op.iterations == len(op.residuals_k) < 20


def test_runaway_is_reported():
    hot = VceSatModel(r_tc_per_k=0.05)  # an absurd coefficient: g = 0.29 * 1 * 450 * (-0.001 + 450 * 1.7e-3 * 0.05)
    with pytest.raises(ThermalRunaway, match="loop gain"):
        solve_operating_point(450.0, 25.0, 0.0, chip=hot, thermal=THERMAL, duty=1.0)
    with pytest.raises(ValueError, match="steady"):
        solve_operating_point(450.0, 25.0, 0.0, chip=CHIP, thermal=JunctionTemperature(mode="transient"), duty=0.2)


def test_vce_sat_temperature_coefficient_at_rated_current():
    # stated: +2.8 mV/K at 450 A, fitted to the FF450R12IE4 datasheet (1.75 V at 25 degC, 2.10 V at 150 degC)
    tc = (CHIP.vce(150.0, 450.0) - CHIP.vce(25.0, 450.0)) / 125.0
    assert tc == pytest.approx(2.825e-3, rel=1e-9)
    assert 2e-3 <= tc <= 5e-3 and tc == pytest.approx(CHIP.temperature_coefficient(450.0))
    assert CHIP.vce(25.0, 450.0) == pytest.approx(1.75, abs=0.01)
    assert CHIP.vce(150.0, 450.0) == pytest.approx(2.10, abs=0.01)
    assert CHIP.temperature_coefficient(50.0) < 0 < CHIP.temperature_coefficient(200.0)  # crossover ~118 A


def test_vce_sat_rises_with_tj_in_the_generated_data(tmp_path):
    ds = _load(tmp_path, modules=1, aging_cycles=[0.0], currents_a=[450.0], ambient_c=[0.0, 20.0, 40.0, 60.0],
               **QUIET)
    tj, vce = ds["tj_c"].values, ds["vce_sat_v"].values
    assert np.all(np.diff(tj) > 0) and np.all(np.diff(vce) > 0)
    slope = np.polyfit(tj, vce, 1)[0]
    assert slope == pytest.approx(ds.attrs["vce_tc_at_rated_v_per_k"], rel=1e-6)
    assert slope == pytest.approx(2.825e-3, rel=1e-6)


def test_tj_rises_with_aging_at_fixed_current():
    cycles = [0.0, 10000.0, 20000.0, 30000.0, 40000.0]
    points = [solve_operating_point(300.0, 45.0, n, chip=CHIP, thermal=THERMAL, duty=0.25) for n in cycles]
    tj = [p.tj_c for p in points]
    assert tj == sorted(tj) and tj[-1] - tj[0] > 5.0
    # both mechanisms: the die attach cracks (Rth up) and bond wires lift (Vce(sat) up at the same Tj)
    assert [p.rth_ja_k_per_w for p in points] == sorted(p.rth_ja_k_per_w for p in points)
    fresh = CHIP.vce(100.0, 450.0)
    assert CHIP.vce(100.0, 450.0, CHIP.lift_fraction(36000.0)) / fresh - 1.0 == pytest.approx(0.05, abs=0.005)


def test_dataset_layout_units_and_groups(tmp_path):
    ds = _load(tmp_path, modules=3, aging_cycles=[0.0, 20000.0], currents_a=[100.0, 300.0], ambient_c=[25.0, 60.0])
    assert ds.sizes["sample"] == 3 * 2 * 2 * 2
    units = {n: ds[n].attrs.get("units") for n in ds.data_vars}
    assert units["vce_sat_v"] == "V" and units["ic_a"] == "A" and units["tj_c"] == "degC"
    assert units["aging_cycles"] == "cycles" and units["power_w"] == "W"
    assert all(u is not None for u in units.values())
    assert sorted(np.unique(ds["module_id"].values)) == [0, 1, 2]
    assert np.all(np.bincount(ds["module_id"].values) == 8)
    assert ds.attrs["features"] == "vce_sat_v,ic_a,aging_cycles" and ds.attrs["group"] == "module_id"
    # noise is on the measured columns only
    assert not np.allclose(ds["vce_sat_v"], ds["vce_sat_true_v"])
    assert np.std(ds["vce_sat_v"] - ds["vce_sat_true_v"]) < 0.01


def test_seeded_reproducibility(tmp_path):
    small = {"modules": 2, "aging_cycles": [0.0, 30000.0], "currents_a": [200.0, 400.0], "ambient_c": [40.0]}
    a, b = _load(tmp_path, seed=5, **small), _load(tmp_path, seed=5, **small)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    c = _load(tmp_path, seed=6, **small)
    assert not np.array_equal(a["tj_c"].values, c["tj_c"].values)
    assert not np.array_equal(a["void_fraction"].values, c["void_fraction"].values)


def test_over_temperature_points_are_not_measured(tmp_path):
    hot = {"modules": 1, "aging_cycles": [0.0, 40000.0], "currents_a": [450.0], "ambient_c": [25.0, 65.0],
           "duty": 0.4, **QUIET}
    kept = _load(tmp_path, max_tj_c=175.0, **hot)
    every = _load(tmp_path, max_tj_c=None, **hot)
    assert every.sizes["sample"] == 4 and every["tj_true_c"].max() > 175.0
    assert kept["tj_true_c"].max() <= 175.0
    assert kept.sizes["sample"] == 2 and kept.attrs["skipped_over_temperature"] == 2  # Tj 132, 158 kept; 179, 206 not
    with pytest.raises(DataError, match="max_tj_c"):
        _load(tmp_path, max_tj_c=30.0, **hot)
    runaway = {**hot, "chip": {"r_tc_per_k": 0.05}, "duty": 1.0}
    with pytest.raises(DataError, match="runs away"):  # the protection trips on every point
        _load(tmp_path, **runaway)
    with pytest.raises(ThermalRunaway):  # no protection: the study learns why
        _load(tmp_path, max_tj_c=None, **runaway)


def test_bad_params():
    with pytest.raises(ValidationError, match="currents_a needs at least one value"):
        IgbtJunctionSamples(currents_a=[])
    with pytest.raises(ValidationError, match="aging_cycles must be >= 0"):
        IgbtJunctionSamples(aging_cycles=[-1.0])
    with pytest.raises(ValidationError, match="currents_a must be > 0"):
        IgbtJunctionSamples(currents_a=[0.0, 100.0])
    with pytest.raises(ValidationError, match="thermal.mode must be 'steady'"):
        IgbtJunctionSamples(thermal={"mode": "transient"})
    with pytest.raises(ValidationError, match="void_fraction must be a range"):
        IgbtJunctionSamples(spread={"void_fraction": [0.2, 0.1]})
    with pytest.raises(ValidationError, match="duty"):
        IgbtJunctionSamples(duty=0.0)
    with pytest.raises(ValidationError, match="no_such"):
        IgbtJunctionSamples(no_such=1)


def test_data_task_plots(tmp_path, caplog):
    task = DataTask(source={"igbt-junction-samples": {"modules": 2, "aging_cycles": [0.0, 40000.0],
                                                      "currents_a": [150.0, 450.0]}},
                    plot=[{"x": "vce_sat_v", "y": "tj_c", "color": "aging_cycles"}, {"x": "ic_a", "y": "nope"}])
    result = task.run(test_context(tmp_path))
    assert result.metrics["samples"] == 2 * 2 * 2 * 3
    with caplog.at_level(logging.WARNING, logger="reflow"):
        paths = task.plot(result, tmp_path)
    assert [p.name for p in paths] == ["tj_c_vs_vce_sat_v_by_aging_cycles.png"]
    assert paths[0].stat().st_size > 10_000
    assert "nope" in caplog.text


def test_contract(tmp_path):
    check_component(IgbtJunctionSamples, {"modules": 2, "currents_a": [200.0, 450.0]}, tmp_path=tmp_path)


def test_study_is_valid_and_plots_tj_against_vce_by_aging():
    from pathlib import Path

    from reflow.study import load_study

    study = load_study(Path(__file__).resolve().parents[2] / "studies" / "igbt_junction_temperature.yaml")
    task = study.stages["samples"].create_task()
    assert task.params.source.name == "igbt-junction-samples"
    assert {(p.x, p.y, p.color) for p in task.params.plot} >= {("vce_sat_v", "tj_c", "aging_cycles")}
