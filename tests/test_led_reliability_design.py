"""The flagship chained study (studies/led_reliability_design.yaml) end to end at a tiny size.

SAM lot -> inspection model (two targets) -> a new lot -> predicted Delta B_max and voids -> Weibull from the
predicted trajectories (interval-censored between readouts) -> nominal FEA -> Bayesian optimization on FEA +
calibrated Engelmaier under a limit on the field B10's lower confidence bound -> verified recommendation. The
checks follow the numbers along the chain: each stage must have used what the stage before it produced.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from reflow.runner import run_study
from reflow.study import load_study

STUDY = Path(__file__).resolve().parents[1] / "studies" / "led_reliability_design.yaml"

TINY = [
    "stages.sam.source.synthetic-sam.leds=40",
    "stages.sam.source.synthetic-sam.size=16",
    "stages.lot.source.synthetic-sam.leds=24",
    "stages.lot.source.synthetic-sam.size=16",
    "stages.inspect.model.cnn.width=8",
    "stages.inspect.model.cnn.epochs=12",
    "stages.inspect.model.cnn.batch_size=32",
    "stages.design.budget.initial=8",
    "stages.design.budget.batch_size=4",
    "stages.design.budget.evaluations=12",
    "stages.design.verify.max=3",
]


def _limit(output: str) -> float:
    """The design stage's constraint on ``output`` as the study file states it."""
    import yaml
    from reflow.expressions import parse_constraint

    constraints = yaml.safe_load(STUDY.read_text())["stages"]["design"]["constraints"]
    return next(c.rhs for c in map(parse_constraint, constraints) if c.names == [output])


LIFE_LIMIT, STRESS_LIMIT = _limit("b10_cycles_lower"), _limit("die_max_principal_stress_mpa")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a small shared CPU: threads that wait on each other are slower
    try:
        yield run_study(load_study(STUDY, overrides=TINY), out=tmp_path_factory.mktemp("runs"), quiet=True)
    finally:
        torch.set_num_threads(before)


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.slow
def test_every_stage_ran(run):
    assert {name: s["status"] for name, s in run.manifest["stages"].items()} == {
        name: "done" for name in ("sam", "inspect", "lot", "joints", "life", "life_tta", "current", "nominal",
                                  "design")}


def test_the_inspection_model_predicts_both_targets_of_the_new_lot(run):
    joints = run.output("joints.predictions")
    lot = run.output("lot")
    assert joints.sizes["sample"] == lot.sizes["sample"] == 24 * 8
    assert {"delta_bmax_mean", "void_fraction_mean", "led_id", "cycles"} <= set(joints.data_vars)
    metrics = run.result("joints").metrics
    assert {"delta_bmax_r2", "void_fraction_r2"} <= set(metrics)  # scored against the new lot's own labels
    trained = run.result("inspect").metrics
    assert {"delta_bmax_r2", "void_fraction_r2", "delta_bmax_f1"} <= set(trained)


def _readout_intervals(joints) -> tuple[np.ndarray, np.ndarray]:
    """Each LED's [lower, upper]: between its last readout at or below 0.2 and its first above (computed here)."""
    lower, upper = [], []
    for led in np.unique(joints["led_id"].values):
        mine = joints["led_id"].values == led
        order = np.argsort(joints["cycles"].values[mine])
        t = joints["cycles"].values[mine][order].astype(float)
        v = joints["delta_bmax_mean"].values[mine][order]
        if t[0] == 0 and v[0] > 0.2:
            continue  # defective before the test: left out
        above = np.flatnonzero(v > 0.2)
        lower.append(t[-1] if above.size == 0 else t[above[0] - 1])
        upper.append(np.inf if above.size == 0 else t[above[0]])
    return np.asarray(lower), np.asarray(upper)


def test_life_comes_from_the_predicted_trajectories_as_intervals(run):
    from scipy import stats

    life = run.result("life").metrics
    assert {"beta", "eta", "b10_cycles", "b10_cycles_lower", "units", "failures"} <= set(life)
    assert 2 <= life["failures"] <= life["units"] <= 24 and life["beta"] > 0 and life["eta"] > 0
    # each LED failed between the readouts around its predicted Delta B_max's first crossing of 0.2
    lower, upper = _readout_intervals(run.output("joints.predictions"))
    with np.load(run.dir / "life" / "model" / "state.npz") as state:
        got = sorted(zip(state["lower"], state["upper"], strict=True))
    assert got == sorted(zip(lower, upper, strict=True))
    assert int(np.isfinite(upper).sum()) == life["failures"] and lower.size == life["units"]
    # the Weibull is the interval-censored maximum likelihood (scipy's CensoredData, not reflow's fit)
    beta, _, eta = stats.weibull_min.fit(stats.CensoredData(interval=np.column_stack([lower, upper])), floc=0)
    assert life["eta"] == pytest.approx(eta, rel=1e-4) and life["beta"] == pytest.approx(beta, rel=1e-4)
    # a one-sided 90 % lower bound: below the estimate
    assert 0 < life["b10_cycles_lower"] < life["b10_cycles"]


