"""Surrogate-assisted optimization: nsga2 and qnehvi on a model trained by an earlier stage ({stage: fit})."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from reflow.runner import execute, start_run
from reflow.store import read_dataset
from reflow.study import load_study

SIM = '''
def grow(t_h):
    """Intermetallic thickness after t_h hours (a power law: the truth the surrogate learns)."""
    return {"x_um": 0.5 + 0.12 * t_h ** 0.5}


def cost(t_h):
    """Shorter ageing costs more test-chamber slots per qualified lot (made up, monotonic)."""
    return {"cost": 1000.0 / t_h}
'''

STUDY = """
study: surrogate-assisted
seed: 4
stages:
  grow:
    task: doe
    design: {lhs: {samples: 10}}
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
    optimizer: OPTIMIZER
    objectives: {x_um: min, cost: min}
    budget: {initial: 6, evaluations: 12, batch_size: 3}
"""


@pytest.mark.parametrize("optimizer", ["nsga2", "{qnehvi: {num_restarts: 2, raw_samples: 32, mc_samples: 32}}"])
def test_optimizing_a_trained_surrogate(tmp_path, optimizer):
    (tmp_path / "sim.py").write_text(SIM)
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(STUDY).replace("OPTIMIZER", optimizer))
    run = execute(start_run(load_study(path), tmp_path / "runs", quiet=True))
    trials = read_dataset(run.dir / "opt" / "trials.nc")
    assert trials.sizes["trial"] == 12 and (trials["status"].values == "ok").all()
    t = trials["t_h"].values.astype(float)
    # the optimizer saw the surrogate's prediction, which follows the power law it was fit to
    assert np.allclose(trials["x_um"].values, 0.5 + 0.12 * t**0.5, rtol=0.02)
    assert np.allclose(trials["cost"].values, 1000.0 / t)
    pareto = read_dataset(run.dir / "opt" / "best.nc")
    # both objectives fall and rise monotonically with t_h in opposite directions: every ok point is Pareto
    assert pareto.sizes["trial"] == len(np.unique(t))


def test_an_evolutionary_optimizer_needs_an_initial_population(tmp_path):
    from reflow.errors import StudyError

    (tmp_path / "sim.py").write_text(SIM)
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(STUDY).replace("OPTIMIZER", "nsga2").replace("initial: 6", "initial: 2"))
    with pytest.raises(StudyError, match=r"nsga2 needs at least 4 initial evaluations before its first ask \(got 2\)"):
        load_study(path)
