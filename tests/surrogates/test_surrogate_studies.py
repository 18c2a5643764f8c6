"""A trained surrogate through the ``train`` task and as the evaluator of ``doe`` and ``optimize`` stages
(``{stage: fit}``), and bad surrogate params caught by study validation."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from reflow.errors import StudyError
from reflow.runner import execute, start_run
from reflow.store import read_dataset
from reflow.study import load_study

STUDY = """
study: surrogates
seed: 5
stages:
  sims:
    task: doe
    design: {lhs: {samples: 36}}
    space:
      a: {low: 0, high: 1, units: mm}
      b: {low: 0, high: 1}
    evaluate: {python: {function: "sim:truth", outputs: [w, s]}}
  fit:
    task: train
    model: MODEL
    data: sims.trials
    target: [w, s]
    features: [a, b]
    split: {test: 0.25, val: 0.15}
  screen:
    task: doe
    design: {lhs: {samples: 12}}
    space:
      a: {low: 0, high: 1, units: mm}
      b: {low: 0, high: 1}
    evaluate: {stage: fit}
  opt:
    task: optimize
    space:
      a: {low: 0, high: 1, units: mm}
      b: {low: 0, high: 1}
    evaluate: [{stage: fit}, {python: {function: "sim:cost", outputs: [cost]}}]
    optimizer: nsga2
    objectives: {w: min, cost: min}
    budget: {initial: 6, evaluations: 12, batch_size: 3}
"""

SIM = '''
import math


def truth(a, b):
    return {"w": math.sin(3 * a) + b ** 2, "s": a * b}


def cost(a, b):
    return {"cost": 2.0 - a}
'''


@pytest.mark.parametrize(("model", "min_r2"), [("{gp: {kernel: matern52}}", 0.99),
                                               ("{mlp: {hidden: [16], epochs: 150, lr: 0.01}}", 0.85)])
def test_trained_surrogate_in_train_doe_and_optimize(model, min_r2, tmp_path):
    (tmp_path / "sim.py").write_text(SIM)
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(STUDY).replace("MODEL", model))
    run = execute(start_run(load_study(path), tmp_path / "runs", quiet=True))
    metrics = json.loads((run.dir / "fit" / "metrics.json").read_text())
    assert metrics["val_samples"] > 0 and metrics["fit_seconds"] > 0
    assert metrics["w_r2"] >= min_r2 and metrics["s_r2"] >= min_r2, metrics
    saved = run.dir / "fit" / "model"
    assert (saved / "surrogate" / "surrogate.json").exists() and not list(saved.rglob("*.pkl"))
    for stage, n in (("screen", 12), ("opt", 12)):
        trials = read_dataset(run.dir / stage / "trials.nc")
        assert trials.sizes["trial"] == n and (trials["status"].values == "ok").all()
        a, b = trials["a"].values, trials["b"].values
        # the trials hold the surrogate's predictions, which follow the truth it learned
        rmse = np.sqrt(np.mean((trials["w"].values - (np.sin(3 * a) + b**2)) ** 2))
        assert rmse < (0.05 if min_r2 > 0.9 else 0.2), (stage, rmse)
    pred = read_dataset(run.dir / "fit" / "predictions.nc")
    assert {"w_mean", "s_mean"} <= set(pred.data_vars)
    assert ("w_std" in pred) == model.startswith("{gp")


def test_bad_params_fail_study_validation(tmp_path):
    (tmp_path / "sim.py").write_text(SIM)
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(STUDY).replace("MODEL", "{gp: {kernel: cubic, scale: log}}"))
    with pytest.raises(StudyError) as err:
        load_study(path)
    text = str(err.value)
    assert "kernel" in text and "'rbf' or 'matern52'" in text
    assert "scale" in text and "'zscore'" in text
