"""Task ``optimize`` end to end: every optimizer, constraints, categoricals, batches, failures, resume, validation.

The evaluators are Python functions in a file next to the study (the ``python`` evaluator); each call is
logged to ``calls.jsonl`` so that tests can count evaluations. Budgets are tiny (4 initial points, 8
evaluations) and the BoTorch optimizers run with few restarts and MC samples, so each study takes seconds.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from _cli import cli
from reflow.errors import StudyError
from reflow.runner import execute, open_run, resume_run, start_run
from reflow.store import TrialJournal, read_dataset, read_manifest, write_json
from reflow.study import validate_study

FAST_BO = {"num_restarts": 2, "raw_samples": 32, "mc_samples": 32}

SIM = '''
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def _log(kind, **inputs):
    with open(os.path.join(HERE, "calls.jsonl"), "a") as fh:
        fh.write(json.dumps({"fn": kind, "inputs": inputs}) + "\\n")


def quad(x, y):
    """A bowl with its minimum 0 at (0.3, -0.2); g = x + y for outcome constraints."""
    _log("quad", x=x, y=y)
    return {"f": (x - 0.3) ** 2 + (y + 0.2) ** 2, "g": x + y}


def branin_currin(x0, x1):
    import torch
    from botorch.test_functions.multi_objective import BraninCurrin

    _log("branin_currin", x0=x0, x1=x1)
    f = BraninCurrin()(torch.tensor([[x0, x1]], dtype=torch.double))[0]
    return {"branin": float(f[0]), "currin": float(f[1]), "s": x0 + x1}


def composition(a, b, c):
    _log("composition", a=a, b=b, c=c)
    return {"f1": (a - 0.6) ** 2 + b, "f2": (c - 0.5) ** 2 + a * b}


def mixed(x, mat):
    _log("mixed", x=x, mat=mat)
    return {"f": (x - 0.5) ** 2 + {"A": 1.0, "B": 0.0, "C": 2.0}[mat]}


def failing(x, y):
    """The bowl, but half of the space (x > 0, where the minimum lies) fails."""
    _log("failing", x=x, y=y)
    if x > 0:
        raise ValueError(f"solver diverged at x={x:.3f}")
    return {"f": (x - 0.3) ** 2 + (y + 0.2) ** 2, "g": x + y}


def always_failing(x, y):
    _log("always_failing", x=x, y=y)
    raise RuntimeError("mesh generation failed")


def crashing(x, y):
    """The bowl; the call number CRASH_AT (counted over the folder's calls) is 'killed' once."""
    n = 0
    path = os.path.join(HERE, "calls.jsonl")
    if os.path.exists(path):
        with open(path) as fh:
            n = sum(1 for _ in fh)
    _log("crashing", x=x, y=y)
    marker = os.path.join(HERE, "crashed")
    if n + 1 == int(os.environ.get("CRASH_AT", "0")) and not os.path.exists(marker):
        open(marker, "w").close()
        raise KeyboardInterrupt
    return {"f": (x - 0.3) ** 2 + (y + 0.2) ** 2, "g": x + y}
'''

QUAD_SPACE = {"x": {"low": -1.0, "high": 1.0}, "y": {"low": -1.0, "high": 1.0}}
BC_SPACE = {"x0": {"low": 0.0, "high": 1.0}, "x1": {"low": 0.0, "high": 1.0}}
BC_OBJECTIVES = {"branin": "min", "currin": "min"}


def stage(function: str, outputs: list[str], space: dict, optimizer: str, params: dict | None = None,
          objectives: dict | None = None, constraints: list[str] | None = None, initial: int = 4,
          evaluations: int = 8, batch_size: int = 1, **budget) -> dict:
    """The optimize stage as a dict (what the YAML says)."""
    st = {
        "task": "optimize",
        "space": space,
        "evaluate": {"python": {"function": f"sim:{function}", "outputs": outputs}},
        "optimizer": {optimizer: params or {}},
        "objectives": objectives or {"f": "min"},
        "budget": {"initial": initial, "evaluations": evaluations, "batch_size": batch_size, **budget},
    }
    if constraints:
        st["constraints"] = constraints
    return st


def quad_stage(optimizer: str = "qlognei", params: dict | None = None, **kw) -> dict:
    if params is None and optimizer in ("qlognei", "qnehvi", "qparego", "active-learning"):
        params = dict(FAST_BO)
    return stage(kw.pop("function", "quad"), ["f", "g"], QUAD_SPACE, optimizer, params, **kw)


def bc_stage(optimizer: str, params: dict | None = None, **kw) -> dict:
    if params is None and optimizer in ("qlognei", "qnehvi", "qparego", "active-learning"):
        params = dict(FAST_BO)
    return stage("branin_currin", ["branin", "currin", "s"], BC_SPACE, optimizer, params,
                 objectives=kw.pop("objectives", BC_OBJECTIVES), **kw)


class Study:
    """A study folder: ``sim.py``, a study file, and its runs."""

    def __init__(self, folder: Path):
        self.folder = folder
        (folder / "sim.py").write_text(SIM)

    def raw(self, st: dict, seed: int = 1) -> dict:
        return {"study": "opt-test", "seed": seed, "stages": {"opt": st}}

    def load(self, st: dict, seed: int = 1):
        return validate_study(self.raw(st, seed), path=self.folder / "study.yaml")

    def run(self, st: dict, seed: int = 1) -> Path:
        """Run the study; return the stage folder."""
        run = start_run(self.load(st, seed), self.folder / "runs", quiet=True)
        execute(run)
        return run.dir / "opt"

    def calls(self) -> list[dict]:
        path = self.folder / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def study(tmp_path) -> Study:
    return Study(tmp_path)


@pytest.fixture
def no_plots(monkeypatch):
    """Skip the figures (about a second per run); the end-to-end tests keep them."""
    from reflow.plugins.tasks.optimize import OptimizeTask

    monkeypatch.setattr(OptimizeTask, "plot", lambda self, result, folder: [])


def outputs(stage_dir: Path):
    return (read_dataset(stage_dir / "trials.nc"), read_dataset(stage_dir / "best.nc"),
            read_dataset(stage_dir / "history.nc"), json.loads((stage_dir / "metrics.json").read_text()))


def dominated_by_any(point: np.ndarray, others: np.ndarray) -> bool:
    """Is ``point`` (minimized objectives) dominated by a row of ``others``?"""
    return bool(np.any(np.all(others <= point, axis=1) & np.any(others < point, axis=1)))


def check_trials_in_space(trials, space: dict) -> None:
    for name, spec in space.items():
        values = trials[name].values
        if "choices" in spec:
            assert set(values.tolist()) <= set(spec["choices"]), name
        else:
            assert np.all(values >= spec["low"] - 1e-12) and np.all(values <= spec["high"] + 1e-12), name


# ---- every optimizer, end to end ---------------------------------------------------------------------

SINGLE = {
    "qlognei": "qLogNEI",
    "active-learning": "explore",
    "sobol": None, "lhs": None, "random": None,
}
MULTI = {
    "qnehvi": "qLogNEHVI",
    "qparego": "qLogNParEGO",
    "nsga2": "nsga2 generation",
    "nsga3": "nsga3 generation",
}


@pytest.mark.parametrize("optimizer", list(SINGLE))
def test_single_objective_optimizer_end_to_end(study, optimizer):
    params = {"active-learning": {**FAST_BO, "explore": 2}}.get(optimizer)
    stage_dir = study.run(quad_stage(optimizer, params))
    trials, best, history, metrics = outputs(stage_dir)

    assert trials["trial"].values.tolist() == list(range(8))
    assert set(trials["status"].values.tolist()) == {"ok"}
    check_trials_in_space(trials, QUAD_SPACE)
    f = (trials["x"].values - 0.3) ** 2 + (trials["y"].values + 0.2) ** 2
    np.testing.assert_allclose(trials["f"].values, f)
    assert trials["x"].attrs["role"] == "parameter" and trials["f"].attrs["role"] == "metric"
    assert len(study.calls()) == 8, "every trial evaluated once"

    acquisition = trials["acquisition"].values.tolist()
    label = SINGLE[optimizer]
    if label is None:  # a design as the optimizer: the whole budget is space-filling, in one batch
        assert acquisition == ["initial design (design)"] * 8
        assert trials["batch"].values.tolist() == [0] * 8
    else:
        assert acquisition[:4] == ["initial design (sobol)"] * 4
        assert all(a.startswith(label) for a in acquisition[4:6]), acquisition
        assert trials["batch"].values.tolist() == [0, 0, 0, 0, 1, 2, 3, 4]
        assert metrics["seconds_per_suggestion"] > 0

    # best: the trial with the smallest f
    i = int(np.argmin(f))
    assert best.sizes["trial"] == 1 and int(best["trial"].values[0]) == i
    assert metrics["best_f"] == pytest.approx(f[i]) and metrics["best_trial"] == i
    assert (metrics["evaluations"], metrics["failed"], metrics["feasible"]) == (8, 0, 8)
    # history: the running minimum, initial design marked
    np.testing.assert_allclose(history["best_f"].values, np.minimum.accumulate(f))
    assert history["trial"].values.tolist() == list(range(8))
    assert history["initial"].values.tolist() == ([True] * 8 if label is None else [True] * 4 + [False] * 4)

    manifest = read_manifest(stage_dir.parent)
    assert manifest["status"] == "done" and manifest["stages"]["opt"]["status"] == "done"
    for name in ("convergence.png", "parameters_vs_objectives.png", "asked.jsonl", "trials.jsonl"):
        assert (stage_dir / name).is_file(), name


@pytest.mark.parametrize("optimizer", list(MULTI))
def test_multi_objective_optimizer_end_to_end(study, optimizer, no_plots):
    params = {"nsga3": {"partitions": 3}}.get(optimizer)
    stage_dir = study.run(bc_stage(optimizer, params))
    trials, best, history, metrics = outputs(stage_dir)

    assert trials.sizes["trial"] == 8 and set(trials["status"].values.tolist()) == {"ok"}
    check_trials_in_space(trials, BC_SPACE)
    acquisition = trials["acquisition"].values.tolist()
    assert acquisition[:4] == ["initial design (sobol)"] * 4
    assert all(a.startswith(MULTI[optimizer]) for a in acquisition[4:]), acquisition

    # the Pareto set: no trial dominates a member, and every non-dominated trial is a member
    values = np.column_stack([trials["branin"].values, trials["currin"].values])
    front = best["trial"].values.tolist()
    assert front and metrics["pareto_points"] == len(front)
    expected = [i for i in range(8) if not dominated_by_any(values[i], values)]
    assert sorted(front) == expected
    np.testing.assert_array_equal(best["branin"].values, values[front, 0])

    # the hypervolume history never decreases and ends at the metric
    hv = history["hypervolume"].values
    assert len(hv) == 8 and hv[0] > 0
    assert np.all(np.diff(hv) >= -1e-9), hv
    assert metrics["hypervolume"] == pytest.approx(hv[-1])
    ref = np.asarray(json.loads(trials.attrs["reference_point"]), dtype=float)  # list attrs are stored as JSON
    assert np.all(ref >= values.max(axis=0)), "the reference point is no better than every trial (minimized)"


def test_qnehvi_pareto_front_plot_and_hypervolume_against_botorch(study):
    stage_dir = study.run(bc_stage("qnehvi"))
    trials, best, history, metrics = outputs(stage_dir)
    assert (stage_dir / "pareto_front.png").is_file()
    # the stage's hypervolume agrees with BoTorch's box decomposition for the same reference point
    import torch
    from botorch.utils.multi_objective.hypervolume import Hypervolume

    ref = -torch.tensor(json.loads(trials.attrs["reference_point"]), dtype=torch.double)
    y = -torch.tensor(np.column_stack([trials["branin"].values, trials["currin"].values]), dtype=torch.double)
    for k in (4, 8):
        pareto = y[:k][[not dominated_by_any(-y[i].numpy(), -y[:k].numpy()) for i in range(k)]]
        assert history["hypervolume"].values[k - 1] == pytest.approx(Hypervolume(ref).compute(pareto), rel=1e-9)


def test_initial_design_starts_at_the_centre(study, no_plots):
    trials, _, _, _ = outputs(study.run(quad_stage("qlognei", evaluations=4)))
    assert (float(trials["x"].values[0]), float(trials["y"].values[0])) == (0.0, 0.0)
    assert len({(float(x), float(y)) for x, y in zip(trials["x"].values, trials["y"].values, strict=True)}) == 4
    st = quad_stage("qlognei", evaluations=4)
    st["budget"]["center"] = False
    trials, _, _, _ = outputs(study.run(st))
    assert not np.any((trials["x"].values == 0) & (trials["y"].values == 0))
    trials, _, _, _ = outputs(study.run(quad_stage("sobol", evaluations=4)))
    assert not np.any((trials["x"].values == 0) & (trials["y"].values == 0)), "a design as optimizer has no centre"


# ---- quality -------------------------------------------------------------------------------------------


def test_qlognei_improves_on_the_initial_design(study, no_plots):
    """qLogNEI must beat the initial design on a smooth bowl (minimum 0 at (0.3, -0.2) in [-1, 1]^2).

    Why this is certain enough to assert: the initial design is the centre (0, 0), where f = 0.13, plus 3
    scrambled-Sobol points; a GP fitted to 4 points of a quadratic already has its minimum near the bowl's,
    and qLogNEI gets 6 tries. Over seeds 1-10 the BO's best was 0.0004-0.011, at most 0.17 of the initial
    best (asserted: below half of it). Each seed is deterministic (see the determinism test), so the three
    seeds used here cannot flake from run to run.
    """
    for seed in (1, 2, 3):
        stage_dir = study.run(quad_stage("qlognei", evaluations=10), seed=seed)
        trials, _, history, metrics = outputs(stage_dir)
        f = trials["f"].values
        initial_best = f[:4].min()
        assert history["initial"].values.tolist() == [True] * 4 + [False] * 6
        assert f[4:].min() < initial_best, (seed, f)
        assert metrics["best_f"] < 0.5 * initial_best, (seed, f)
        assert metrics["best_trial"] >= 4


def test_qlognei_is_deterministic(study, no_plots):
    first, _, _, _ = outputs(study.run(quad_stage("qlognei", batch_size=2)))
    second, _, _, _ = outputs(study.run(quad_stage("qlognei", batch_size=2)))
    for name in ("x", "y", "f"):
        np.testing.assert_allclose(first[name].values, second[name].values, rtol=0, atol=1e-9)
    other, _, _, _ = outputs(study.run(quad_stage("qlognei", batch_size=2), seed=2))
    assert not np.allclose(first["x"].values, other["x"].values), "another seed, other points"


# ---- constraints -----------------------------------------------------------------------------------------


def test_outcome_constraint_single_objective(study, no_plots):
    # the bowl's minimum (0.3, -0.2) has g = x + y = 0.1; with g >= 0.6 the optimum is on the line x + y = 0.6
    stage_dir = study.run(quad_stage("qlognei", constraints=["g >= 0.6"]))
    trials, best, history, metrics = outputs(stage_dir)
    g, f = trials["g"].values, trials["f"].values
    feasible = g >= 0.6
    assert 0 < feasible.sum() < 8, "the test needs trials on both sides of the constraint"
    assert metrics["feasible"] == int(feasible.sum())
    assert float(best["g"].values[0]) >= 0.6
    assert metrics["best_f"] == pytest.approx(f[feasible].min())
    np.testing.assert_allclose(np.fmin.accumulate(np.where(feasible, f, np.nan)), history["best_f"].values)


@pytest.mark.parametrize("optimizer", ["qnehvi", "nsga2"])
def test_outcome_constraint_pareto_set(study, optimizer, no_plots):
    stage_dir = study.run(bc_stage(optimizer, constraints=["s <= 1"]))
    trials, best, history, metrics = outputs(stage_dir)
    s = trials["s"].values
    feasible = s <= 1
    assert 0 < feasible.sum() < 8, "the test needs trials on both sides of the constraint"
    assert np.all(best["s"].values <= 1)
    values = np.column_stack([trials["branin"].values, trials["currin"].values])
    expected = [i for i in np.flatnonzero(feasible) if not dominated_by_any(values[i], values[feasible])]
    assert sorted(best["trial"].values.tolist()) == expected
    assert np.all(np.diff(history["hypervolume"].values) >= -1e-9)


@pytest.mark.parametrize("optimizer,params", [("qnehvi", FAST_BO), ("nsga2", {})])
def test_linear_equality_constraint_holds_for_every_asked_point(study, optimizer, params, no_plots):
    space = {"a": {"low": 0.0, "high": 1.0}, "b": {"low": 0.0, "high": 0.6}, "c": {"low": 0.1, "high": 0.9}}
    st = stage("composition", ["f1", "f2"], space, optimizer, params, objectives={"f1": "min", "f2": "min"},
               constraints=["a + b + c == 1"])
    stage_dir = study.run(st)
    asked = TrialJournal(stage_dir / "asked.jsonl").read()
    assert len(asked) == 8
    for rec in asked:
        v = rec["inputs"]
        assert abs(v["a"] + v["b"] + v["c"] - 1) <= 1e-6, rec
        for name, spec in space.items():
            assert spec["low"] - 1e-12 <= v[name] <= spec["high"] + 1e-12, rec
    trials, _, _, metrics = outputs(stage_dir)
    assert metrics["evaluations"] == 8 and set(trials["status"].values.tolist()) == {"ok"}
    labels = trials["acquisition"].values.tolist()
    assert not any(a.startswith("initial") for a in labels[4:]), "the optimizer asked the last points"


def test_linear_inequality_constraint_with_qlognei(study, no_plots):
    # the bowl's minimum (0.3, -0.2) breaks x - y <= 0; every asked point keeps it
    stage_dir = study.run(quad_stage("qlognei", constraints=["x - y <= 0"]))
    asked = TrialJournal(stage_dir / "asked.jsonl").read()
    assert all(r["inputs"]["x"] - r["inputs"]["y"] <= 1e-6 for r in asked), asked


# ---- mixed spaces, batches, failures ----------------------------------------------------------------------


def test_categorical_parameter_with_qlognei(study, no_plots):
    space = {"x": {"low": 0.0, "high": 1.0}, "mat": {"choices": ["A", "B", "C"]}}
    stage_dir = study.run(stage("mixed", ["f"], space, "qlognei", FAST_BO))
    trials, best, _, metrics = outputs(stage_dir)
    assert trials.sizes["trial"] == 8 and set(trials["status"].values.tolist()) == {"ok"}
    assert set(trials["mat"].values.tolist()) <= {"A", "B", "C"}
    assert trials["acquisition"].values.tolist()[4:] == ["qLogNEI"] * 4
    offset = {"A": 1.0, "B": 0.0, "C": 2.0}
    expected = (trials["x"].values - 0.5) ** 2 + np.array([offset[m] for m in trials["mat"].values])
    np.testing.assert_allclose(trials["f"].values, expected)
    asked = TrialJournal(stage_dir / "asked.jsonl").read()
    assert all(r["inputs"]["mat"] in offset for r in asked)


def test_mixed_gp_is_used_for_categorical_spaces():
    """A categorical parameter gets BoTorch's mixed GP, its kernel evaluated in one forward (FusedMixedKernel);
    a continuous space BoTorch's SingleTaskGP; both with the posterior computed lean (lean_gp.py)."""
    from reflow.plugins.optimize.bayes import QLogNEI
    from reflow.plugins.optimize.lean_gp import LeanMixedSingleTaskGP, LeanSingleTaskGP
    from reflow.plugins.optimize.mixed_kernel import FusedMixedKernel
    from reflow.problem import Objective, OptimizationProblem
    from reflow.space import ParameterSpec, Space

    rng = np.random.default_rng(0)
    x, y = rng.random((6, 2)), rng.random((6, 1))
    for specs, cls in (({"x": {"low": 0, "high": 1}, "m": {"choices": ["A", "B", "C"]}}, LeanMixedSingleTaskGP),
                       ({"x": {"low": 0, "high": 1}, "z": {"low": 0, "high": 1}}, LeanSingleTaskGP)):
        space = Space.from_specs({k: ParameterSpec(**v) for k, v in specs.items()})
        opt = QLogNEI(**FAST_BO)
        opt.setup(OptimizationProblem(space, [Objective("f", "min")]), 0)
        model = opt.fit(x, y)
        assert type(model) is cls
        assert isinstance(model.covar_module, FusedMixedKernel) == (cls is LeanMixedSingleTaskGP)


@pytest.mark.parametrize(("outputs", "cat_dims"), [(1, [2]), (3, [1, 3])])
def test_the_fused_mixed_kernel_is_botorchs_mixed_kernel(outputs, cat_dims):
    """Evaluated in one forward, the mixed GP's kernel gives BoTorch's marginal likelihood and posterior (the
    same hyperparameters, one output or a batch of three, one or two categorical parameters), its gradients,
    and the same parameters, priors and state-dict entries, so a warm start carries over."""
    import copy

    import torch
    from botorch.models import MixedSingleTaskGP
    from botorch.models.transforms import Standardize
    from gpytorch.kernels import ScaleKernel
    from gpytorch.mlls import ExactMarginalLogLikelihood
    from reflow.plugins.optimize.mixed_kernel import FusedMixedKernel

    def mixed_points(n):
        points = torch.rand(n, 4, dtype=torch.double)
        points[:, cat_dims] = torch.randint(0, 3, (n, len(cat_dims))).double() / 2
        return points

    torch.manual_seed(0)
    x = mixed_points(20)
    y = torch.stack([torch.sin(6 * x[:, 0]) + x[:, j % 4] * (1 + k) for k, j in enumerate(range(outputs))], -1)
    botorch_model = MixedSingleTaskGP(x, y, cat_dims=cat_dims, outcome_transform=Standardize(outputs))
    for module in botorch_model.modules():  # hyperparameters away from their starting values, as a fit gives
        if getattr(module, "has_lengthscale", False):
            module.lengthscale = 0.2 + torch.rand_like(module.lengthscale)
        if isinstance(module, ScaleKernel):
            module.outputscale = 0.5 + torch.rand_like(module.outputscale)
    botorch_model.likelihood.noise = 0.05
    fused = copy.deepcopy(botorch_model)
    fused.covar_module = FusedMixedKernel(fused.covar_module)
    assert [k.replace(".covar.", ".", 1) for k in fused.state_dict()] == list(botorch_model.state_dict())
    assert len(list(fused.named_priors())) == len(list(botorch_model.named_priors())) > 0

    values, gradients = [], []
    for model in (botorch_model, fused):
        model.train()
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        value = mll(model(*model.train_inputs), model.train_targets).sum()
        values.append(float(value))
        gradients.append(torch.autograd.grad(value, list(model.parameters())))
    assert values[1] == pytest.approx(values[0], rel=1e-12)
    for a, b in zip(*gradients, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)

    points = mixed_points(9)
    expected, got = botorch_model.eval().posterior(points), fused.eval().posterior(points)
    torch.testing.assert_close(got.mean, expected.mean, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got.mvn.covariance_matrix, expected.mvn.covariance_matrix, rtol=1e-10, atol=1e-12)
    with pytest.raises(TypeError, match="MixedSingleTaskGP"):
        FusedMixedKernel(fused.covar_module.covar.kernels[0])


def test_the_mixed_search_refines_every_category_at_once_and_never_moves_a_category(monkeypatch):
    """One batched L-BFGS-B run over the starts of every category combination finds the same optimum as
    BoTorch's search per combination, with each start's category left where it started."""
    import torch
    from botorch.optim import optimize_acqf_mixed
    from reflow.plugins.optimize import bayes
    from reflow.plugins.optimize.bayes import optimize_mixed_at_once

    def acqf(x):  # a peak per category of dim 2, highest (2.0) for the middle one at (0.45, 0.55)
        c = x[..., 0, 2]
        center = torch.stack([0.2 + 0.5 * c, 0.8 - 0.5 * c], dim=-1)
        return 1 + 4 * c * (1 - c) - 10 * ((x[..., 0, :2] - center) ** 2).sum(-1) + 0.3 * x[..., 0, 2]

    bounds = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], dtype=torch.double)
    combos = [{2: 0.0}, {2: 0.5}, {2: 1.0}]
    torch.manual_seed(0)
    best = optimize_mixed_at_once(acqf, bounds, combos, restarts=3, raw=64, options={"maxiter": 100})
    assert best.shape == (1, 3)
    assert best[0, 2] == 0.5  # the category of the best start, exactly
    np.testing.assert_allclose(best[0, :2], [0.45, 0.55], atol=1e-4)
    reference, _ = optimize_acqf_mixed(acqf, bounds, q=1, num_restarts=3, raw_samples=64, fixed_features_list=combos)
    np.testing.assert_allclose(best, reference.numpy(), atol=1e-4)
    monkeypatch.setattr(bayes, "MIXED_STARTS_PER_RUN", 4)  # 9 starts in runs of 4, 4 and 1: the same optimum
    torch.manual_seed(0)
    np.testing.assert_allclose(optimize_mixed_at_once(acqf, bounds, combos, restarts=3, raw=64,
                                                      options={"maxiter": 100}), best, atol=1e-4)


@pytest.mark.parametrize("outcomes", [3, 4, 5])
def test_the_numpy_box_decomposition_is_botorchs(outcomes):
    """Three or more objectives: the NumPy box decomposition gives BoTorch's cells, local upper bounds and
    defining points bit for bit (random fronts, repeated points, ties, no point beyond the reference), and so
    does its incremental update."""
    import torch
    from botorch.utils.multi_objective.box_decompositions.non_dominated import FastNondominatedPartitioning
    from reflow.plugins.optimize.partitioning import NumpyNondominatedPartitioning

    torch.manual_seed(outcomes)
    ref = torch.full((outcomes,), -1.0, dtype=torch.double)
    sphere = torch.randn(30, outcomes, dtype=torch.double).abs()  # 30 points none of which dominates another
    fronts = [torch.randn(n, outcomes, dtype=torch.double) for n in (1, 6)]
    fronts.append(sphere / sphere.norm(dim=1, keepdim=True))
    fronts += [torch.cat([fronts[1], fronts[1][:3]]), fronts[2].round(decimals=1), -2 - fronts[1].abs()]
    cells = []
    for Y in fronts:
        botorchs, ours = FastNondominatedPartitioning(ref, Y), NumpyNondominatedPartitioning(ref, Y)
        assert torch.equal(ours.hypercell_bounds, botorchs.hypercell_bounds)
        cells.append(ours.hypercell_bounds.shape[1])
        assert torch.equal(ours.compute_hypervolume(), botorchs.compute_hypervolume())
        if hasattr(botorchs, "_Z"):  # a front beyond the reference is one cell, without upper bounds
            assert torch.equal(ours._U, botorchs._U) and torch.equal(ours._Z, botorchs._Z)
        more = torch.randn(4, outcomes, dtype=torch.double) + 0.5
        botorchs.update(more)
        ours.update(more)
        assert torch.equal(ours.hypercell_bounds, botorchs.hypercell_bounds)
    assert cells[-1] == 1 and max(cells) > 50  # from one cell (nothing beyond the reference) to many


def test_qnehvi_uses_the_numpy_box_decomposition_with_botorchs_values():
    """qnehvi's acquisition on three objectives builds its per-sample partitions in NumPy, and its values are
    those of BoTorch's qLogNEHVI on the same model, samples and points."""
    import torch
    from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
    from reflow.plugins.optimize import bayes
    from reflow.plugins.optimize.partitioning import NumpyNondominatedPartitioning
    from reflow.problem import Objective, OptimizationProblem
    from reflow.space import ParameterSpec, Space

    rng = np.random.default_rng(3)
    x = rng.random((10, 3))
    y = np.column_stack([x.sum(1), (x[:, 0] - 0.5) ** 2 - x[:, 1], np.cos(3 * x[:, 2]) + x[:, 0]])
    space = Space.from_specs({k: ParameterSpec(low=0, high=1) for k in "abc"})
    problem = OptimizationProblem(space, [Objective(n, "min") for n in ("f", "g", "h")])
    opt = bayes.QNEHVI(**FAST_BO)
    opt.setup(problem, 0)
    opt._n_train, opt._draw_seed = len(x), 7
    opt.transforms = opt.choose_transforms(y)
    model = opt.fit(x, y)
    X, Y = torch.as_tensor(x), torch.as_tensor(y)
    ours, _ = opt.acquisition(model, X, Y, None)
    partitions = ours.partitioning.box_decompositions
    assert len(partitions) == opt.effort()[2] and all(type(p) is NumpyNondominatedPartitioning for p in partitions)
    botorchs = qLogNoisyExpectedHypervolumeImprovement(
        model, ref_point=ours.ref_point.tolist(), X_baseline=X, sampler=opt.sampler(), objective=opt.objective(),
        prune_baseline=True, cache_root=True)
    points = torch.as_tensor(rng.random((16, 1, 3)))
    with torch.no_grad():
        torch.testing.assert_close(ours(points), botorchs(points), rtol=0, atol=0)


@pytest.mark.parametrize("specs", [{"x": {"low": 0, "high": 1}, "z": {"low": 0, "high": 1}},
                                   {"x": {"low": 0, "high": 1}, "m": {"choices": ["A", "B", "C"]}}])
def test_several_outputs_are_one_batched_gp_with_the_fits_of_separate_gps(specs):
    """The batched GP of several outputs optimizes each output's hyperparameters on its own: its posterior is
    that of a GP fitted to each output alone (as a ModelListGP was), asked in one call.

    On a continuous space the batched and the separate fits, from the same starting values, reach the same
    optimum. The mixed GP's marginal likelihood on these 12 points has several optima close together, and which
    one a fit reaches turns on rounding (its fused kernel sums in another order than BoTorch's, and the batched
    L-BFGS-B is not scipy's): there each output's batched optimum must be an optimum of that output's own fit,
    which, started there, stays there."""
    import torch
    from botorch.models import SingleTaskGP
    from reflow.plugins.optimize import bayes
    from reflow.problem import Objective, OptimizationProblem
    from reflow.space import ParameterSpec, Space

    mixed = "m" in specs
    rng = np.random.default_rng(1)
    x = rng.random((12, 2))
    x[:, 1] = np.round(x[:, 1] * 2) / 2 if mixed else x[:, 1]
    y = np.column_stack([x.sum(1), 100 * x[:, 0] ** 2, np.sin(5 * x[:, 1])])
    space = Space.from_specs({k: ParameterSpec(**v) for k, v in specs.items()})
    problem = OptimizationProblem(space, [Objective("a", "min"), Objective("b", "min"), Objective("c", "min")])

    def fitted(columns, start=None):
        opt = bayes.QNEHVI(**FAST_BO)
        opt.setup(problem, 0)
        opt._hyper = start  # the warm start of reflow's next ask
        torch.manual_seed(0)
        return opt.fit(x, columns)

    batched = fitted(y)
    assert isinstance(batched, SingleTaskGP) and batched.num_outputs == 3
    hyper = {k: v for k, v in batched.state_dict().items() if "outcome_transform" not in k}
    points = torch.as_tensor(rng.random((20, 2)), dtype=torch.double)
    points[:, 1] = torch.round(points[:, 1] * 2) / 2 if mixed else points[:, 1]
    for j in range(3):
        own = {k: v[j] if v.dim() and v.shape[0] == 3 else v for k, v in hyper.items()}
        alone = [fitted(y[:, j:j + 1], start=own)] + ([] if mixed else [fitted(y[:, j:j + 1])])
        scale = float(np.std(y[:, j]))
        with torch.no_grad():
            together = batched.posterior(points)
            for model in alone:
                posterior = model.posterior(points)
                np.testing.assert_allclose(together.mean[:, j].numpy(), posterior.mean[:, 0].numpy(),
                                           atol=1e-3 * scale)
                np.testing.assert_allclose(together.variance[:, j].numpy(), posterior.variance[:, 0].numpy(),
                                           atol=1e-3 * scale**2)


def test_batches_of_two(study, no_plots):
    stage_dir = study.run(quad_stage("qlognei", batch_size=2, evaluations=9))
    trials, _, _, metrics = outputs(stage_dir)
    assert trials["batch"].values.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 3], "the last batch is cut to the budget"
    assert metrics["evaluations"] == 9 and len(study.calls()) == 9
    # the two points of a batch are different points (the first is pending while the second is chosen)
    for b in (1, 2):
        sel = trials["batch"].values == b
        pts = np.column_stack([trials["x"].values[sel], trials["y"].values[sel]])
        assert np.linalg.norm(pts[0] - pts[1]) > 1e-3, pts


def test_failed_evaluations_keep_their_error_and_count_against_the_budget(study, no_plots):
    stage_dir = study.run(quad_stage("qlognei", function="failing"))
    trials, best, history, metrics = outputs(stage_dir)
    status = trials["status"].values
    failed = status == "failed"
    assert trials.sizes["trial"] == 8 and len(study.calls()) == 8, "failed trials count against the budget"
    assert failed.any() and (~failed).sum() >= 2, status
    assert np.all(trials["x"].values[failed] > 0) and np.all(trials["x"].values[~failed] <= 0)
    for err in trials["error"].values[failed]:
        assert "solver diverged" in err and "ValueError" in err
    assert all(e == "" for e in trials["error"].values[~failed])
    assert np.all(np.isnan(trials["f"].values[failed]))
    assert metrics["failed"] == int(failed.sum()) and metrics["feasible"] == int((~failed).sum())
    assert float(best["x"].values[0]) <= 0 and best["status"].values[0] == "ok"
    assert metrics["best_f"] == pytest.approx(np.nanmin(trials["f"].values))
    check_trials_in_space(trials, QUAD_SPACE)
    assert trials["acquisition"].values.tolist()[4:] == ["qLogNEI"] * 4, "the optimizer went on asking"


def test_failed_trials_are_left_out_of_the_fit():
    import xarray as xr
    from reflow.plugins.optimize.bayes import QLogNEI
    from reflow.problem import Objective, OptimizationProblem
    from reflow.space import ParameterSpec, Space

    space = Space.from_specs({k: ParameterSpec(low=-1, high=1) for k in ("x", "y")})
    opt = QLogNEI(**FAST_BO)
    opt.setup(OptimizationProblem(space, [Objective("f", "min")]), 0)
    x = np.array([-0.5, 0.5, 0.1, -0.9, 0.7])
    y = np.array([0.2, -0.4, 0.9, 0.0, 0.3])
    f = np.array([1.0, np.nan, 2.0, 3.0, np.nan])
    status = np.array(["ok", "failed", "ok", "ok", "failed"])
    opt.tell(xr.Dataset({"x": ("trial", x), "y": ("trial", y), "f": ("trial", f), "status": ("trial", status)},
                        coords={"trial": np.arange(5)}))
    tx, ty, told = opt._training()
    assert told == 5
    np.testing.assert_allclose(ty[:, 0], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(tx, np.column_stack([(x[[0, 2, 3]] + 1) / 2, (y[[0, 2, 3]] + 1) / 2]))


def test_an_asked_point_that_repeats_a_trial_is_replaced_by_a_space_filling_one(monkeypatch):
    """Where the acquisition is flat its search ends on a corner already evaluated (ZDT2: (0, ..., 0) seven times
    in 30 evaluations); a repeat teaches a deterministic evaluator nothing, so it is replaced, and said so."""
    from types import SimpleNamespace

    import xarray as xr
    from reflow.plugins.optimize import bayes
    from reflow.problem import Objective, OptimizationProblem
    from reflow.space import ParameterSpec, Space

    space = Space.from_specs({k: ParameterSpec(low=0, high=1) for k in ("x", "y")})
    problem = OptimizationProblem(space, [Objective("f", "min")])
    seen = np.array([[0.0, 0.0], [1.0, 1.0], [0.5, 0.2]])
    unit, replaced = bayes.replace_duplicates(problem, np.array([[0.0, 0.0], [0.3, 0.7], [0.3, 0.7]]), seen, 0)
    assert replaced == 2, "a repeat of a trial and a repeat within the batch"
    np.testing.assert_allclose(unit[1], [0.3, 0.7])
    known = np.vstack([seen, unit[1:2]])
    for point in unit[[0, 2]]:
        assert np.min(np.abs(known - point).max(axis=1)) > 0.1
    pool = bayes.space_filling(problem, 256, 0)
    far = np.min(np.linalg.norm(pool[:, None] - seen[None], axis=2), axis=1)
    np.testing.assert_allclose(unit[0], pool[np.argmax(far)])
    assert bayes.replace_duplicates(problem, np.array([[0.3, 0.7]]), seen, 0)[1] == 0

    opt = bayes.QLogNEI(**FAST_BO)
    opt.setup(problem, 0)
    rng = np.random.default_rng(0)
    x, y = rng.random(6), rng.random(6)
    opt.tell(xr.Dataset({"x": ("trial", x), "y": ("trial", y), "f": ("trial", x + y),
                         "status": ("trial", np.full(6, "ok"))}, coords={"trial": np.arange(6)}))
    monkeypatch.setattr(bayes.QLogNEI, "optimize", lambda self, acqf, q: np.array([[x[2], y[2]]]))
    asked = opt.ask(1, SimpleNamespace(device=None))
    assert (float(asked["x"][0]), float(asked["y"][0])) != (x[2], y[2])
    assert "replaced by space-filling" in asked.attrs["acquisition"]
    replicates = bayes.QLogNEI(**FAST_BO, repeats=True)  # replicates of a noisy experiment, asked for
    replicates.setup(problem, 0)
    replicates.tell(opt._told())
    asked = replicates.ask(1, SimpleNamespace(device=None))
    assert (float(asked["x"][0]), float(asked["y"][0])) == pytest.approx((x[2], y[2]))


def test_every_evaluation_failing_still_spends_the_budget(study, no_plots):
    """Then the stage fails with the error (issue 17), and its journals hold the whole budget."""
    from reflow.evaluation import TrialsFailed, records_to_dataset

    with pytest.raises(TrialsFailed, match="all 8 evaluations failed") as err:
        study.run(quad_stage("qlognei", function="always_failing"))
    assert "8 x" in str(err.value) and "RuntimeError: mesh generation failed" in str(err.value)
    stage_dir = next((study.folder / "runs" / "opt-test").iterdir()) / "opt"
    trials = records_to_dataset(TrialJournal(stage_dir / "trials.jsonl").read())
    asked = {r["trial"]: r for r in TrialJournal(stage_dir / "asked.jsonl").read()}
    assert trials.sizes["trial"] == 8 and set(trials["status"].values.tolist()) == {"failed"}
    assert all("mesh generation failed" in e for e in trials["error"].values)
    labels = [asked[int(t)]["acquisition"] for t in trials["trial"].values]
    assert all(a.startswith("space-filling") for a in labels[4:]), labels
    check_trials_in_space(trials, QUAD_SPACE)
    points = {(float(a), float(b)) for a, b in zip(trials["x"].values, trials["y"].values, strict=True)}
    assert len(points) == 8, "exploring without a model still asks new points"


@pytest.mark.parametrize("explore_with", ["variance", "nipv"])
def test_active_learning_explores_then_optimizes(study, explore_with, no_plots):
    params = {**FAST_BO, "explore": 2, "explore_with": explore_with, "integration_points": 16}
    stage_dir = study.run(quad_stage("active-learning", params))
    trials, _, _, _ = outputs(stage_dir)
    labels = trials["acquisition"].values.tolist()
    assert labels[:4] == ["initial design (sobol)"] * 4
    assert all(a.startswith(f"explore: {explore_with} (mean posterior std ") for a in labels[4:6]), labels
    assert labels[6:] == ["qLogNEI", "qLogNEI"], labels


def test_active_learning_switches_early_below_the_std_target(study, no_plots):
    params = {**FAST_BO, "explore": 4, "std_target": 1e6}  # any model is already sure enough
    trials, _, _, _ = outputs(study.run(quad_stage("active-learning", params)))
    assert trials["acquisition"].values.tolist()[4:] == ["qLogNEI"] * 4


# ---- resume -------------------------------------------------------------------------------------------------


def _calls_by_point(calls: list[dict]) -> Counter:
    return Counter(tuple(sorted(c["inputs"].items())) for c in calls)


def _point(inputs: dict) -> tuple:
    return tuple(sorted(inputs.items()))


def test_run_interrupted_mid_batch_resumes_without_repeating_or_losing_a_trial(study, monkeypatch, no_plots):
    # batches: 0 = trials 0-3 (initial), 1 = trials 4-5, 2 = trials 6-7; call 6 (trial 5) is interrupted,
    # so trial 4 is told and trial 5 asked but never told
    monkeypatch.setenv("CRASH_AT", "6")
    st = quad_stage("qlognei", function="crashing", batch_size=2)
    run = start_run(study.load(st), study.folder / "runs", quiet=True)
    with pytest.raises(KeyboardInterrupt):
        execute(run)
    stage_dir = run.dir / "opt"
    manifest = read_manifest(run.dir)
    assert manifest["status"] == "interrupted" and manifest["stages"]["opt"]["status"] == "running"
    asked = {r["trial"]: r for r in TrialJournal(stage_dir / "asked.jsonl").read()}
    told = {r["trial"]: r for r in TrialJournal(stage_dir / "trials.jsonl").read()}
    assert sorted(asked) == [0, 1, 2, 3, 4, 5] and sorted(told) == [0, 1, 2, 3, 4]
    assert not (stage_dir / "trials.nc").exists()
    asked_before = {t: dict(r["inputs"]) for t, r in asked.items()}
    told_before = {t: dict(r["outputs"]) for t, r in told.items()}

    resume_run(run.dir, quiet=True)
    manifest = read_manifest(run.dir)
    assert manifest["status"] == "done" and manifest["stages"]["opt"]["status"] == "done"
    trials, _, _, metrics = outputs(stage_dir)
    assert trials["trial"].values.tolist() == list(range(8)), "none lost, none twice"
    assert metrics["evaluations"] == 8 and set(trials["status"].values.tolist()) == {"ok"}
    final_told = TrialJournal(stage_dir / "trials.jsonl").read()
    assert sorted(r["trial"] for r in final_told) == list(range(8)), "each trial journaled once"
    final_asked = TrialJournal(stage_dir / "asked.jsonl").read()
    assert sorted(r["trial"] for r in final_asked) == list(range(8)), "each trial asked once"
    # the points asked before the interruption were evaluated exactly as asked
    for t, inputs in asked_before.items():
        assert {"x": float(trials["x"].values[t]), "y": float(trials["y"].values[t])} == inputs, t
    for t, out in told_before.items():  # results from before are kept as they were
        assert float(trials["f"].values[t]) == out["f"]
    # evaluator calls: every trial once, plus the one interrupted call of trial 5
    calls = _calls_by_point(study.calls())
    assert sum(calls.values()) == 9
    for t in range(8):
        point = _point({"x": float(trials["x"].values[t]), "y": float(trials["y"].values[t])})
        assert calls[point] == (2 if t == 5 else 1), (t, calls[point])
    assert trials["batch"].values.tolist() == [0, 0, 0, 0, 1, 1, 2, 2]

    # the resumed run asked batch 2 as the uninterrupted run does: same seeds, same GP warm start
    monkeypatch.delenv("CRASH_AT")
    uninterrupted, _, _, _ = outputs(study.run(st))
    for name in ("x", "y", "f"):
        np.testing.assert_allclose(trials[name].values, uninterrupted[name].values, rtol=0, atol=1e-9, err_msg=name)


def _truncate_to_mid_batch(run_dir: Path, keep_told: int) -> tuple[list[dict], list[dict]]:
    """Make a finished run look killed in the middle of a batch: trials ``keep_told`` and later are cut from
    trials.jsonl, asked.jsonl keeps the batches up to the one of trial ``keep_told``, the outputs are gone
    and the stage is "running"."""
    stage_dir = run_dir / "opt"
    told_path = stage_dir / "trials.jsonl"
    told = [r for r in TrialJournal(told_path).read() if r["trial"] < keep_told]
    told_path.write_text("".join(json.dumps(r) + "\n" for r in told))
    asked_path = stage_dir / "asked.jsonl"
    asked = TrialJournal(asked_path).read()
    cut_batch = next(r["batch"] for r in asked if r["trial"] == keep_told)
    asked = [r for r in asked if r["batch"] <= cut_batch]
    asked_path.write_text("".join(json.dumps(r) + "\n" for r in asked))
    for name in ("trials.nc", "best.nc", "history.nc", "metrics.json"):
        (stage_dir / name).unlink()
    manifest = read_manifest(run_dir)
    manifest["status"] = "running"
    manifest["stages"]["opt"]["status"] = "running"
    write_json(run_dir / "manifest.json", manifest)
    return asked, told


@pytest.mark.parametrize("optimizer,params", [("nsga2", {"pop_size": 4}), ("qnehvi", {**FAST_BO, "warm_start": False})])
def test_resume_from_journals_cut_mid_batch(study, optimizer, params, no_plots):
    """A finished run's journals cut back to the middle of batch 2 (trials 0-6 told, 0-7 asked).

    optimizer.json holds the state at the end of the run, not at the cut, so the GP's warm start is off here
    (the interrupted-run test above covers the warm start)."""
    st = bc_stage(optimizer, params, batch_size=2, evaluations=10)
    stage_dir = study.run(st)
    original, _, _, _ = outputs(stage_dir)
    asked_before, told_before = _truncate_to_mid_batch(stage_dir.parent, keep_told=7)
    assert [r["trial"] for r in asked_before] == list(range(8)) and len(told_before) == 7
    calls_before = len(study.calls())
    assert calls_before == 10

    resume_run(stage_dir.parent, quiet=True)
    trials, _, _, metrics = outputs(stage_dir)
    assert trials["trial"].values.tolist() == list(range(10)) and metrics["evaluations"] == 10
    new_calls = study.calls()[calls_before:]
    assert len(new_calls) == 3, "trial 7 (asked, not told), then the 2 points of the last batch"
    assert new_calls[0]["inputs"] == asked_before[7]["inputs"], "the asked point evaluated exactly as asked"
    told = TrialJournal(stage_dir / "trials.jsonl").read()
    assert sorted(r["trial"] for r in told) == list(range(10))
    for rec in told_before:
        assert float(trials["branin"].values[rec["trial"]]) == rec["outputs"]["branin"]
    # the resumed optimizer asks what the uninterrupted one asked: the same final trials
    for name in ("x0", "x1", "branin", "currin"):
        np.testing.assert_allclose(trials[name].values, original[name].values, rtol=0, atol=1e-9, err_msg=name)


def test_resume_through_the_cli_after_a_crash(study, monkeypatch, no_plots):
    monkeypatch.setenv("CRASH_AT", "3")  # inside the initial design
    path = study.folder / "study.yaml"
    path.write_text(yaml.safe_dump(study.raw(quad_stage("sobol", function="crashing", evaluations=6))))
    res = cli("run", path, "--out", study.folder / "runs", "-q")
    assert res.exit_code == 130, res.output
    (run_dir,) = (study.folder / "runs" / "opt-test").iterdir()
    assert len(TrialJournal(run_dir / "opt" / "trials.jsonl").read()) == 2
    res = cli("run", "--resume", run_dir, "-q")
    assert res.exit_code == 0, res.output
    trials = read_dataset(run_dir / "opt" / "trials.nc")
    assert trials["trial"].values.tolist() == list(range(6))
    calls = _calls_by_point(study.calls())
    assert sum(calls.values()) == 7 and sorted(calls.values()) == [1, 1, 1, 1, 1, 2]


def test_resume_of_a_finished_optimization_evaluates_nothing(study, no_plots):
    stage_dir = study.run(quad_stage("qlognei", evaluations=6))
    before = (stage_dir / "trials.nc").read_bytes()
    n = len(study.calls())
    resume_run(stage_dir.parent, quiet=True)
    assert len(study.calls()) == n
    assert (stage_dir / "trials.nc").read_bytes() == before
    assert open_run(stage_dir.parent).manifest["stages"]["opt"]["status"] == "done"


# ---- validation -----------------------------------------------------------------------------------------------


def problems(study: Study, st: dict) -> list[str]:
    with pytest.raises(StudyError) as info:
        study.load(st)
    assert info.value.exit_code == 2
    return [f"{p.path}: {p.message}" for p in info.value.problems]


def bilayer_stage(**kw) -> dict:
    st = {
        "task": "optimize",
        "space": {"die_thickness_mm": {"low": 0.1, "high": 0.8}, "substrate_thickness_mm": {"low": 0.4, "high": 1.6}},
        "evaluate": "bilayer-warpage",
        "optimizer": {"qlognei": FAST_BO},
        "objectives": {"warpage_um": "min"},
        "budget": {"initial": 4, "evaluations": 8},
    }
    st.update(kw)
    return st


def test_valid_optimize_stage(study):
    assert list(study.load(bilayer_stage(constraints=["die_interface_stress_mpa <= 100",
                                                      "die_thickness_mm + substrate_thickness_mm <= 2"])).stages)


def test_objective_that_is_not_an_output(study):
    (msg,) = problems(study, bilayer_stage(objectives={"warpage_mm": "min"}))
    assert "'warpage_mm' is not an output of the evaluator" in msg
    assert "outputs: curvature_1_per_m, warpage_um, die_interface_stress_mpa" in msg
    assert "objectives" in msg


def test_constraint_mixing_parameters_and_outputs(study):
    found = problems(study, bilayer_stage(constraints=["die_thickness_mm + warpage_um <= 3"]))
    assert any("mixes parameters (die_thickness_mm) and outputs" in m for m in found), found


def test_equality_outcome_constraint(study):
    found = problems(study, bilayer_stage(constraints=["warpage_um == 30"]))
    assert any("an outcome constraint is an inequality" in m for m in found), found


def test_outcome_constraint_on_an_unknown_output(study):
    found = problems(study, bilayer_stage(constraints=["stress_mpa <= 30"]))
    assert any("stress_mpa is not an output of the evaluator" in m for m in found), found


def test_linear_constraint_on_a_log_parameter(study):
    space = {"die_thickness_mm": {"low": 0.1, "high": 0.8, "log": True}, "substrate_thickness_mm": {"low": 0.4,
                                                                                                    "high": 1.6}}
    found = problems(study, bilayer_stage(space=space, constraints=["die_thickness_mm + substrate_thickness_mm <= 2"]))
    assert any("'die_thickness_mm' is continuous (log)" in m for m in found), found


def test_qlognei_with_two_objectives(study):
    found = problems(study, bilayer_stage(objectives={"warpage_um": "min", "die_interface_stress_mpa": "min"}))
    assert any("qlognei optimizes one objective; use qnehvi or qparego" in m for m in found), found


def test_optimizer_traits_decide_the_checks_not_its_name(study, register_plugin):
    """max_objectives and min_initial, declared on the optimizer class, are what validation reads: a plugin's
    optimizer declaring them gets the same checks as the built-ins."""
    import reflow

    class TwoObjectives(reflow.Optimizer):
        max_objectives = 2
        min_initial = 3

        class Params(reflow.Params):
            pass

    class Plugin:
        @reflow.hookimpl
        def register_optimizers(self, register):
            register("test-two", TwoObjectives)

    register_plugin(Plugin(), "test-two-objectives")
    three = {"warpage_um": "min", "die_interface_stress_mpa": "min", "curvature_1_per_m": "max"}
    found = problems(study, bilayer_stage(optimizer="test-two", objectives=three,
                                          budget={"initial": 2, "evaluations": 8}))
    assert any("optimizer" in m and "test-two optimizes at most 2 objectives; use qnehvi or qparego for 3" in m
               for m in found), found
    assert any("budget.initial" in m and "test-two needs at least 3 initial evaluations before its first ask "
               "(got 2)" in m for m in found), found
    assert list(study.load(bilayer_stage(optimizer="test-two", budget={"initial": 3, "evaluations": 8})).stages)


def test_bayesian_optimizers_need_no_initial_design(study):
    """qlognei with initial: 0 is valid: it fills the space itself until two trials have succeeded."""
    assert list(study.load(bilayer_stage(budget={"initial": 0, "evaluations": 8})).stages)


def test_unknown_initial_design(study):
    found = problems(study, bilayer_stage(budget={"initial": 4, "evaluations": 8, "initial_design": "sobolx"}))
    assert any("initial_design" in m and "'sobolx'" in m for m in found), found


def test_initial_design_that_is_an_optimizer_is_refused(study):
    found = problems(study, bilayer_stage(budget={"initial": 4, "evaluations": 8, "initial_design": "qnehvi"}))
    assert any("'qnehvi' is not a design of experiments" in m for m in found), found


def test_initial_more_than_evaluations(study):
    found = problems(study, bilayer_stage(budget={"initial": 10, "evaluations": 8}))
    assert any("initial (10) is more than evaluations (8)" in m for m in found), found


def test_lab_with_another_pipeline_step(study):
    found = problems(study, bilayer_stage(evaluate=[{"lab": {"outputs": {"tg_c": "degC"}}}, "bilayer-warpage"],
                                          objectives={"tg_c": "max"}))
    assert any("a lab is the only step of its stage" in m for m in found), found


def test_validate_command_exit_code_and_message(study):
    path = study.folder / "study.yaml"
    path.write_text(yaml.safe_dump(study.raw(bilayer_stage(objectives={"warpage_mm": "min"}))))
    res = cli("validate", path)
    assert res.exit_code == 2
    assert "'warpage_mm' is not an output of the evaluator" in res.output
    assert "Traceback" not in res.output


def test_acquisition_search_screens_more_points_when_constraints_and_a_reference_narrow_the_acquisition():
    """The raw-sample screen is 64 per parameter (128 to 1024), and 1024 when outcome constraints and a reference
    both bound the rewarded region (feasible and beyond the reference: a sliver of the space); both shrink beyond
    FULL_EFFORT_UNTIL trials, and a value in the params is used as it is."""
    from reflow.expressions import parse_constraint
    from reflow.plugins.optimize import bayes
    from reflow.problem import Objective, OptimizationProblem
    from reflow.space import ParameterSpec, Space

    space = Space.from_specs({k: ParameterSpec(low=0, high=1) for k in "abc"})

    def effort(constraints, reference, trials=20, **params):
        opt = bayes.QNEHVI(**params)
        objectives = [Objective("f", "min", reference), Objective("h", "min")]
        opt.setup(OptimizationProblem(space, objectives, [parse_constraint(c) for c in constraints]), 0)
        opt._n_train = trials
        return opt.effort()

    assert effort([], None) == effort(["g <= 1"], None) == effort([], 5.0) == (5, 192, 64)
    assert effort(["g <= 1"], 5.0) == (5, bayes.NARROW_RAW_SAMPLES, 64) == (5, 1024, 64)
    assert effort(["g <= 1"], 5.0, trials=200)[1] == 512 and effort([], None, trials=200)[1] == 96  # sqrt(50/200)
    assert effort(["g <= 1"], 5.0, raw_samples=64)[1] == 64