def test_the_design_stage_used_the_numbers_of_the_stages_before_it(run):
    values = _json(run.dir / "design" / "stage_values.json")
    joints = run.output("joints.predictions")
    voids = joints["void_fraction_mean"].values
    p95 = values["${joints.predictions.void_fraction_mean:p95}"]
    assert p95 == pytest.approx(float(np.percentile(voids, 95)), rel=1e-12)
    assert values["${joints.predictions.void_fraction_mean:median}"] == pytest.approx(float(np.median(voids)))
    life = run.result("life").metrics
    assert values["${life.eta}"] == pytest.approx(life["eta"]) and values["${life.beta}"] == pytest.approx(life["beta"])
    assert values["${life.b10_cycles}"] == pytest.approx(life["b10_cycles"])
    assert values["${life.b10_cycles_lower}"] == pytest.approx(life["b10_cycles_lower"])
    nominal = run.output("nominal.trials")
    strain = float(nominal["solder_shear_strain_range"].values[0])
    assert values["${nominal.trials.solder_shear_strain_range:mean}"] == pytest.approx(strain)
    assert float(nominal["delta_t_k"].values[0]) == -165.0  # the thermal-shock swing

    trials = run.output("design.trials")
    ok = trials["status"].values == "ok"
    assert ok.sum() == 12 and np.allclose(trials["void_fraction"].values, p95)
    # Engelmaier's ductility reproduces the lot's eta at the nominal test strain with the median voids:
    # eps_f = (strain / (1 - v_median)) / (2 (2 eta)^c), c at 42.5 degC and 48 cycles/day
    c_test = -0.442 - 6e-4 * 42.5 + 1.74e-2 * math.log(1 + 48)
    median = values["${joints.predictions.void_fraction_mean:median}"]
    eps_f = strain / (1 - median) / (2 * (2 * life["eta"]) ** c_test)
    np.testing.assert_allclose(trials["fatigue_ductility"].values[ok], eps_f, rtol=1e-12)
    # each design: N_f from its FEA strain derated by the p95 voids at the field's c; B10 with the lot's shape
    c_field = -0.442 - 6e-4 * 55 + 1.74e-2 * math.log(1 + 2)
    strain_eff = trials["solder_shear_strain_range"].values[ok] / (1 - p95)
    n_f = 0.5 * (strain_eff / (2 * eps_f)) ** (1 / c_field)
    np.testing.assert_allclose(trials["cycles_to_failure"].values[ok], n_f, rtol=1e-10)
    np.testing.assert_allclose(trials["b10_cycles"].values[ok], n_f * (-math.log(0.9)) ** (1 / life["beta"]),
                               rtol=1e-10)
    # the field B10's lower bound carries the lot's test B10 bound by the same acceleration
    np.testing.assert_allclose(trials["b10_cycles_lower"].values[ok],
                               trials["b10_cycles"].values[ok] * life["b10_cycles_lower"] / life["b10_cycles"],
                               rtol=1e-10)


def test_verify_holds_the_fea_values_of_the_chosen_designs(run):
    from reflow.plugins.physics.fea import package_outputs, solve_package

    assert (run.dir / "design" / "verify.nc").exists()
    verify = run.output("design.verify")
    assert 1 <= verify.sizes["trial"] <= 3 and (verify["status"].values == "ok").all()
    first = verify.isel(trial=0)
    design = {n: first[n].item() for n in ("die_thickness_mm", "substrate_thickness_mm", "bump_height_mm",
                                           "mold_thickness_mm", "underfill")}
    fea = package_outputs(solve_package({**design, "delta_t_k": -60.0}))
    assert float(first["warpage_abs_um_true"]) == pytest.approx(fea["warpage_abs_um"], rel=1e-9)
    assert float(first["die_max_principal_stress_mpa_true"]) == pytest.approx(fea["die_max_principal_stress_mpa"],
                                                                            rel=1e-9)
    metrics = run.result("design").metrics
    assert metrics["verify_ok"] == verify.sizes["trial"]
    # the verified designs are the best feasible ones (the optimizer ran on the same FEA): the recommendation is the
    # least warped of them
    assert metrics["recommended_by"] == "verify"
    chosen = verify.sel(trial=metrics["recommended_trial"])
    assert metrics["recommended_warpage_abs_um"] == pytest.approx(float(chosen["warpage_abs_um_true"]))
    assert metrics["recommended_b10_cycles_lower"] >= LIFE_LIMIT
    assert metrics["recommended_b10_cycles_lower"] == pytest.approx(float(chosen["b10_cycles_lower_true"]))
    assert metrics["recommended_die_max_principal_stress_mpa"] <= STRESS_LIMIT
    ok = verify["status"].values == "ok"
    assert metrics["recommended_warpage_abs_um"] == pytest.approx(float(verify["warpage_abs_um_true"].values[ok].min()))
