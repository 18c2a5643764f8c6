"""The optimize task's ``verify`` step: designs found on a trained surrogate, re-evaluated with the true evaluator."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from reflow.errors import StudyError, UserInputError
from reflow.runner import run_study
from reflow.study import load_study

SIM = '''
import math


def grow(t_h):
    """IMC thickness: a power law plus a slow wobble the power-law surrogate cannot follow."""
    return {"x_um": 0.5 + 0.12 * t_h ** 0.5 + 0.3 * math.sin(t_h / 150.0)}


def cost(t_h):
    return {"cost": 1000.0 / t_h}


def grow_and_cost(t_h):
    return {**grow(t_h), **cost(t_h)}


def flaky_grow(t_h):
    if t_h > 500:
        raise RuntimeError(f"FEA mesh failed at t_h={t_h:.1f}")
    return grow(t_h)
'''

STUDY = """
study: verify
seed: 4
stages:
  grow:
    task: doe
    design: {lhs: {samples: 12}}
    space:
      t_h: {low: 1, high: 1000, units: h}
    evaluate: {python: {function: "sim:grow", outputs: [x_um]}}
  fit:
    task: train
    model: imc-growth
    data: grow.trials
    target: x_um
    features: [t_h]
    split: {test: 0.2}
  opt:
    task: optimize
    space:
      t_h: {low: 1, high: 1000, units: h}
    evaluate: [{stage: fit}, {python: {function: "sim:cost", outputs: [cost]}}]
    optimizer: {sobol: {samples: 10}}
    objectives: OBJECTIVES
    budget: {initial: 0, evaluations: 10}
    verify: VERIFY
