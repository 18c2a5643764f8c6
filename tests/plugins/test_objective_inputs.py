"""Objectives and constraints on a space parameter: they read the trial's input (not a NaN output column), and a
name that is neither an evaluator output nor a space parameter is refused at validation with "did you mean"."""

from __future__ import annotations

import json

import numpy as np
import pytest
from reflow.errors import ReflowError, StudyError
from reflow.runner import execute, start_run
from reflow.store import read_dataset
from reflow.study import validate_study

FAST_BO = {"num_restarts": 2, "raw_samples": 32, "mc_samples": 32}
SPACE = {"die_thickness_mm": {"low": 0.1, "high": 0.8}, "substrate_thickness_mm": {"low": 0.4, "high": 1.6}}


def stage(**kw) -> dict:
    st = {"task": "optimize", "space": SPACE, "evaluate": "bilayer-warpage", "optimizer": {"qlognei": FAST_BO},
          "objectives": {"warpage_um": "min"}, "budget": {"initial": 4, "evaluations": 10}}
    st.update(kw)
    return st


def load(tmp_path, st: dict):
    return validate_study({"study": "inputs", "seed": 2, "stages": {"opt": st}}, path=tmp_path / "study.yaml")


def run(tmp_path, st: dict):
    r = start_run(load(tmp_path, st), tmp_path / "runs", quiet=True)
    execute(r)
    folder = r.dir / "opt"
    return read_dataset(folder / "trials.nc"), json.loads((folder / "metrics.json").read_text())


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch):
    from reflow.plugins.tasks.optimize import OptimizeTask

    monkeypatch.setattr(OptimizeTask, "plot", lambda self, result, folder: [])


def test_an_objective_on_an_input_takes_the_trial_input_and_reaches_its_bound(tmp_path):
    trials, metrics = run(tmp_path, stage(objectives={"die_thickness_mm": "min"},
                                          recommend="die_thickness_mm"))
    x = trials["die_thickness_mm"].values.astype(float)
    assert np.isfinite(x).all()
    assert metrics["feasible"] == metrics["evaluations"] == 10
    assert metrics["best_die_thickness_mm"] == pytest.approx(x.min())
    assert metrics["best_die_thickness_mm"] <= 0.1 + 0.02, "the optimizer did not reach the lower bound"
    assert metrics["recommended_die_thickness_mm"] == pytest.approx(x.min())
    assert np.isfinite(trials["warpage_um"].values).all()  # the evaluator's outputs are still recorded


def test_two_objectives_one_of_them_an_input(tmp_path):
    trials, metrics = run(tmp_path, stage(objectives={"warpage_um": "min", "die_thickness_mm": "min"},
                                          optimizer={"sobol": {}}, budget={"initial": 4, "evaluations": 12}))
    assert metrics["feasible"] == 12
    assert metrics["pareto_points"] >= 1 and metrics["hypervolume"] > 0


def test_a_constraint_on_an_input_is_honoured(tmp_path):
    trials, metrics = run(tmp_path, stage(constraints=["die_thickness_mm <= 0.3"]))
    x = trials["die_thickness_mm"].values.astype(float)
    assert np.all(x <= 0.3 + 1e-6), x
    assert metrics["feasible"] == metrics["evaluations"] == 10


def test_a_misspelled_objective_is_refused_with_a_suggestion(tmp_path):
    with pytest.raises(StudyError) as info:
        load(tmp_path, stage(objectives={"die_thicknes_mm": "min"}))
    (msg,) = [p.message for p in info.value.problems]
    assert "'die_thicknes_mm' is not an output of the evaluator" in msg
    assert "did you mean 'die_thickness_mm'?" in msg


def test_a_misspelled_constraint_name_is_refused_with_a_suggestion(tmp_path):
    with pytest.raises(StudyError) as info:
        load(tmp_path, stage(constraints=["warpage_umm <= 40"]))
    assert any("did you mean 'warpage_um'?" in p.message for p in info.value.problems), info.value.problems


def test_verify_of_an_objective_on_an_input_is_refused(tmp_path):
    with pytest.raises(StudyError) as info:
        load(tmp_path, stage(objectives={"die_thickness_mm": "min"}, verify={"evaluate": "bilayer-warpage"}))
    assert any("nothing to verify" in p.message for p in info.value.problems), info.value.problems


def surrogate_study(objectives: dict) -> dict:
    """The report's shape: the evaluator is a trained stage, whose outputs validation cannot know."""
    return {"study": "inputs-surrogate", "seed": 2, "stages": {
        "doe": {"task": "doe", "design": {"lhs": {"samples": 12}}, "space": SPACE, "evaluate": "bilayer-warpage"},
        "surr": {"task": "train", "model": {"sklearn": {"estimator": "ols"}}, "data": "doe.trials",
                 "target": "warpage_um", "features": list(SPACE)},
        "opt": stage(evaluate={"stage": "surr"}, objectives=objectives, optimizer={"sobol": {}},
                     budget={"initial": 4, "evaluations": 8}),
    }}


def test_an_objective_on_an_input_with_a_trained_model_as_evaluator(tmp_path):
    r = start_run(validate_study(surrogate_study({"die_thickness_mm": "min", "warpage_um": "min"}),
                                 path=tmp_path / "study.yaml"), tmp_path / "runs", quiet=True)
    execute(r)
    trials = read_dataset(r.dir / "opt" / "trials.nc")
    metrics = json.loads((r.dir / "opt" / "metrics.json").read_text())
    assert np.isfinite(trials["die_thickness_mm"].values.astype(float)).all()
    assert metrics["feasible"] == 8


def test_a_misspelled_objective_with_a_trained_model_is_refused_before_any_evaluation(tmp_path):
    r = start_run(validate_study(surrogate_study({"die_thicknes_mm": "min"}), path=tmp_path / "study.yaml"),
                  tmp_path / "runs", quiet=True)
    with pytest.raises(ReflowError, match="did you mean 'die_thickness_mm'"):
        execute(r)
    assert not (r.dir / "opt" / "trials.jsonl").exists() or not (r.dir / "opt" / "trials.jsonl").read_text()
