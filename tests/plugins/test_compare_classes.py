"""Task ``compare`` for class labels: accuracy / macro F1 per fold, ranking by accuracy, repeated random splits
grouped by a variable, stratified folds, and image classifiers (no feature columns)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import reflow
import xarray as xr
from reflow.errors import StudyError
from reflow.plugins.tasks._crossval import class_fold_scores, fold_assignment, random_assignment
from reflow.runner import run_study
from reflow.study import load_study


class Lots(reflow.DataSource):
    """Two features; the label is 'a', 'b' or 'c' by which third of x1 a sample lies in (x2 is noise); four
    samples per lot."""

    class Params(reflow.Params):
        n: int = 72

    def load(self, ctx):
        rng = np.random.default_rng(3)
        n = self.params.n
        x1, x2 = rng.uniform(0, 3, n), rng.uniform(0, 3, n)
        label = np.array(["a", "b", "c"])[np.minimum(x1.astype(int), 2)]
        ds = xr.Dataset({"x1": ("sample", x1), "x2": ("sample", x2), "label": ("sample", label),
                         "lot": ("sample", np.arange(n) // 4)}, coords={"sample": np.arange(n)})
        ds["label"].attrs["classes"] = ["c", "b", "a"]  # a source's own class order
        return ds


class Centroids(reflow.Model):
    """Nearest class mean; refuses to predict a sample it was fit on (a leak check)."""

    family = "classifier"

    class Params(reflow.Params):
        scale: float = 10.0

    def _x(self, data):
        return np.column_stack([data[f].values.astype(float) for f in self.features])

    def fit(self, data, ctx, validation=None):
        x, y = self._x(data), data[self.targets[0]].values.astype(str)
        self.classes_ = sorted(set(y.tolist()))
        self.means_ = np.array([x[y == c].mean(axis=0) for c in self.classes_])
        self.seen_ = set(np.asarray(data["sample"].values).tolist())
        return self

    def predict(self, data, ctx):
        leaked = self.seen_ & set(np.asarray(data["sample"].values).tolist())
        assert not leaked, f"predicting {len(leaked)} samples it was trained on"
        assert self.targets[0] not in data, "the held-out data still holds the labels"
        d = np.linalg.norm(self._x(data)[:, None, :] - self.means_[None], axis=2)
        e = np.exp(-self.params.scale * d)
        prob = e / e.sum(axis=1, keepdims=True)
        t = self.targets[0]
        out = {f"{t}_pred": ("sample", np.array(self.classes_)[d.argmin(axis=1)])}
        out.update({f"{t}_prob_{c}": ("sample", prob[:, j]) for j, c in enumerate(self.classes_)})
        return xr.Dataset(out, coords={"sample": data["sample"].values})

    def save_state(self, directory: Path) -> None:
        np.save(directory / "means.npy", self.means_)
        (directory / "classes.json").write_text(json.dumps(self.classes_))

    def load_state(self, directory: Path) -> None:
        self.means_ = np.load(directory / "means.npy", allow_pickle=False)
        self.classes_ = json.loads((directory / "classes.json").read_text())


class Majority(Centroids):
    """Always the most frequent training class."""

    def fit(self, data, ctx, validation=None):
        super().fit(data, ctx)
        y = data[self.targets[0]].values.astype(str)
        self.top_ = max(self.classes_, key=lambda c: (y == c).sum())
        return self

    def predict(self, data, ctx):
        t, n = self.targets[0], data.sizes["sample"]
        return xr.Dataset({f"{t}_pred": ("sample", np.full(n, self.top_))}, coords={"sample": data["sample"].values})


@reflow.hookimpl
def _register_models(register):
    register("centroids-cls", Centroids)
    register("majority-cls", Majority)


@reflow.hookimpl
def _register_data_sources(register):
    register("lots-cls", Lots)


PLUGIN = types.SimpleNamespace(register_models=_register_models, register_data_sources=_register_data_sources)

STUDY = """
study: compare-classes
seed: 6
stages:
  lots:
    task: data
    source: lots-cls
  pick:
    task: compare
    data: lots
    target: label
    features: [x1, x2]
    models: [majority-cls, centroids-cls]
    group_by: lot
    splits: random
    test: 0.25
    repeats: 5