"""


def grow(t):
    return 0.5 + 0.12 * np.sqrt(t) + 0.3 * np.sin(t / 150.0)


def _run(tmp_path, verify: str, objectives: str = "{x_um: min, cost: min}"):
    (tmp_path / "sim.py").write_text(SIM)
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(STUDY).replace("VERIFY", verify).replace("OBJECTIVES", objectives))
    return run_study(load_study(path), out=tmp_path / "runs", quiet=True)


def test_pareto_designs_are_checked_against_the_truth(tmp_path):
    run = _run(tmp_path, '{evaluate: [{python: {function: "sim:grow", outputs: [x_um]}}, '
                         '{python: {function: "sim:cost", outputs: [cost]}}], max: 6}')
    trials = run.output("opt.trials")
    pareto = run.output("opt.best")
    ver = run.output("opt.verify")
    assert (run.dir / "opt" / "verify.nc").exists()
    # both objectives move in opposite directions with t_h: every design is Pareto optimal; 6 of 10 evenly spread
    assert pareto.sizes["trial"] == 10 and ver.sizes["trial"] == 6
    assert set(ver["trial"].values) <= set(pareto["trial"].values)
    t = ver["t_h"].values
    assert t.min() == pytest.approx(trials["t_h"].values.min()) and t.max() == pytest.approx(trials["t_h"].values.max())
    assert (ver["status"].values == "ok").all()
    np.testing.assert_allclose(ver["x_um_true"].values, grow(t), rtol=1e-12)
    np.testing.assert_allclose(ver["x_um_surrogate"].values, trials["x_um"].sel(trial=ver["trial"]).values)
    err = np.abs(ver["x_um_true"].values - ver["x_um_surrogate"].values)
    np.testing.assert_allclose(ver["x_um_abs_error"].values, err)
    np.testing.assert_allclose(ver["x_um_rel_error"].values, err / np.abs(grow(t)))
    assert err.max() > 0.01  # the surrogate misses the wobble: there is something to verify
    np.testing.assert_allclose(ver["cost_abs_error"].values, 0.0, atol=1e-9)  # cost came from the true function
    metrics = json.loads((run.dir / "opt" / "metrics.json").read_text())
    assert metrics["verify_designs"] == 6 and metrics["verify_failed"] == 0
    assert metrics["verify_x_um_rmse"] == pytest.approx(np.sqrt(np.mean(err**2)))
    assert metrics["verify_x_um_mae"] == pytest.approx(np.mean(err))
    assert metrics["verify_x_um_max_rel_error"] == pytest.approx(np.max(err / grow(t)))
    y = grow(t)
    expected_r2 = 1 - np.sum(err**2) / np.sum((y - y.mean()) ** 2)
    assert metrics["verify_x_um_r2"] == pytest.approx(expected_r2)
    assert metrics["verify_cost_rmse"] == pytest.approx(0.0, abs=1e-9)
    assert (run.dir / "opt" / "verify_parity.png").stat().st_size > 5000


def test_failed_true_evaluations_are_kept_as_failed_rows(tmp_path):
    run = _run(tmp_path, '{evaluate: [{python: {function: "sim:flaky_grow", outputs: [x_um]}}, '
                         '{python: {function: "sim:cost", outputs: [cost]}}], designs: all}')
    ver = run.output("opt.verify")
    assert run.manifest["stages"]["opt"]["status"] == "done"
    assert ver.sizes["trial"] == 10
    failed = ver["t_h"].values > 500
    assert failed.any() and (~failed).any()
    assert (ver["status"].values[failed] == "failed").all() and (ver["status"].values[~failed] == "ok").all()
    assert all("FEA mesh failed" in e for e in ver["error"].values[failed])
    assert np.isnan(ver["x_um_true"].values[failed]).all()
    metrics = json.loads((run.dir / "opt" / "metrics.json").read_text())
    assert metrics["verify_failed"] == int(failed.sum()) and metrics["verify_ok"] == int((~failed).sum())
    ok = ~failed
    err = np.abs(grow(ver["t_h"].values[ok]) - ver["x_um_surrogate"].values[ok])
    assert metrics["verify_x_um_mae"] == pytest.approx(err.mean())  # from the successful rows only


def test_best_designs_of_one_objective_in_order(tmp_path):
    run = _run(tmp_path, '{evaluate: {python: {function: "sim:grow_and_cost", outputs: [x_um, cost]}}, '
                         'designs: best, max: 3}', objectives="{cost: min}")
    trials = run.output("opt.trials")
    ver = run.output("opt.verify")
    cheapest = trials["trial"].values[np.argsort(trials["cost"].values)[:3]]
    assert ver["trial"].values.tolist() == cheapest.tolist()
    np.testing.assert_allclose(ver["cost_true"].values, 1000.0 / ver["t_h"].values)
    metrics = json.loads((run.dir / "opt" / "metrics.json").read_text())
    assert "verify_cost_r2" in metrics and metrics["verify_designs"] == 3


def test_pareto_of_one_objective_is_the_best_trial(tmp_path):
    from reflow.report import key_numbers

    run = _run(tmp_path, '{evaluate: {python: {function: "sim:grow_and_cost"}}}', objectives="{x_um: max}")
    ver = run.output("opt.verify")
    trials = run.output("opt.trials")
    assert ver["trial"].values.tolist() == [int(trials["trial"].values[np.argmax(trials["x_um"].values)])]
    metrics = json.loads((run.dir / "opt" / "metrics.json").read_text())
    assert "verify_x_um_r2" not in metrics  # R2 needs at least 3 designs
    assert metrics["verify_x_um_mae"] == pytest.approx(float(ver["x_um_abs_error"].values[0]))
    # on a surrogate the optimizer's best is the surrogate's optimum: the headline (what the report shows first) is
    # the true value of the verified design, with the surrogate's prediction for it next to it
    assert metrics["headline"] == {"verified_x_um": pytest.approx(float(grow(ver["t_h"].values[0])), rel=1e-12),
                                   "surrogate_x_um": pytest.approx(metrics["best_x_um"]),
                                   "verified_trial": int(ver["trial"].values[0])}
    shown = key_numbers(metrics)
    assert [k.label for k in shown[:3]] == ["verified_x_um", "surrogate_x_um", "verified_trial"]
    assert shown[0].text.endswith(("µm", "um"))  # the units the name states


def test_a_python_verifier_without_an_objective_fails_only_its_rows(tmp_path):
    """A function without declared outputs is checked per design: a missing objective fails that row, clearly;
    when every row fails, the stage fails with the error (issue 17)."""
    from reflow.evaluation import TrialsFailed

    with pytest.raises(TrialsFailed) as err:
        _run(tmp_path, '{evaluate: {python: {function: "sim:grow"}}, max: 2}')
    message = str(err.value)
    assert "all 2 verify evaluations failed" in message and "2 x the verify evaluator gave no cost" in message


@pytest.mark.parametrize(("verify", "message"), [
    ('{evaluate: {python: {function: "sim:grow", outputs: [x_um]}}}',
     "the verify evaluator must produce every objective; it gives no 'cost' (its outputs: x_um)"),
    ("{evaluate: bilayer-warpge}", "did you mean 'bilayer-warpage'"),
    ("{evaluate: bilayer-warpage}", "the verify evaluator takes no 't_h'"),
    ('{evaluate: {python: {function: "sim:grow_and_cost"}}, designs: top}', "'pareto', 'best' or 'all'"),
    ('{evaluate: {python: {function: "sim:grow_and_cost"}}, max: 0}', "greater than or equal to 1"),
    ('{evaluate: {python: {function: "sim:grow_and_cost"}}, nmax: 3}', "unknown key 'nmax'"),
])
def test_bad_verify_params_are_caught_before_running(tmp_path, verify, message):
    (tmp_path / "sim.py").write_text(SIM)
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(STUDY).replace("VERIFY", verify).replace("OBJECTIVES", "{x_um: min, cost: min}"))
    with pytest.raises(StudyError) as err:
        load_study(path)
    assert message in str(err.value) and "stages.opt.verify" in str(err.value)


def test_a_surrogate_verifier_missing_an_objective_stops_before_optimizing(tmp_path):
    """{stage: fit} outputs are known only at run time: checked as the stage starts, before any evaluation."""
    with pytest.raises(UserInputError, match="verify: the verify evaluator must produce every objective; it gives "
                                             "no 'cost'"):
        _run(tmp_path, "{evaluate: {stage: fit}}")
    opt = next((tmp_path / "runs" / "verify").iterdir()) / "opt"
    assert not (opt / "trials.jsonl").exists() or not (opt / "trials.jsonl").read_text().strip()


def test_a_resumed_verification_repeats_no_evaluation(tmp_path):
    """verify.jsonl keeps every finished true evaluation: running the step again evaluates nothing twice."""
    import reflow
    from reflow.evaluation import Pipeline, records_to_dataset
    from reflow.plugins.tasks._verify import VerifySpec, verify_designs
    from reflow.problem import Objective, OptimizationProblem
    from reflow.space import ParameterSpec, Space
    from reflow.testing import test_context

    calls: list[float] = []

    class Truth(reflow.Evaluator):
        inputs = (reflow.Variable("t_h"),)
        outputs = (reflow.Variable("x_um"),)

        class Params(reflow.Params):
            pass

        def evaluate_one(self, inputs):
            calls.append(inputs["t_h"])
            return {"x_um": float(grow(inputs["t_h"]))}

    space = Space.from_specs({"t_h": ParameterSpec(low=1, high=1000)})
    problem = OptimizationProblem(space, [Objective("x_um", "min")])
    t = np.array([10.0, 200.0, 400.0, 800.0])
    records = [{"trial": i, "inputs": {"t_h": float(v)}, "outputs": {"x_um": float(grow(v)) + 0.1}, "status": "ok",
                "error": "", "batch": 0, "started": 0.0, "finished": 0.0} for i, v in enumerate(t)]
    trials = records_to_dataset(records, ["t_h"], ["x_um"])
    spec = VerifySpec(evaluate=["bilayer-warpage"], designs="best", max=3)  # the spec's evaluator is not used here
    ctx = test_context(tmp_path)
    pipeline = Pipeline([Truth()])
    first = verify_designs(pipeline, spec, trials, problem, ctx, lambda i: {"t_h": float(t[i])})
    assert len(calls) == 3 and (first["status"].values == "ok").all()
    np.testing.assert_allclose(first["x_um_abs_error"].values, 0.1)
    again = verify_designs(pipeline, spec, trials, problem, ctx, lambda i: {"t_h": float(t[i])})
    assert len(calls) == 3  # nothing evaluated twice
    np.testing.assert_array_equal(again["x_um_true"].values, first["x_um_true"].values)
    assert again["trial"].values.tolist() == first["trial"].values.tolist()


# --- the recommended design: the best feasible on one objective, by the verified (true) values when verified -------

TRUE_BOTH = '{python: {function: "sim:grow_and_cost", outputs: [x_um, cost]}}'


def _run_recommending(tmp_path, verify: str | None, recommend: str = "x_um"):
    (tmp_path / "sim.py").write_text(SIM)
    text = textwrap.dedent(STUDY).replace("OBJECTIVES", "{x_um: min, cost: min}")
    text = text.replace("    verify: VERIFY\n", (f"    verify: {verify}\n" if verify else "")
                        + f"    recommend: {recommend}\n    constraints: [cost <= 5]\n")
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return run_study(load_study(path), out=tmp_path / "runs", quiet=True)


def test_recommended_design_is_the_best_feasible_on_its_objective(tmp_path):
    run = _run_recommending(tmp_path, None)
    trials = run.output("opt.trials")
    metrics = json.loads((run.dir / "opt" / "metrics.json").read_text())
    feasible = trials["cost"].values <= 5  # t_h >= 200
    assert feasible.any() and (~feasible).any()
    best = np.flatnonzero(feasible)[np.argmin(trials["x_um"].values[feasible])]
    assert metrics["recommended_by"] == "optimizer"
    assert metrics["recommended_trial"] == int(trials["trial"].values[best])
    assert metrics["recommended_t_h"] == pytest.approx(float(trials["t_h"].values[best]))
    assert metrics["recommended_x_um"] == pytest.approx(float(trials["x_um"].values[best]))
    assert metrics["recommended_cost"] <= 5
    assert "headline" not in metrics  # nothing verified: the optimizer's values are the result


def test_recommended_design_uses_the_true_values_of_the_verified_designs(tmp_path):
    run = _run_recommending(tmp_path, f"{{evaluate: {TRUE_BOTH}, designs: all}}")
    trials = run.output("opt.trials")
    metrics = json.loads((run.dir / "opt" / "metrics.json").read_text())
    t = trials["t_h"].values
    feasible = 1000.0 / t <= 5
    best = np.flatnonzero(feasible)[np.argmin(grow(t[feasible]))]  # by the truth, with its wobble
    assert metrics["recommended_by"] == "verify"
    assert metrics["recommended_trial"] == int(trials["trial"].values[best])
    assert metrics["recommended_x_um"] == pytest.approx(float(grow(t[best])), rel=1e-12)
    surrogate_pick = np.flatnonzero(feasible)[np.argmin(trials["x_um"].values[feasible])]
    assert metrics["recommended_x_um"] <= float(grow(t[surrogate_pick]))  # never worse than trusting the surrogate
    # the headline is the recommended design's verified values, each next to the surrogate's prediction
    assert metrics["headline"] == {"verified_x_um": metrics["recommended_x_um"],
                                   "surrogate_x_um": pytest.approx(float(trials["x_um"].values[best])),
                                   "verified_cost": metrics["recommended_cost"],
                                   "surrogate_cost": pytest.approx(float(trials["cost"].values[best])),
                                   "verified_trial": metrics["recommended_trial"]}


def test_recommend_by_hand():
    """Four designs, minimize warpage under life >= 1000: by the optimizer's values trial 1 wins; the truth says
    trial 1 misses the life limit, so trial 2 is recommended; with every verified design infeasible, none."""
    import xarray as xr
    from reflow.expressions import parse_constraint
    from reflow.plugins.tasks.optimize import recommend
    from reflow.problem import Objective, OptimizationProblem
    from reflow.space import ParameterSpec, Space

    space = Space.from_specs({"h_mm": ParameterSpec(low=0.1, high=1.0), "uf": ParameterSpec(choices=["A", "B"])})
    problem = OptimizationProblem(space, [Objective("warpage_um", "min"), Objective("life", "max")],
                                  [parse_constraint("life >= 1000")])
    trials = xr.Dataset({"h_mm": ("trial", [0.2, 0.4, 0.6, 0.8]), "uf": ("trial", ["A", "B", "A", "B"]),
                         "warpage_um": ("trial", [10.0, 20.0, 30.0, 40.0]),
                         "life": ("trial", [900.0, 1100.0, 1500.0, 2000.0]),
                         "status": ("trial", ["ok"] * 4)}, coords={"trial": [0, 1, 2, 3]})
    by_optimizer = recommend(trials, problem, "warpage_um")
    assert by_optimizer == {"recommended_by": "optimizer", "recommended_trial": 1, "recommended_h_mm": 0.4,
                            "recommended_uf": "B", "recommended_warpage_um": 20.0, "recommended_life": 1100.0}
    assert recommend(trials, problem, "life")["recommended_trial"] == 3
    verified = xr.Dataset({"warpage_um_true": ("trial", [21.0, 29.0]), "life_true": ("trial", [990.0, 1400.0]),
                           "status": ("trial", ["ok", "ok"])}, coords={"trial": [1, 2]})
    by_truth = recommend(trials, problem, "warpage_um", verified)
    assert by_truth["recommended_by"] == "verify" and by_truth["recommended_trial"] == 2
    assert (by_truth["recommended_h_mm"], by_truth["recommended_life"]) == (0.6, 1400.0)
    failing = verified.assign(life_true=("trial", [990.0, 800.0]))
    assert recommend(trials, problem, "warpage_um", failing) == {"recommended_by": "verify"}


def test_verified_headline_by_hand():
    """The headline design: the given (recommended) one, else the best feasible on the first objective by the
    true values; with none feasible, a line that says so instead of the optimizer's numbers."""
    import xarray as xr
    from reflow.expressions import parse_constraint
    from reflow.plugins.tasks._recommend import verified_headline
    from reflow.problem import Objective, OptimizationProblem
    from reflow.space import ParameterSpec, Space

    space = Space.from_specs({"h_mm": ParameterSpec(low=0.1, high=1.0)})
    problem = OptimizationProblem(space, [Objective("warpage_um", "min"), Objective("life", "max")],
                                  [parse_constraint("life >= 1000")])
    verified = xr.Dataset({"warpage_um_true": ("trial", [21.0, 29.0, 25.0]),
                           "warpage_um_surrogate": ("trial", [10.0, 20.0, 30.0]),
                           "life_true": ("trial", [990.0, 1400.0, 1200.0]),
                           "life_surrogate": ("trial", [1100.0, 1500.0, 1300.0]),
                           "status": ("trial", ["ok", "ok", "failed"])}, coords={"trial": [1, 2, 3]})
    # trial 1 misses the life limit by its true value, trial 3's true evaluation failed: trial 2
    assert verified_headline(verified, problem) == {"verified_warpage_um": 29.0, "surrogate_warpage_um": 20.0,
                                                    "verified_life": 1400.0, "surrogate_life": 1500.0,
                                                    "verified_trial": 2}
    assert verified_headline(verified, problem, trial=1)["verified_warpage_um"] == 21.0
    failing = verified.assign(life_true=("trial", [990.0, 800.0, 1200.0]))
    assert verified_headline(failing, problem) == {
        "verified_design": "none of the 3 verified designs is feasible by its true values"}


def test_recommend_must_name_an_objective(tmp_path):
    (tmp_path / "sim.py").write_text(SIM)
    text = textwrap.dedent(STUDY).replace("OBJECTIVES", "{x_um: min, cost: min}").replace(
        "    verify: VERIFY\n", "    recommend: t_h\n")
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(StudyError, match="stages.opt.recommend.*'t_h' is not an objective"):
        load_study(path)
