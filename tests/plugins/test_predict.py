"""Task ``predict``: a model trained in one stage predicts data it never saw, scored where the truth is known."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from reflow.errors import StudyError
from reflow.runner import execute, start_run
from reflow.store import read_dataset
from reflow.study import load_study

SIM = '''
def grow(t_h):
    return {"x_um": 0.5 + 0.12 * t_h ** 0.5}
'''

STUDY = """
study: predict
seed: 2
stages:
  lab:
    task: doe
    design: {lhs: {samples: 12}}
    space: {t_h: {low: 1, high: 500}}
    evaluate: {python: {function: "sim:grow", outputs: [x_um]}}
  fit:
    task: train
    model: imc-growth
    data: lab.trials
    target: x_um
    features: [t_h]
    split: {test: 0.25}
  field:
    task: doe
    design: {lhs: {samples: 9}}
    space: {t_h: {low: 500, high: 1000}}
    evaluate: {python: {function: "sim:grow", outputs: [x_um]}}
  new:
    task: predict
    model: MODEL
    data: field.trials
"""


def test_predictions_on_new_data_are_scored_against_their_truth(tmp_path):
    (tmp_path / "sim.py").write_text(SIM)
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(STUDY).replace("MODEL", "{stage: fit}"))
    run = execute(start_run(load_study(path), tmp_path / "runs", quiet=True))
    pred = read_dataset(run.dir / "new" / "predictions.nc")
    t = pred["t_h"].values
    assert pred.sizes["trial"] == 9 and t.min() >= 500
    # the growth law extrapolates: the power law fitted on 1..500 h holds at 500..1000 h
    assert np.allclose(pred["x_um_mean"].values, 0.5 + 0.12 * t**0.5, rtol=0.01)
    metrics = json.loads((run.dir / "new" / "metrics.json").read_text())
    assert metrics["samples"] == 9 and metrics["x_um_r2"] > 0.99
    assert (run.dir / "new" / "x_um_predicted.png").exists()


def test_predict_needs_a_trained_stage(tmp_path):
    (tmp_path / "sim.py").write_text(SIM)
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(STUDY).replace("MODEL", "imc-growth"))
    with pytest.raises(StudyError, match="predict uses a model an earlier stage trained"):
        load_study(path)
