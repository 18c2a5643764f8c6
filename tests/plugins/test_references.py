"""References mean what users mean: a given ``{goal: min, reference: ...}`` is the hypervolume reference and a
threshold, never replaced; while no trial beats it the log and the metrics say so. Plus the BoTorch kernel
fallback that keeps the first qLogNEHVI ask from waiting for a C++ compile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from reflow.runner import execute, start_run
from reflow.store import read_dataset
from reflow.study import validate_study

FAST_BO = {"num_restarts": 2, "raw_samples": 32, "mc_samples": 32}

SIM = '''
def bowl(x, y):
    """Two objectives that are never below 0 (a reference below 0 cannot be beaten)."""
    return {"f1": (x - 0.3) ** 2 + 0.1, "f2": (y + 0.2) ** 2 + x ** 2 + 0.1}
'''


def _optimizer(cls_name: str, objectives):
    from reflow.plugins.optimize import bayes
    from reflow.problem import OptimizationProblem
    from reflow.space import ParameterSpec, Space

    space = Space.from_specs({k: ParameterSpec(low=-1.0, high=1.0) for k in ("x", "y")})
    opt = getattr(bayes, cls_name)(**FAST_BO)
    opt.setup(OptimizationProblem(space, list(objectives)), 0)
    return opt


def test_the_given_reference_is_kept_while_no_trial_beats_it():
    import torch
    from reflow.plugins.optimize.bayes import reference_point
    from reflow.problem import Objective

    opt = _optimizer("QNEHVI", [Objective("f1", "min", reference=0.05), Objective("f2", "min", reference=0.05)])
    y = torch.tensor([[0.2, 0.9], [0.5, 0.3], [1.0, 0.15]], dtype=torch.double)
    # before this change, nothing beating (0.05, 0.05) made the reference an inferred one from the front
    assert reference_point(opt, y) == pytest.approx([-0.05, -0.05])
    partial = _optimizer("QNEHVI", [Objective("f1", "min", reference=0.05), Objective("f2", "min")])
    ref = reference_point(partial, y)
    assert ref[0] == pytest.approx(-0.05) and ref[1] < -0.9, "only the objective without a reference is inferred"


@pytest.mark.parametrize(("points", "objectives", "margin"), [
    (2, 2, 0.1), (7, 2, 0.1), (40, 2, 0.1),  # two objectives: BoTorch's 10 %
    (5, 3, 1.0), (6, 3, 0.5), (9, 3, 0.5), (10, 3, 1 / 3), (15, 3, 1 / 4), (35, 3, 1 / 6),
    (3, 4, 1.0), (9, 4, 1.0), (10, 4, 0.5), (20, 4, 1 / 3), (35, 4, 1 / 4),
])
def test_the_inferred_reference_margin_follows_ishibuchis_lattice_rule(points, objectives, margin):
    from reflow.plugins.optimize.bayes import reference_margin

    # H divisions of the simplex lattice fit C(H + m - 1, m - 1) points: (3 objectives) 3, 6, 10, 15, 21, 28, 36
    assert reference_margin(points, objectives) == pytest.approx(margin)


def test_three_objectives_without_references_get_the_wider_inferred_reference():
    import torch
    from reflow.plugins.optimize.bayes import reference_point
    from reflow.problem import Objective

    # seven mutually non-dominated points of three minimized objectives (each a permutation of 1, 2, 3, or 2s)
    y = torch.tensor([[1, 2, 3], [1, 3, 2], [2, 1, 3], [2, 3, 1], [3, 1, 2], [3, 2, 1], [2, 2, 2]],
                     dtype=torch.double)
    opt = _optimizer("QNEHVI", [Objective(n, "min") for n in ("f1", "f2", "f3")])
    # signed (maximized) nadir -3 in each, range 2; 7 points: H = 2 (C(4, 2) = 6 <= 7 < 10), a margin of 1 / 2
    assert reference_point(opt, y) == pytest.approx([-4.0, -4.0, -4.0])
    # a dominated trial far beyond the front: BayBE's rule (the worst of all trials less 10 % of their range) is
    # then the wider in each objective: -5 - 0.1 * (5 - 1)
    far = torch.cat([y, torch.tensor([[5.0, 5.0, 5.0]], dtype=torch.double)])
    assert reference_point(opt, far) == pytest.approx([-5.4, -5.4, -5.4])
    # the wider of the two objective by objective
    mixed = torch.cat([y, torch.tensor([[5.0, 2.5, 2.5]], dtype=torch.double)])
    assert reference_point(opt, mixed) == pytest.approx([-5.4, -4.0, -4.0])
    two = _optimizer("QNEHVI", [Objective("f1", "min"), Objective("f2", "min")])
    assert reference_point(two, y[[0, 6, 5]][:, [0, 2]]) == pytest.approx([-3.2, -3.2]), "BoTorch's 10 % for two"
    assert reference_point(two, torch.tensor([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [9.0, 9.0]],
                                             dtype=torch.double)) == pytest.approx([-3.2, -3.2]), "the front's"



def test_the_reference_is_a_threshold_for_parego_and_a_single_objective():
    import torch
    from reflow.problem import Objective

    for cls_name, objectives in (("QParEGO", [Objective("f1", "min", 0.5), Objective("f2", "max", 2.0)]),
                                 ("QLogNEI", [Objective("f1", "min", 0.5)])):
        opt = _optimizer(cls_name, objectives)
        thresholds = opt.reference_constraints()
        assert len(thresholds) == len(objectives)
        z = torch.tensor([[0.4, 2.5], [0.6, 2.5], [0.4, 1.5]], dtype=torch.double)
        assert (thresholds[0](z) <= 0).tolist() == [True, False, True]  # f1 below 0.5 beats it
        if len(thresholds) > 1:
            assert (thresholds[1](z) <= 0).tolist() == [True, True, False]  # f2 above 2.0 beats it


def test_the_threshold_steers_a_single_objective_search_while_unbeaten():
    """qLogNEI with a reference below every observation asks where the model expects to beat it."""
    from types import SimpleNamespace

    from reflow.problem import Objective

    opt = _optimizer("QLogNEI", [Objective("f1", "min", 0.12)])
    x = np.array([-1.0, -0.5, 0.9, 1.0, -0.8, 0.7])
    y = np.array([0.0, 0.5, -0.5, 0.9, -0.9, 0.2])
    opt.tell(xr.Dataset({"x": ("trial", x), "y": ("trial", y), "f1": ("trial", (x - 0.3) ** 2 + 0.1),
                         "status": ("trial", np.array(["ok"] * 6))}, coords={"trial": np.arange(6)}))
    ds = opt.ask(1, SimpleNamespace(device="cpu"))
    assert abs(float(ds["x"].values[0]) - 0.3) < 0.35, "the ask heads to the region below the reference"


def _run(folder: Path, objectives: dict, optimizer: str = "qnehvi") -> Path:
    (folder / "sim.py").write_text(SIM)
    stage = {"task": "optimize", "space": {"x": {"low": -1.0, "high": 1.0}, "y": {"low": -1.0, "high": 1.0}},
             "evaluate": {"python": {"function": "sim:bowl", "outputs": ["f1", "f2"]}},
             "optimizer": {optimizer: dict(FAST_BO)}, "objectives": objectives,
             "budget": {"initial": 4, "evaluations": 6}}
    raw = {"study": "refs", "seed": 0, "stages": {"opt": stage}}
    run = start_run(validate_study(raw, path=folder / "study.yaml"), folder / "runs", quiet=True)
    execute(run)
    return run.dir


def test_an_unbeaten_reference_is_kept_logged_and_counted(tmp_path, monkeypatch):
    from reflow.plugins.tasks.optimize import OptimizeTask

    monkeypatch.setattr(OptimizeTask, "plot", lambda self, result, folder: [])
    run_dir = _run(tmp_path, {"f1": {"goal": "min", "reference": 0.0}, "f2": {"goal": "min", "reference": 0.05}})
    metrics = json.loads((run_dir / "opt" / "metrics.json").read_text())
    trials = read_dataset(run_dir / "opt" / "trials.nc")
    assert metrics["trials_beating_reference"] == 0 and metrics["hypervolume"] == 0.0
    ref = trials.attrs["reference_point"]
    assert list(json.loads(ref) if isinstance(ref, str) else ref) == pytest.approx([0.0, 0.05]), "never replaced"
    log = (run_dir / "run.log").read_text()
    assert "no feasible trial of 6 beats the given reference (f1 < 0, f2 < 0.05): hypervolume 0" in log


def test_a_beaten_reference_is_counted_without_a_warning(tmp_path, monkeypatch):
    from reflow.plugins.tasks.optimize import OptimizeTask

    monkeypatch.setattr(OptimizeTask, "plot", lambda self, result, folder: [])
    run_dir = _run(tmp_path, {"f1": {"goal": "min", "reference": 5.0}, "f2": "min"})
    metrics = json.loads((run_dir / "opt" / "metrics.json").read_text())
    trials = read_dataset(run_dir / "opt" / "trials.nc")
    assert metrics["trials_beating_reference"] == int(np.sum(trials["f1"].values < 5.0)) == 6
    assert "beats the given reference" not in (run_dir / "run.log").read_text()


# ---- no first-call stall ----------------------------------------------------------------------------------
def test_an_unbuilt_kernel_is_not_compiled_inside_an_ask(tmp_path, monkeypatch):
    from botorch.acquisition.multi_objective import logei
    from reflow.plugins.optimize import kernels

    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setattr(logei, "_C", None)
    monkeypatch.setattr(logei, "_load_attempted", False)
    started = []
    monkeypatch.setattr(kernels, "start_build", lambda: started.append(True))
    assert kernels.build_dir() == tmp_path / kernels.NAME
    assert kernels.fused_logehvi() is False
    assert logei._load_attempted is True, "BoTorch skips its JIT compile and uses the pure-Python path"
    assert started == [True], "the kernel is compiled in the background instead"
    # once the background build has put the library in place, the next ask lets BoTorch load it
    (tmp_path / kernels.NAME).mkdir(exist_ok=True)  # torch creates the build folder already
    (tmp_path / kernels.NAME / f"{kernels.NAME}.so").write_bytes(b"")
    assert kernels.fused_logehvi() is True and logei._load_attempted is False
