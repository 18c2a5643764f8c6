"""Task ``train`` on synthetic SAM labels: stratified grouped split, threshold metrics, classifier metrics, plots."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import reflow
import xarray as xr
from reflow.errors import StudyError
from reflow.runner import run_study
from reflow.study import load_study


class LinearFit(reflow.Model):
    """Least squares of the targets on the features (enough to predict Delta B_max from the lost areas)."""

    family = "regressor"

    class Params(reflow.Params):
        pass

    def _x(self, data):
        return np.column_stack([data[f].values.astype(float) for f in self.features] + [np.ones(data.sizes["sample"])])

    def fit(self, data, ctx, validation=None):
        y = np.column_stack([data[t].values.astype(float) for t in self.targets])
        self.coef_ = np.linalg.lstsq(self._x(data), y, rcond=None)[0]
        return self

    def predict(self, data, ctx):
        y = self._x(data) @ self.coef_
        return xr.Dataset({f"{t}_mean": ("sample", y[:, j]) for j, t in enumerate(self.targets)},
                          coords={"sample": data["sample"].values})

    def save_state(self, directory: Path) -> None:
        np.save(directory / "coef.npy", self.coef_)

    def load_state(self, directory: Path) -> None:
        self.coef_ = np.load(directory / "coef.npy", allow_pickle=False)


class CutClassifier(reflow.Model):
    """Calls a sample defective when its first feature is above a cut learned as the midpoint of the classes;
    its probabilities are a logistic function of the distance to the cut."""

    family = "classifier"

    class Params(reflow.Params):
        pass

    def fit(self, data, ctx, validation=None):
        x, y = data[self.features[0]].values, data[self.targets[0]].values.astype(bool)
        self.cut_ = float((x[y].min() + x[~y].max()) / 2) if y.any() and (~y).any() else float(np.median(x))
        return self

    def predict(self, data, ctx):
        t, x = self.targets[0], data[self.features[0]].values
        p_true = 1.0 / (1.0 + np.exp(-(x - self.cut_) / 0.02))
        return xr.Dataset({f"{t}_pred": ("sample", x > self.cut_), f"{t}_prob_True": ("sample", p_true),
                           f"{t}_prob_False": ("sample", 1.0 - p_true)}, coords={"sample": data["sample"].values})

    def save_state(self, directory: Path) -> None:
        (directory / "cut.json").write_text(json.dumps({"cut": self.cut_}))

    def load_state(self, directory: Path) -> None:
        self.cut_ = json.loads((directory / "cut.json").read_text())["cut"]


@reflow.hookimpl
def _register_models(register):
    register("linear-fit-test", LinearFit)
    register("cut-classifier-test", CutClassifier)


PLUGIN = types.SimpleNamespace(register_models=_register_models)

STUDY = """
    study: sam-metrics
    seed: 3
    stages:
      sam:
        task: data
        source: {synthetic-sam: {leds: 40, size: 16}}
      regress:
        task: train
        model: linear-fit-test
        data: sam
        target: delta_bmax
        features: [void_fraction, crack_fraction]
        split: {by: led_id, test: 0.3, stratify: defective}
        threshold: {delta_bmax: 0.2}
      classify:
        task: train
        model: cut-classifier-test
        data: sam
        target: defective
        features: [contact_loss]
        split: {by: led_id, test: 0.3, stratify: defective}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from reflow.registry import add_plugin, remove_plugin, reset_plugins

    folder = tmp_path_factory.mktemp("sam-metrics")
    (folder / "study.yaml").write_text(STUDY.replace("\n    ", "\n").strip() + "\n")
    add_plugin(PLUGIN, "train-metrics-test")
    try:
        yield run_study(load_study(folder / "study.yaml"), out=folder / "runs", quiet=True)
    finally:
        remove_plugin("train-metrics-test")
        reset_plugins()


def test_threshold_metrics_match_the_predictions(run):
    metrics = json.loads((run.dir / "regress" / "metrics.json").read_text())
    pred = run.output("regress.predictions")
    y, p = pred["delta_bmax"].values, pred["delta_bmax_mean"].values
    truth, flagged = y > 0.2, p > 0.2
    tp, fp = int((truth & flagged).sum()), int((~truth & flagged).sum())
    fn, tn = int((truth & ~flagged).sum()), int((~truth & ~flagged).sum())
    assert metrics["delta_bmax_confusion"] == [[tn, fp], [fn, tp]]
    assert tp + fn > 0, "the test part holds defective LEDs (stratified)"
    assert metrics["delta_bmax_precision"] == pytest.approx(tp / (tp + fp))
    assert metrics["delta_bmax_recall"] == pytest.approx(tp / (tp + fn))
    assert metrics["delta_bmax_threshold"] == 0.2
    assert metrics["delta_bmax_roc_auc"] > 0.9  # the lost area explains Delta B_max
    assert metrics["delta_bmax_r2"] > 0.8
    assert metrics["delta_bmax_mse"] == pytest.approx(np.mean((y - p) ** 2))
    assert metrics["delta_bmax_rmse"] == pytest.approx(np.sqrt(metrics["delta_bmax_mse"]))
    for name in ("delta_bmax_parity.png", "delta_bmax_confusion.png", "delta_bmax_roc.png"):
        assert (run.dir / "regress" / name).stat().st_size > 5000, name


def test_stratified_split_keeps_leds_whole(run):
    pred = run.output("regress.predictions")
    sam = run.output("sam")
    test_leds = set(sam["led_id"].values[pred["sample"].values].tolist())
    test_rows = np.isin(sam["led_id"].values, list(test_leds))
    assert test_rows.sum() == pred.sizes["sample"]  # every image of a test LED is in the test part
    assert abs(len(test_leds) - 12) <= 1  # about 30 % of 40 LEDs


def test_classifier_metrics_and_confusion_plot(run):
    metrics = json.loads((run.dir / "classify" / "metrics.json").read_text())
    pred = run.output("classify.predictions")
    y, p = pred["defective"].values, pred["defective_pred"].values
    assert metrics["defective_classes"] == [False, True]
    assert metrics["defective_accuracy"] == pytest.approx(np.mean(y == p))
    assert metrics["defective_confusion"] == [[int((~y & ~p).sum()), int((~y & p).sum())],
                                              [int((y & ~p).sum()), int((y & p).sum())]]
    assert set(metrics) >= {"defective_macro_f1", "defective_precision_True", "defective_recall_False",
                            "defective_f1_True", "defective_support_True"}
    assert metrics["defective_accuracy"] > 0.9  # contact loss sets Delta B_max up to 0.02 noise
    from sklearn.metrics import roc_auc_score

    assert metrics["defective_roc_auc_ovr"] == pytest.approx(roc_auc_score(y, pred["defective_prob_True"].values))
    assert (run.dir / "classify" / "defective_confusion.png").exists()


def test_threshold_must_name_a_target(register_plugin, write_study):
    register_plugin(PLUGIN, "train-metrics-test-2")
    study = write_study("""
        study: bad-threshold
        stages:
          sam:
            task: data
            source: {synthetic-sam: {leds: 2, size: 16}}
          fit:
            task: train
            model: linear-fit-test
            data: sam
            target: delta_bmax
            threshold: {deltabmax: 0.2}
    """)
    with pytest.raises(StudyError, match="'deltabmax' is not a target"):
        load_study(study)