"""


@pytest.fixture
def run(register_plugin, write_study, tmp_path):
    register_plugin(PLUGIN, "compare-classes-test")
    return run_study(load_study(write_study(STUDY)), out=tmp_path / "runs", quiet=True)


def test_repeated_random_splits_grouped_by_lot(run):
    scores, pred = run.output("pick.scores"), run.output("pick.predictions")
    assert scores.sizes["repeat"] == 5 and scores.sizes["fold"] == 1
    lots = pred["lot"].values
    held = pred["fold"].values == 0  # (repeat, sample): held out in that repeat
    assert held.shape == (5, 72)
    for r in range(5):
        out_lots = set(lots[held[r]].tolist())
        assert not out_lots & set(lots[~held[r]].tolist())  # a lot is never on both sides
        assert len(out_lots) in (4, 5)  # a quarter of 18 lots, stratified by class
    assert len({tuple(np.flatnonzero(h)) for h in held}) == 5  # five different splits
    assert (scores["test_samples"].values + scores["train_samples"].values == 72).all()
    np.testing.assert_array_equal(scores["test_samples"].sel(model="centroids-cls").values[:, 0], held.sum(axis=1))


def test_accuracy_and_macro_f1_per_split_match_the_predictions(run):
    from sklearn.metrics import f1_score, precision_score

    scores, pred = run.output("pick.scores"), run.output("pick.predictions")
    truth = pred["label"].values.astype(str)
    for model in ("majority-cls", "centroids-cls"):
        for r in range(5):
            held = pred["fold"].values[r] == 0
            p = pred["label_pred"].sel(model=model, repeat=r).values.astype(str)
            assert (p[~held] == "").all() and (p[held] != "").all()
            y, g = truth[held], p[held]
            s = scores.sel(model=model, repeat=r, fold=0)
            assert float(s["label_accuracy"]) == pytest.approx(np.mean(y == g))
            assert float(s["label_macro_f1"]) == pytest.approx(f1_score(y, g, average="macro", zero_division=0))
            assert float(s["label_macro_precision"]) == pytest.approx(
                precision_score(y, g, average="macro", zero_division=0))
    # centroids have probabilities (ROC AUC); majority votes have none
    assert np.isfinite(scores["label_roc_auc_ovr"].sel(model="centroids-cls").values).all()
    assert np.isnan(scores["label_roc_auc_ovr"].sel(model="majority-cls").values).all()


def test_ranked_by_accuracy_mean_and_spread(run):
    summary, metrics = run.output("pick"), run.result("pick").metrics
    assert metrics["rank_by"] == "label_accuracy"
    assert metrics["ranking"] == ["centroids-cls", "majority-cls"]
    acc = run.output("pick.scores")["label_accuracy"].sel(model="centroids-cls").values.ravel()
    assert float(summary["label_accuracy_mean"].sel(model="centroids-cls")) == pytest.approx(acc.mean())
    assert float(summary["label_accuracy_std"].sel(model="centroids-cls")) == pytest.approx(acc.std(ddof=1))
    assert metrics["best_label_accuracy_mean"] > 0.8  # x1 decides the class
    assert summary["label_accuracy_mean"].sel(model="majority-cls") < 0.6
    assert isinstance(run.model("pick"), Centroids)
    for name in ("compare_accuracy.png", "compare_confusion_label.png", "compare_times.png"):
        assert (run.dir / "pick" / name).stat().st_size > 5000, name
    assert not (run.dir / "pick" / "compare_r2.png").exists()


def test_stratified_grouped_kfold_keeps_classes_in_every_fold():
    labels = np.repeat(np.array(["a", "b", "c"] * 8), 3)  # 24 groups of 3 samples, 8 per class
    groups = np.repeat(np.arange(24), 3)
    out = fold_assignment(72, 4, 2, True, 1, groups, strata=labels)
    for r in range(2):
        for k in range(4):
            fold = out[r] == k
            assert set(labels[fold].tolist()) == {"a", "b", "c"}
            assert not set(groups[fold].tolist()) & set(groups[~fold].tolist())
    ungrouped = fold_assignment(30, 3, 1, True, 1, None, strata=np.array(["x"] * 24 + ["y"] * 6))
    assert all(((ungrouped[0] == k) & (np.arange(30) >= 24)).sum() == 2 for k in range(3))


def test_random_assignment_stratified_and_reproducible():
    strata = np.array(["rare"] * 10 + ["common"] * 90)
    a = random_assignment(100, 0.2, 3, seed=5, strata=strata)
    assert (a == random_assignment(100, 0.2, 3, seed=5, strata=strata)).all()
    assert ((a == 0).sum(axis=1) == 20).all()
    assert ((a[:, :10] == 0).sum(axis=1) == 2).all()  # the rare class keeps its 10 % share
    with pytest.raises(reflow.DataError, match="too few"):
        random_assignment(3, 0.5, 1, seed=0, groups=np.array([1, 1, 1]))


def test_class_fold_scores_use_the_classes_seen_in_the_fold():
    s = class_fold_scores("y", ["a", "a", "b", "b"], ["a", "b", "b", "b"], ["c", "b", "a"],
                          {"a": np.array([0.9, 0.4, 0.2, 0.1]), "b": np.array([0.1, 0.6, 0.8, 0.9])})
    assert s["y_accuracy"] == 0.75
    assert s["y_macro_f1"] == pytest.approx((2 / 3 + 0.8) / 2)  # c is absent from this fold: not averaged in
    assert s["y_macro_recall"] == pytest.approx(0.75)
    assert s["y_roc_auc_ovr"] == pytest.approx(1.0)


def test_image_classifiers_compared_on_repeated_splits(write_study, tmp_path):
    path = write_study("""
        study: compare-images
        seed: 2
        stages:
          packages:
            task: data
            source: {synthetic-ic-package: {per_class: 12, size: 32, views_per_package: 2}}
          pick:
            task: compare
            data: packages
            target: label
            models:
              - {model: {pca-logistic: {size: 16, components: 6}}, label: pca6}
              - {model: {pca-logistic: {size: 8, components: 2, C: 0.0001}}, label: starved}
            group_by: package_id
            splits: random
            test: 0.25
            repeats: 3
    """)
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    summary, metrics = run.output("pick"), run.result("pick").metrics
    assert metrics["failed_fits"] == 0
    assert set(summary["model"].values) == {"pca6", "starved"}
    acc = summary["label_accuracy_mean"]
    assert 0.0 <= float(acc.min()) and float(acc.max()) <= 1.0
    assert metrics["best_model"] == "pca6" and float(acc.sel(model="pca6")) > 0.5
    pred = run.output("pick.predictions")
    assert set(np.unique(pred["label_pred"].values)) <= {"", "plastic", "ceramic", "metal"}
    assert (run.dir / "pick" / "compare_confusion_label.png").exists()


@pytest.mark.parametrize(("extra", "message"), [
    ("splits: random\n    folds: 3", "folds applies to splits: kfold"),
    ("test: 0.3", "test is the held-out fraction of splits: random"),
    ("rank_by: label_acuracy", "label_accuracy"),
])
def test_bad_split_settings_are_study_errors(extra, message, register_plugin, write_study):
    register_plugin(PLUGIN, "compare-classes-test")
    text = STUDY.replace("    splits: random\n    test: 0.25\n", "    " + extra + "\n")
    with pytest.raises(StudyError, match=message):
        load_study(write_study(text))


def test_rank_by_a_score_the_target_does_not_have(register_plugin, write_study, tmp_path):
    register_plugin(PLUGIN, "compare-classes-test")
    path = write_study(STUDY + "    rank_by: label_r2\n")
    with pytest.raises(reflow.UserInputError, match="rank_by 'label_r2' is not a score"):
        run_study(load_study(path), out=tmp_path / "runs", quiet=True)
