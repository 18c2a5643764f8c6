"""Task ``train``: ``where`` (train on the rows that satisfy a condition) and ``test_data`` (an explicit held-out
set), the way a study trains "without GAN" on the real rows of an augmented set and "with GAN" on all of them,
both tested on the same real images."""

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


class ToyRows(reflow.DataSource):
    """x in [0, 1], label 'high' when x > 0.5, five rows per lot; the last third are marked ``synthetic`` and are
    bad generated samples: x below 0.5 labelled 'high', so a model that learns from them gets worse."""

    class Params(reflow.Params):
        n: int = 60
        seed: int = 0
        synthetic_share: float = 1 / 3

    def load(self, ctx):
        n = self.params.n
        rng = np.random.default_rng(self.params.seed)
        synthetic = np.arange(n) >= n - int(round(n * self.params.synthetic_share))
        x = np.where(synthetic, rng.uniform(0.0, 0.5, n), rng.uniform(0.0, 1.0, n))
        label = np.where(synthetic | (x > 0.5), "high", "low")
        return xr.Dataset({"x": ("sample", x), "label": ("sample", label), "lot": ("sample", np.arange(n) // 5),
                           "synthetic": ("sample", synthetic)}, coords={"sample": np.arange(n)})


class Centroids(reflow.Model):
    """Nearest class mean of the features; remembers the rows it was fit and validated on."""

    family = "classifier"

    class Params(reflow.Params):
        pass

    def fit(self, data, ctx, validation=None):
        x = np.column_stack([data[f].values.astype(float) for f in self.features])
        y = data[self.targets[0]].values.astype(str)
        self.classes_ = sorted(set(y.tolist()))
        self.means_ = np.array([x[y == c].mean(axis=0) for c in self.classes_])
        self.seen_ = np.asarray(data["sample"].values)
        val = validation
        self.val_seen_ = np.asarray(val["sample"].values) if val is not None else np.array([], dtype=int)
        return self

    def predict(self, data, ctx):
        x = np.column_stack([data[f].values.astype(float) for f in self.features])
        d = np.linalg.norm(x[:, None, :] - self.means_[None, :, :], axis=2)
        prob = np.exp(-d * 10) / np.exp(-d * 10).sum(axis=1, keepdims=True)
        t = self.targets[0]
        out = {f"{t}_pred": ("sample", np.array(self.classes_)[d.argmin(axis=1)])}
        out.update({f"{t}_prob_{c}": ("sample", prob[:, j]) for j, c in enumerate(self.classes_)})
        return xr.Dataset(out, coords={"sample": data["sample"].values})

    def save_state(self, directory: Path) -> None:
        np.savez(directory / "state.npz", means=self.means_, seen=self.seen_, val_seen=self.val_seen_)
        (directory / "classes.json").write_text(json.dumps(self.classes_))

    def load_state(self, directory: Path) -> None:
        with np.load(directory / "state.npz", allow_pickle=False) as state:
            self.means_, self.seen_, self.val_seen_ = state["means"], state["seen"], state["val_seen"]
        self.classes_ = json.loads((directory / "classes.json").read_text())


@reflow.hookimpl
def _register_models(register):
    register("centroids-sel", Centroids)


@reflow.hookimpl
def _register_data_sources(register):
    register("toy-rows-sel", ToyRows)


PLUGIN = types.SimpleNamespace(register_models=_register_models, register_data_sources=_register_data_sources)

STUDY = """
study: selection
seed: 4
stages:
  rows:
    task: data
    source: {toy-rows-sel: {n: 60}}
  heldout:
    task: data
    source: {toy-rows-sel: {n: 25, seed: 9, synthetic_share: 0}}
  real:
    task: train
    model: centroids-sel
    data: rows
    where: "synthetic == 0"
    target: label
    features: [x]
    test_data: heldout
    split: {by: lot, val: 0.25}
  every:
    task: train
    model: centroids-sel
    data: rows
    target: label
    features: [x]
    test_data: heldout
"""


@pytest.fixture
def run(register_plugin, write_study, tmp_path):
    register_plugin(PLUGIN, "train-selection-test")
    return run_study(load_study(write_study(STUDY)), out=tmp_path / "runs", quiet=True)


def test_where_keeps_only_the_rows_that_satisfy_it(run):
    rows = run.output("rows")
    real = np.flatnonzero(~rows["synthetic"].values)
    model = run.model("real")
    seen = set(model.seen_.tolist()) | set(model.val_seen_.tolist())
    assert seen == set(real.tolist())  # every real row, in training or validation, and no generated one
    metrics = run.result("real").metrics
    assert (metrics["where_kept"], metrics["where_dropped"]) == (40, 20)
    assert metrics["where"] == "synthetic == 0"
    assert metrics["train_samples"] + metrics["val_samples"] == 40
    # the validation part is whole lots of the kept rows (split.val 0.25 of 8 lots)
    lots = rows["lot"].values
    assert metrics["val_samples"] == 10
    assert not {lots[i] for i in model.seen_} & {lots[i] for i in model.val_seen_}
    # without `where` the generated rows are trained on
    assert set(run.model("every").seen_.tolist()) == set(range(60))


def test_test_data_is_the_held_out_set(run):
    heldout = run.output("heldout")
    for stage in ("real", "every"):
        metrics = run.result(stage).metrics
        pred = run.output(f"{stage}.predictions")
        assert metrics["test_samples"] == 25
        np.testing.assert_array_equal(pred["sample"].values, heldout["sample"].values)
        np.testing.assert_allclose(pred["x"].values, heldout["x"].values)
        truth = heldout["label"].values.astype(str)
        assert metrics["label_accuracy"] == pytest.approx(np.mean(pred["label_pred"].values.astype(str) == truth))
    # the mislabelled generated rows pull the mean of 'high' down: worse on the real held-out rows
    real, every = run.result("real").metrics, run.result("every").metrics
    assert real["label_accuracy"] >= 0.9
    assert real["label_accuracy"] > every["label_accuracy"]
    assert real["label_roc_auc_ovr"] > 0.95
    assert (run.dir / "real" / "label_roc.png").stat().st_size > 5000
    assert (run.dir / "real" / "label_confusion.png").exists()


def test_split_test_with_test_data_is_a_study_error(register_plugin, write_study):
    register_plugin(PLUGIN, "train-selection-test")
    path = write_study(STUDY.replace("split: {by: lot, val: 0.25}", "split: {by: lot, test: 0.3}"))
    with pytest.raises(StudyError, match=r"split.*test.*test_data"):
        load_study(path)


def test_bad_where_is_a_study_error(register_plugin, write_study):
    register_plugin(PLUGIN, "train-selection-test")
    path = write_study(STUDY.replace('where: "synthetic == 0"', 'where: "synthetic = 0"'))
    with pytest.raises(StudyError, match="where"):
        load_study(path)


@pytest.mark.parametrize(("condition", "message"), [("synthetc == 0", "'synthetc'"),
                                                    ("x > 5", "no row of stage rows satisfies")])
def test_where_on_unknown_variable_or_no_rows_is_a_data_error(condition, message, register_plugin, write_study,
                                                              tmp_path):
    register_plugin(PLUGIN, "train-selection-test")
    path = write_study(STUDY.replace('"synthetic == 0"', f'"{condition}"'))
    with pytest.raises(reflow.DataError, match=message):
        run_study(load_study(path), out=tmp_path / "runs", quiet=True)


def test_test_data_without_a_feature_is_a_data_error(register_plugin, write_study, tmp_path):
    register_plugin(PLUGIN, "train-selection-test")
    path = write_study(STUDY + """
  late:
    task: train
    model: centroids-sel
    data: rows
    target: label
    features: [lot]
    test_data: every.predictions
""")
    with pytest.raises(reflow.DataError, match="test_data every.predictions has no variables lot"):
        run_study(load_study(path), out=tmp_path / "runs", quiet=True)


def test_augmented_images_with_and_without_generated_ones(write_study, tmp_path):
    """An augment stage's train (real + classic images) and its real rows, both tested on its held-out images;
    WLP class names hold hyphens, which the probability columns spell with underscores."""
    path = write_study("""
        study: aug-selection
        seed: 2
        stages:
          wafers:
            task: data
            source: {synthetic-wlp: {images: 72, size: 64, dies_per_wafer: 4, merge_bump_defects: true,
                                     class_weights: {good: 0, delamination: 0, particle: 0, scratch: 0,
                                                     trace-break: 0, tsv-void: 0, mold-crack: 0.3}}}
          aug:
            task: augment
            data: wafers
            split: {by: wafer_id, test: 0.3}
            augmenter: {classic: {angles: [90, 180]}}
            target_per_class: 20
          real:
            task: train
            model: {pca-logistic: {size: 16, components: 8}}
            data: aug.train
            where: "synthetic == 0"
            target: label
            test_data: aug.test
          both:
            task: train
            model: {pca-logistic: {size: 16, components: 8}}
            data: aug.train
            target: label
            test_data: aug.test
    """)
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    train, test = run.output("aug.train"), run.output("aug.test")
    real_rows = int((~train["synthetic"].values).sum())
    assert 0 < real_rows < train.sizes["sample"]
    real, both = run.result("real").metrics, run.result("both").metrics
    assert real["train_samples"] == real_rows and both["train_samples"] == train.sizes["sample"]
    assert real["test_samples"] == both["test_samples"] == test.sizes["sample"]
    for stage in ("real", "both"):
        pred = run.output(f"{stage}.predictions")
        np.testing.assert_array_equal(pred["wafer_id"].values, test["wafer_id"].values)
        assert "label_prob_chip_crack" in pred and "image" in pred
        assert np.isfinite(run.result(stage).metrics["label_roc_auc_ovr"])
        assert (run.dir / stage / "label_roc.png").exists()
