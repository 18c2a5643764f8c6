"""Outcome transforms of the Bayesian optimizers: chosen from the data per output, recorded, and used alike for
the model, the references and the constraint bounds; plus what an optimize stage reports (transforms, time
per suggestion, numerical warnings)."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from reflow.plugins.optimize.transforms import choose
from reflow.runner import execute, start_run
from reflow.store import read_dataset
from reflow.study import validate_study

FAST_BO = {"num_restarts": 2, "raw_samples": 32, "mc_samples": 32}


# ---- the choice from the data --------------------------------------------------------------------------
def test_log_for_a_positive_output_spanning_five_decades():
    values = 10 ** np.random.default_rng(0).uniform(2, 7, 30)
    tf = choose("stress", values, worse="high")
    assert tf.kind == "log" and "decades" in tf.reason
    np.testing.assert_allclose(tf.forward(values), np.log(values))
    assert tf.winsorized == 0, "in log space the values are benign: nothing to winsorize"


def test_no_log_for_values_that_span_decades_only_by_approaching_zero():
    """DTLZ2's objectives near their front: a few values approach 0, the rest lie in [0.3, 2.5]. In log space the
    smallest would become the extremes the hypervolume chases."""
    rng = np.random.default_rng(4)
    values = np.concatenate([rng.uniform(0.3, 2.5, 27), [1e-3, 5e-3, 2e-2]])
    assert np.log10(values.max() / values.min()) > 3
    tf = choose("f1", values, worse="high")
    assert tf.kind != "log", tf.reason


def test_bilog_for_heavy_tails_with_negative_values():
    values = np.random.default_rng(1).standard_cauchy(40)
    assert (values < 0).any() and (values > 0).any()
    tf = choose("g", values)
    assert tf.kind == "bilog" and "heavy tails" in tf.reason
    out = tf.forward(values)
    assert np.all(np.diff(out[np.argsort(values)]) > 0), "the map is monotone increasing"
    assert np.ptp(out) < 0.2 * np.ptp((values - np.median(values)) / tf.scale), "the tails are compressed"


@pytest.mark.parametrize("values", [np.random.default_rng(2).normal(5.0, 1.0, 40),   # benign, with a sign change
                                    np.random.default_rng(3).uniform(10.0, 50.0, 40)])  # positive, under 1 decade
def test_no_transform_for_benign_outputs(values):
    tf = choose("f", values, worse="high")
    assert tf.kind == "none" and tf.winsorized == 0
    np.testing.assert_array_equal(tf.for_fit(values), values)


def test_too_few_values_and_linear_constraints_keep_the_output_raw():
    assert choose("f", [1.0, 1e6, 3.0]).kind == "none"
    assert choose("f", 10 ** np.linspace(1, 6, 20), linear=True).kind == "none"
    assert choose("f", 10 ** np.linspace(1, 6, 20), worse="high", bounds=[-1.0]).kind != "log", \
        "log cannot map a bound <= 0"


def test_winsorization_clips_only_the_bad_side_and_never_past_a_bound():
    values = np.concatenate([np.linspace(-1.0, 1.0, 30), [-50.0, 60.0]])
    low_bad = choose("f", values, worse="low")  # maximized: small values are bad
    assert low_bad.clip_high is None and low_bad.clip_low is not None
    fit = low_bad.for_fit(values)
    assert fit.max() == pytest.approx(low_bad.forward(values).max()), "the good side is never clipped"
    assert fit.min() > low_bad.forward(values).min()
    # a bound on the bad side beyond the fence moves the clip past it: the model still sees who violates it
    bounded = choose("f", values, worse="high", bounds=[20.0])
    assert bounded.clip_high is not None and bounded.clip_high > bounded.forward(np.array([20.0]))[0]
    assert bounded.for_fit(values).max() > bounded.forward(np.array([20.0]))[0]


def test_a_constraint_only_output_is_bilogged_at_its_bound():
    """A slack that is -1 for most designs and 1e7 for a few (BoTorch's TensionCompressionString): Ax's BilogY,
    centred on the bound in the output's own units, keeps which side of it each design lies on."""
    values = np.concatenate([-np.linspace(0.9, 1.0, 20), [0.3, 2.0, 40.0, 3e4, 1e7]])
    tf = choose("c0", values, worse="low", bounds=[0.0], constraint_only=True)
    assert tf.kind == "bilog" and "bound" in tf.reason and (tf.center, tf.scale) == (0.0, 1.0)
    out = tf.forward(values)
    assert tf.forward(np.array([0.0]))[0] == 0.0
    np.testing.assert_array_equal(np.sign(out), np.sign(values))
    np.testing.assert_allclose(tf.forward(np.array([0.5, -0.5])), [np.log(1.5), -np.log(1.5)])
    assert out.max() < 17, "1e7 is compressed to log(1e7 + 1)"
    assert tf.clip_high is None, "a >= constraint is never clipped on its good side"
    # an output that objectives or several constraints read keeps the data-driven choice
    assert choose("c0", values, worse="low", bounds=[0.0]).center != 0.0
    assert choose("c0", values, worse="low", bounds=[0.0, 5.0], constraint_only=True).center != 0.0


def test_only_outputs_read_by_constraints_alone_get_the_bound_bilog():
    from reflow.problem import Objective

    opt = _optimizer("QLogNEI", [Objective("m", "min")], ["c >= 0", "m <= 40"])
    rng = np.random.default_rng(5)
    y = np.column_stack([10 ** rng.uniform(0, 3, 20), rng.normal(0, 3, 20)])
    kinds = {t.name: (t.kind, t.center) for t in opt.choose_transforms(y)}
    assert kinds["c"] == ("bilog", 0.0)
    assert kinds["m"][0] != "bilog" or kinds["m"][1] != 40.0, "an objective keeps its own rule"


def _optimizer(cls_name: str, objectives, constraints=(), **params):
    from reflow.expressions import parse_constraint
    from reflow.plugins.optimize import bayes
    from reflow.problem import OptimizationProblem
    from reflow.space import ParameterSpec, Space

    space = Space.from_specs({k: ParameterSpec(low=0.0, high=1.0) for k in ("a", "b")})
    opt = getattr(bayes, cls_name)(**{**FAST_BO, **params})
    opt.setup(OptimizationProblem(space, list(objectives), [parse_constraint(c) for c in constraints]), 0)
    return opt


def test_constraint_bounds_and_references_map_with_the_outputs_transform():
    import torch
    from reflow.problem import Objective

    opt = _optimizer("QParEGO", [Objective("m", "min"), Objective("s", "min", reference=300.0)], ["s <= 250"])
    rng = np.random.default_rng(4)
    y = np.column_stack([rng.uniform(1, 2, 20), 10 ** rng.uniform(2, 7, 20)])
    opt.transforms = opt.choose_transforms(y)
    assert [t.kind for t in opt.transforms] == ["none", "log"]
    assert opt.threshold("s", 250.0) == pytest.approx(np.log(250.0))
    (g,) = opt.constraints()
    (r,) = opt.reference_constraints()
    z = torch.tensor([[1.5, np.log(200.0)], [1.5, np.log(280.0)], [1.5, np.log(400.0)]], dtype=torch.double)
    assert (g(z) < 0).tolist() == [True, False, False]
    assert (r(z) < 0).tolist() == [True, True, False], "the reference is a threshold: feasible where it is beaten"


def test_the_hypervolume_is_measured_in_the_users_units():
    """With every reference given, qLogNEHVI's objective maps the model's log/bilog values back to raw units (a
    hypervolume is not invariant under a nonlinear map) and the reference is the given one, unmapped; without,
    and for qLogNParEGO's scalarization, they stay in the model's space."""
    import torch
    from reflow.problem import Objective

    opt = _optimizer("QNEHVI", [Objective("m", "min", reference=2.0), Objective("s", "max", reference=300.0)])
    rng = np.random.default_rng(4)
    y = np.column_stack([rng.uniform(1, 2, 20), np.r_[10 ** rng.uniform(2, 3, 17), 1e6, 3e6, 1e7]])
    opt.transforms = opt.choose_transforms(y)
    assert [t.kind for t in opt.transforms] == ["none", "log"]
    z = torch.tensor([[1.5, np.log(400.0)]], dtype=torch.double)
    np.testing.assert_allclose(opt.objective(raw_units=True)(z).numpy(), [[-1.5, 400.0]])
    np.testing.assert_allclose(opt.objective()(z).numpy(), [[-1.5, np.log(400.0)]])
    from reflow.plugins.optimize.bayes import reference_point

    modelled = torch.as_tensor(np.column_stack([t.forward(y[:, j]) for j, t in enumerate(opt.transforms)]))
    assert reference_point(opt, modelled, raw_units=True) == [-2.0, 300.0]
    assert reference_point(opt, modelled) == pytest.approx([-2.0, np.log(300.0)])
    from reflow.plugins.optimize.bayes import raw_hypervolume

    assert raw_hypervolume(opt), "every objective has a reference: the box the user scores"
    unbounded = _optimizer("QNEHVI", [Objective("m", "min"), Objective("s", "max", reference=300.0)])
    assert not raw_hypervolume(unbounded), "without references a raw-unit long tail would dominate the front"
    from botorch.utils.multi_objective.hypervolume import infer_reference_point
    from botorch.utils.multi_objective.pareto import is_non_dominated

    unbounded.transforms = unbounded.choose_transforms(y)
    signed_raw = torch.as_tensor(y * [-1.0, 1.0])
    inferred = infer_reference_point(signed_raw[is_non_dominated(signed_raw)])
    assert reference_point(unbounded, modelled, raw_units=True) == pytest.approx([float(inferred[0]), 300.0],
                                                                                   rel=1e-9), \
        "an inferred reference in raw units comes from the raw front, recovered from the model's values"
    bilog = choose("g", np.random.default_rng(1).standard_cauchy(40))
    values = np.array([-30.0, -1.0, 0.0, 2.0, 500.0])
    np.testing.assert_allclose(bilog.inverse(torch.as_tensor(bilog.forward(values))).numpy(), values, atol=1e-9)


def test_outcome_transform_none_models_the_raw_outputs():
    from reflow.problem import Objective

    opt = _optimizer("QLogNEI", [Objective("s", "min")], outcome_transform="none")
    assert [t.kind for t in opt.choose_transforms(10 ** np.linspace(2, 7, 20)[:, None])] == ["none"]


# ---- numerical warnings ----------------------------------------------------------------------------------
def test_numerical_warnings_go_to_the_log_and_are_counted(caplog, capsys):
    from linear_operator.utils.warnings import NumericalWarning
    from reflow.plugins.optimize.bayes import _Warnings
    from reflow.problem import Objective

    opt = _optimizer("QLogNEI", [Objective("s", "min")])
    with caplog.at_level(logging.DEBUG, logger="reflow"), _Warnings(opt, "GP fit (9 trials)"):
        for _ in range(3):
            warnings.warn("A not p.d., added jitter of 1.0e-08 to the diagonal", NumericalWarning, stacklevel=1)
        warnings.warn("something else", UserWarning, stacklevel=1)
    assert opt.report()["gp_numerical_warnings"] == 3
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert lines == ["GP fit (9 trials): numerical warning (x3): A not p.d., added jitter of 1.0e-08 to the diagonal"]
    assert "jitter" not in capsys.readouterr().err
    restored = _optimizer("QLogNEI", [Objective("s", "min")])
    restored.restore(json.loads(json.dumps(opt.state())))
    assert restored.report()["gp_numerical_warnings"] == 3, "a resumed stage goes on counting"


# ---- end to end: recorded in the trials' attrs and the metrics --------------------------------------------
SIM = '''
def beam(w, h):
    """A cantilever-like section: mass and a bending stress that explodes as the section vanishes."""
    return {"mass": w * h, "stress": 1.0 / (w * h ** 2)}
'''


def run_stage(folder: Path, stage: dict, seed: int = 0) -> Path:
    (folder / "sim.py").write_text(SIM)
    raw = {"study": "heavy", "seed": seed, "stages": {"opt": stage}}
    run = start_run(validate_study(raw, path=folder / "study.yaml"), folder / "runs", quiet=True)
    execute(run)
    return run.dir


def beam_stage(optimizer: str = "qnehvi", params: dict | None = None, objectives: dict | None = None,
               initial: int = 6, evaluations: int = 9) -> dict:
    return {"task": "optimize",
            "space": {"w": {"low": 0.01, "high": 1.0}, "h": {"low": 0.01, "high": 1.0}},
            "evaluate": {"python": {"function": "sim:beam", "outputs": ["mass", "stress"]}},
            "optimizer": {optimizer: params or dict(FAST_BO)},
            "objectives": objectives or {"mass": "min", "stress": "min"},
            "budget": {"initial": initial, "evaluations": evaluations}}


def test_transforms_timing_and_warnings_are_in_the_trials_and_the_metrics(tmp_path, monkeypatch):
    from reflow.plugins.tasks.optimize import OptimizeTask

    monkeypatch.setattr(OptimizeTask, "plot", lambda self, result, folder: [])
    run_dir = run_stage(tmp_path, beam_stage())
    trials = read_dataset(run_dir / "opt" / "trials.nc")
    metrics = json.loads((run_dir / "opt" / "metrics.json").read_text())
    stress = trials["stress"].values
    assert stress.max() / stress.min() > 100
    assert metrics["outcome_transform_stress"] == "log"
    assert trials["stress"].attrs["outcome_transform"] == "log"
    assert "decades" in trials["stress"].attrs["outcome_transform_reason"]
    assert "stress: log" in trials.attrs["outcome_transforms"]
    assert isinstance(metrics["gp_numerical_warnings"], int)
    seconds = trials["suggest_seconds"].values
    assert np.all(seconds > 0), "every suggestion is timed, the initial design's too"
    assert metrics["seconds_per_suggestion_max"] == pytest.approx(seconds.max())
    assert metrics["seconds_per_suggestion_mean"] == pytest.approx(seconds.mean())
    assert metrics["seconds_per_suggestion"] == pytest.approx(np.median(seconds))
    assert "outcome transforms (6 trials)" in (run_dir / "run.log").read_text()


# ---- the transforms at work: a heavy-tailed problem, raw against transformed -------------------------------
def _cantilever_asks(mode: str, seed: int, asks: int) -> tuple[np.ndarray, float]:
    """Stress of qNEHVI's suggestions on benchmarks/problems_heavy.py's cantilever (stress 35 to 4e6 MPa) with
    the references given (mass 20 kg, stress 250 MPa), and the hypervolume fraction reached."""
    import sys
    from types import SimpleNamespace

    from reflow.plugins.optimize.bayes import QNEHVI
    from reflow.problem import Objective, OptimizationProblem
    from reflow.sampling import space_filling
    from reflow.space import ParameterSpec, Space

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    try:
        from problems_heavy import PROBLEMS
    finally:
        sys.path.pop(0)
    hp = PROBLEMS["cantilever"]
    space = Space.from_specs({n: ParameterSpec(low=lo, high=hi) for n, (lo, hi) in hp.bounds.items()})
    problem = OptimizationProblem(space, [Objective(o, "min", r) for o, r in zip(hp.objectives, hp.reference,
                                                                                   strict=True)])
    opt = QNEHVI(**FAST_BO, outcome_transform=mode)
    opt.setup(problem, seed)

    def tell(unit, first):
        x = hp.from_unit(unit)
        y = hp.evaluate(x)
        opt.tell(xr.Dataset({**{n: ("trial", x[:, j]) for j, n in enumerate(hp.names)},
                             **{o: ("trial", y[:, j]) for j, o in enumerate(hp.objectives)},
                             "status": ("trial", np.array(["ok"] * len(x)))},
                            coords={"trial": np.arange(first, first + len(x))}))
        return y

    ys = [tell(space_filling(problem, 6, seed), 0)]
    for t in range(asks):
        ds = opt.ask(1, SimpleNamespace(device="cpu"))
        ys.append(tell(problem.encode({n: ds[n].values for n in hp.names}), 6 + t))
    y = np.vstack(ys)
    return y[6:, 1], hp.hypervolume(y) / hp.max_hypervolume()


@pytest.mark.slow
def test_transformed_model_wastes_fewer_suggestions_on_extreme_stress_than_the_raw_one():
    """The issue's failure: on raw outputs the GP is dominated by the 1e6 MPa stresses and the search keeps
    asking near a vanishing cross-section. Measured with 14 asks, seeds 0-2: 4 of 42 suggestions above 1e4 MPa
    with the transforms against 17 raw, hypervolume fractions 0.67/0.52/0.72 against 0.61/0/0. One seed here."""
    auto_stress, auto_hv = _cantilever_asks("auto", seed=1, asks=10)
    raw_stress, raw_hv = _cantilever_asks("none", seed=1, asks=10)
    extreme = 1e4  # 40 times the reference stress
    assert np.sum(auto_stress > extreme) < np.sum(raw_stress > extreme), (auto_stress, raw_stress)
    assert auto_hv > raw_hv


def test_a_front_of_one_point_gets_a_reference_box_that_can_be_improved():
    """ZDT's fronts collapse onto f0 = 0: BoTorch's reference for a lone point (the point less 10 % of its
    absolute value) has zero width in that objective, so no design could improve the hypervolume; the
    reference is then the nadir of every trial less 10 % of their range."""
    import torch
    from botorch.utils.multi_objective.hypervolume import infer_reference_point
    from reflow.plugins.optimize.bayes import reference_point
    from reflow.problem import Objective

    opt = _optimizer("QNEHVI", [Objective("f0", "min"), Objective("f1", "min")], outcome_transform="none")
    y = np.array([[0.0, 1.0], [0.5, 5.5], [0.9, 4.5], [0.1, 6.8], [0.0, 3.5]])  # (0, 1) dominates every other
    opt.transforms = opt.choose_transforms(y)
    signed = torch.as_tensor(-y)
    lone = infer_reference_point(signed[:1])
    assert float(lone[0]) > -1e-6, "BoTorch's lone-point box: f0 <= ~0, nothing improves on it"
    assert reference_point(opt, torch.as_tensor(y)) == pytest.approx([-(0.9 + 0.09), -(6.8 + 0.58)])
    spread = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0], [0.9, 4.5]])
    front = torch.as_tensor(-spread[:3])
    assert reference_point(opt, torch.as_tensor(spread)) == pytest.approx(infer_reference_point(front).tolist()), \
        "a front of several points keeps BoTorch's rule"
