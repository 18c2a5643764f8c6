"""Task ``compare``: k-fold cross-validation of several models, grouped folds, the best model as the stage's model."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import reflow
import xarray as xr
from reflow.errors import StudyError
from reflow.plugins.tasks._crossval import fold_assignment
from reflow.runner import run_study
from reflow.study import load_study
from reflow.testing import test_context


def _matrix(data, features):
    dim = data[features[0]].dims[0]
    return np.column_stack([np.asarray(data[f].values, dtype=float) for f in features]), dim


class LeastSquares(reflow.Model):
    """y = X w + b by least squares."""

    family = "regressor"

    class Params(reflow.Params):
        pass

    def fit(self, data, ctx, validation=None):
        x, _ = _matrix(data, self.features)
        y = np.column_stack([data[t].values.astype(float) for t in self.targets])
        self.coef_, *_ = np.linalg.lstsq(np.column_stack([x, np.ones(len(x))]), y, rcond=None)
        return self

    def predict(self, data, ctx):
        x, dim = _matrix(data, self.features)
        y = np.column_stack([x, np.ones(len(x))]) @ self.coef_
        return xr.Dataset({f"{t}_mean": (dim, y[:, j]) for j, t in enumerate(self.targets)})

    def save_state(self, directory: Path) -> None:
        np.savez(directory / "state.npz", coef=self.coef_)

    def load_state(self, directory: Path) -> None:
        with np.load(directory / "state.npz", allow_pickle=False) as state:
            self.coef_ = state["coef"]


class Neighbours(reflow.Model):
    """k-nearest-neighbour mean, with the neighbours' spread as the std."""

    family = "surrogate"

    class Params(reflow.Params):
        k: int = 3

    def fit(self, data, ctx, validation=None):
        self.x_, _ = _matrix(data, self.features)
        self.y_ = np.column_stack([data[t].values.astype(float) for t in self.targets])
        return self

    def predict(self, data, ctx):
        x, dim = _matrix(data, self.features)
        d = np.linalg.norm(x[:, None, :] - self.x_[None, :, :], axis=2)
        near = np.argsort(d, axis=1)[:, : self.params.k]
        y = self.y_[near]  # (n, k, targets)
        out = {}
        for j, t in enumerate(self.targets):
            out[f"{t}_mean"] = (dim, y[:, :, j].mean(axis=1))
            out[f"{t}_std"] = (dim, y[:, :, j].std(axis=1))
        return xr.Dataset(out)

    def save_state(self, directory: Path) -> None:
        np.savez(directory / "state.npz", x=self.x_, y=self.y_)

    def load_state(self, directory: Path) -> None:
        with np.load(directory / "state.npz", allow_pickle=False) as state:
            self.x_, self.y_ = state["x"], state["y"]


class HeldOutSpy(Neighbours):
    """Fails loudly if it is ever asked to predict a sample it was fit on, or is shown the answers."""

    def fit(self, data, ctx, validation=None):
        self.seen_ = set(np.asarray(data["sample"].values).tolist())
        return super().fit(data, ctx)

    def predict(self, data, ctx):
        leaked = self.seen_ & set(np.asarray(data["sample"].values).tolist())
        if leaked:
            raise AssertionError(f"predicting {len(leaked)} samples it was trained on")
        shown = [t for t in self.targets if t in data]
        if shown:
            raise AssertionError(f"the held-out data still holds the targets {shown}")
        return super().predict(data, ctx)


class Broken(LeastSquares):
    """Never fits."""

    def fit(self, data, ctx, validation=None):
        raise RuntimeError("the solver diverged")


@reflow.hookimpl
def _register_models(register):
    register("lstsq-cmp", LeastSquares)
    register("knn-cmp", Neighbours)
    register("spy-cmp", HeldOutSpy)
    register("broken-cmp", Broken)


PLUGIN = types.SimpleNamespace(register_models=_register_models)
W = np.array([3.0, -2.0, 0.5])


def write_data(folder: Path, n_lots: int = 10, per_lot: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """lots.csv: a linear target (plus a little noise), a sine wave of x1 and pure noise, grouped in lots."""
    rng = np.random.default_rng(seed)
    n = n_lots * per_lot
    x = rng.uniform(0, 1, size=(n, 3))
    cols = {"x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2],
            "y_lin": x @ W + 1.0 + rng.normal(0, 0.05, n),
            "y_sine": np.sin(2 * np.pi * x[:, 0]),
            "y_noise": rng.normal(0, 1, n)}
    lot = np.repeat([f"L{i:02d}" for i in range(n_lots)], per_lot)
    lines = ["lot," + ",".join(cols)] + [
        f"{lot[i]}," + ",".join(repr(float(v[i])) for v in cols.values()) for i in range(n)]
    (folder / "lots.csv").write_text("\n".join(lines) + "\n")
    return {**cols, "lot": lot}


def study(body: str) -> str:
    return """
        study: compare-test
        seed: 3
        stages:
          lots:
            task: data
            source: {csv: {path: lots.csv, categorical: [lot], units: {y_lin: mm}}}
    """ + body


@pytest.fixture
def plugin(register_plugin):
    register_plugin(PLUGIN, "compare-test-models")


@pytest.mark.parametrize(("target", "features", "winner"), [
    ("y_lin", "[x1, x2, x3]", "lstsq-cmp"),   # linear truth: least squares is exact up to the noise
    ("y_sine", "[x1]", "knn-cmp"),           # a full sine period: a straight line cannot follow it
])
def test_the_clearly_better_model_wins(plugin, write_study, tmp_path, target, features, winner):
    write_data(tmp_path)
    path = write_study(study(f"""
          cmp:
            task: compare
            data: lots
            target: {target}
            features: {features}
            models: [lstsq-cmp, {{knn-cmp: {{k: 3}}}}]
            folds: 4
    """))
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    metrics = json.loads((run.dir / "cmp" / "metrics.json").read_text())
    assert metrics["best_model"] == winner
    assert metrics["ranking"][0] == winner
    summary = run.output("cmp")
    r2 = dict(zip(summary["model"].values.tolist(), summary[f"{target}_r2_mean"].values, strict=True))
    loser = next(m for m in r2 if m != winner)
    assert r2[winner] > 0.95 and r2[winner] > r2[loser] + 0.05
    assert summary["rank"].sel(model=winner).item() == 1
    assert metrics[f"best_{target}_r2_mean"] == pytest.approx(r2[winner])
    assert (summary["fit_seconds_mean"].values > 0).all()
    assert (summary["predict_seconds_per_sample_mean"].values > 0).all()
    # the saved stage model is the winner, refit on every sample
    folder = run.dir / "cmp" / "model"
    info = json.loads((folder / "component.json").read_text())
    assert info["name"] == winner
    if target == "y_lin":  # the out-of-fold predictions and the saved model keep the target's units
        assert info["units"] == {"y_lin": "mm"}
        assert run.output("cmp.predictions")["y_lin_mean"].attrs["units"] == "mm"
    assert type(run.model("cmp")).__name__ == {"lstsq-cmp": "LeastSquares", "knn-cmp": "Neighbours"}[winner]
    for png in ("compare_r2.png", "compare_times.png", f"compare_parity_{target}.png"):
        assert (run.dir / "cmp" / png).stat().st_size > 5000


def test_grouped_folds_never_split_a_group(plugin, write_study, tmp_path):
    data = write_data(tmp_path, n_lots=10, per_lot=6)
    path = write_study(study("""
          cmp:
            task: compare
            data: lots
            target: y_lin
            models: [lstsq-cmp, knn-cmp]
            folds: 5
            repeats: 2
            group_by: lot
    """))
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    pred = run.output("cmp.predictions")
    fold = pred["fold"].values  # (repeat, sample)
    lots = pred["lot"].values
    np.testing.assert_array_equal(lots, data["lot"])
    for r in range(2):
        for lot in np.unique(lots):
            assert len(set(fold[r, lots == lot])) == 1, f"lot {lot} split across folds in repeat {r}"
        # 10 lots into 5 folds: two whole lots (12 samples) in every fold
        assert sorted(np.bincount(fold[r]).tolist()) == [12] * 5
    assert not np.array_equal(fold[0], fold[1])  # each repeat shuffles the lots anew
    scores = run.output("cmp.scores")
    assert (scores["test_samples"].values == 12).all() and (scores["train_samples"].values == 48).all()
    # the group variable is not used as a feature
    assert run.model("cmp").features == ["x1", "x2", "x3", "y_sine", "y_noise"]


def test_fold_assignment_is_seeded_and_complete():
    groups = np.repeat(np.arange(7), 3)
    a = fold_assignment(21, 3, 2, True, 11, groups)
    assert a.shape == (2, 21) and set(np.unique(a)) == {0, 1, 2}
    np.testing.assert_array_equal(a, fold_assignment(21, 3, 2, True, 11, groups))
    plain = fold_assignment(20, 4, 1, False, 0)
    np.testing.assert_array_equal(plain[0], np.repeat(np.arange(4), 5))  # unshuffled KFold: contiguous blocks


def test_scores_come_from_the_held_out_fold_only(plugin, write_study, tmp_path):
    data = write_data(tmp_path, n_lots=8, per_lot=5, seed=2)
    path = write_study(study("""
          cmp:
            task: compare
            data: lots
            target: [y_lin, y_noise]
            features: [x1, x2, x3]
            models: [lstsq-cmp, {model: {knn-cmp: {k: 1}}, label: one-nn}, spy-cmp]
            folds: 4
            rank_by: y_lin_rmse
    """))
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    scores = run.output("cmp.scores")
    pred = run.output("cmp.predictions")
    assert (scores["error"].values == "").all()  # the spy never saw a training sample or a target at predict time
    fold = pred["fold"].values[0]
    x = np.column_stack([data["x1"], data["x2"], data["x3"], np.ones(fold.size)])
    for k in range(4):
        train, test = fold != k, fold == k
        coef, *_ = np.linalg.lstsq(x[train], data["y_lin"][train], rcond=None)
        p = x[test] @ coef
        y = data["y_lin"][test]
        expected_r2 = 1 - np.sum((y - p) ** 2) / np.sum((y - y.mean()) ** 2)
        got = scores.sel(model="lstsq-cmp", repeat=0, fold=k)
        assert got["y_lin_r2"].item() == pytest.approx(expected_r2, rel=1e-9)
        assert got["y_lin_rmse"].item() == pytest.approx(np.sqrt(np.mean((y - p) ** 2)), rel=1e-9)
        assert got["y_lin_mae"].item() == pytest.approx(np.mean(np.abs(y - p)), rel=1e-9)
        np.testing.assert_allclose(pred["y_lin_mean"].sel(model="lstsq-cmp", repeat=0).values[test], p)
    # 1-NN reproduces its training set exactly; on pure noise it can only be worse than the mean when held out
    assert scores["y_noise_r2"].sel(model="one-nn").values.max() < 0
    summary = run.output("cmp")
    assert summary.attrs["rank_by"] == "y_lin_rmse"
    assert summary["rank"].sel(model="lstsq-cmp").item() == 1  # lowest RMSE ranks first
    assert "y_lin_std" in pred and np.isnan(pred["y_lin_std"].sel(model="lstsq-cmp").values).all()


def test_a_failing_candidate_is_recorded_and_ranked_last(plugin, write_study, tmp_path):
    write_data(tmp_path)
    path = write_study(study("""
          cmp:
            task: compare
            data: lots
            target: y_lin
            features: [x1, x2, x3]
            models: [broken-cmp, knn-cmp, lstsq-cmp]
            folds: 3
    """))
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    summary = run.output("cmp")
    assert summary["folds_failed"].sel(model="broken-cmp").item() == 3
    assert summary["rank"].sel(model="broken-cmp").item() == 0
    assert summary["rank"].sel(model="lstsq-cmp").item() == 1
    assert "the solver diverged" in str(run.output("cmp.scores")["error"].sel(model="broken-cmp").values[0, 0])
    metrics = json.loads((run.dir / "cmp" / "metrics.json").read_text())
    assert metrics["ranking"] == ["lstsq-cmp", "knn-cmp", "broken-cmp"] and metrics["failed_fits"] == 3


def test_compare_stage_is_an_evaluator_for_later_stages(plugin, write_study, tmp_path):
    write_data(tmp_path)
    path = write_study(study("""
          cmp:
            task: compare
            data: lots
            target: y_lin
            features: [x1, x2, x3]
            models: [knn-cmp, lstsq-cmp]
            folds: 3
          doe:
            task: doe
            design: {full-factorial: {levels: 2}}
            space:
              x1: {low: 0, high: 1}
              x2: {low: 0, high: 1}
              x3: {value: 0.5}
            evaluate: {stage: cmp}
          again:
            task: predict
            model: {stage: cmp}
            data: lots
    """))
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    trials = run.output("doe")
    assert (trials["status"].values == "ok").all() and trials.sizes["trial"] == 4
    x = np.column_stack([trials["x1"].values, trials["x2"].values, trials["x3"].values])
    np.testing.assert_allclose(trials["y_lin"].values, x @ W + 1.0, atol=0.1)  # the refit least-squares model
    # and as the model of a predict stage: refit on every sample, it leaves only the noise (sd 0.05)
    pred = run.output("again")
    assert np.std(pred["y_lin_mean"].values - pred["y_lin"].values) < 0.06


@pytest.mark.parametrize(("body", "message"), [
    ("models: [lstsq-cmp]\n    folds: 1", "folds: Input should be greater than or equal to 2"),
    ("models: [lstsq-cpm]", "did you mean 'lstsq-cmp'"),
    ("models: [lstsq-cmp]\n    rank_by: y_lin_r3", "'y_lin_r3' is not a score of this comparison"),
    ("models: [lstsq-cmp]\n    features: [x1, y_lin]", "'y_lin' is a target"),
    ("models: [lstsq-cmp]\n    group_by: lot\n    features: [x1, lot]", "cannot also be a feature"),
    ("models: [lstsq-cmp, {stage: fit}]", "compare trains its candidates"),
    ("models: [{knn-cmp: {k: 2}}, {model: lstsq-cmp, label: knn-cmp}]", "both labelled 'knn-cmp'"),
    ("models: [lstsq-cmp]\n    repeats: 3\n    shuffle: false", "repeats=3 without shuffle"),
    ("models: [weibull]", "'weibull' is a life-model"),
    ("models: [{knn-cmp: {neighbours: 2}}]", "unknown key 'neighbours'"),
    ("models: []", "at least 1 item"),
])
def test_bad_params_are_caught_before_running(plugin, write_study, tmp_path, body, message):
    write_data(tmp_path)
    body = body.replace("\n    ", "\n            ")  # the continuation lines of a body sit under its first line
    path = write_study(study(f"""
          fit:
            task: train
            model: lstsq-cmp
            data: lots
            target: y_lin
          cmp:
            task: compare
            data: lots
            target: y_lin
            {body}
    """))
    with pytest.raises(StudyError) as err:
        load_study(path)
    assert message in str(err.value)
    assert "stages.cmp" in str(err.value)


def test_duplicate_names_get_labels_from_their_params(plugin, write_study, tmp_path):
    write_data(tmp_path)
    path = write_study(study("""
          cmp:
            task: compare
            data: lots
            target: y_sine
            features: [x1]
            models: [{knn-cmp: {k: 1}}, {knn-cmp: {k: 8}}]
            folds: 3
    """))
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    assert run.output("cmp")["model"].values.tolist() == ["knn-cmp(k=1)", "knn-cmp(k=8)"]


def test_too_few_groups_for_the_folds(plugin, write_study, tmp_path):
    write_data(tmp_path, n_lots=3, per_lot=4)
    path = write_study(study("""
          cmp:
            task: compare
            data: lots
            target: y_lin
            models: [lstsq-cmp]
            folds: 4
            group_by: lot
    """))
    with pytest.raises(reflow.DataError, match="folds=4 needs at least 4 groups; stage lots has 3 groups of 'lot'"):
        run_study(load_study(path), out=tmp_path / "runs", quiet=True)


def test_scikit_learn_surrogates_compared(write_study, tmp_path):
    """The built-in ``sklearn`` surrogate family: ordinary least squares beats a small forest on linear data."""
    write_data(tmp_path)
    path = write_study(study("""
          cmp:
            task: compare
            data: lots
            target: y_lin
            features: [x1, x2, x3]
            models:
              - {model: {sklearn: {estimator: ols}}, label: ols}
              - {model: {sklearn: {estimator: random-forest, options: {n_estimators: 20}}}, label: forest}
            folds: 3
            group_by: lot
    """))
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    summary = run.output("cmp")
    assert run.output("cmp.scores")["error"].values.tolist() == [[["", "", ""]]] * 2
    assert summary.attrs["best_model"] == "ols"
    assert summary["y_lin_r2_mean"].sel(model="ols").item() > 0.99
    assert summary["y_lin_r2_mean"].sel(model="forest").item() < summary["y_lin_r2_mean"].sel(model="ols").item()
    model = run.model("cmp")
    probe = xr.Dataset({"x1": ("sample", [0.2]), "x2": ("sample", [0.7]), "x3": ("sample", [0.1])})
    ctx = test_context(tmp_path)
    assert model.predict(probe, ctx)["y_lin_mean"].item() == pytest.approx(0.2 * 3 - 0.7 * 2 + 0.05 + 1.0, abs=0.05)


def test_trials_data_keep_only_their_successful_rows(plugin, write_study, tmp_path):
    """A DOE's trials as data: failed evaluations have no outputs and are left out; bookkeeping is no feature."""
    (tmp_path / "sim.py").write_text(
        "def plane(a, b):\n"
        "    if a > 0.8:\n"
        "        raise RuntimeError('solver diverged')\n"
        "    return {'y': 2.0 * a - b}\n")
    path = write_study("""
        study: compare-trials
        seed: 1
        stages:
          doe:
            task: doe
            design: {lhs: {samples: 30}}
            space:
              a: {low: 0, high: 1}
              b: {low: 0, high: 1}
            evaluate: {python: {function: "sim:plane", outputs: [y]}}
          cmp:
            task: compare
            data: doe.trials
            target: y
            models: [lstsq-cmp, knn-cmp]
            folds: 3
    """)
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    trials = run.output("doe.trials")
    ok = int((trials["status"].values == "ok").sum())
    assert 0 < ok < 30
    metrics = json.loads((run.dir / "cmp" / "metrics.json").read_text())
    assert metrics["samples"] == ok and metrics["best_model"] == "lstsq-cmp"
    assert run.model("cmp").features == ["a", "b"]
    assert metrics["best_y_r2_mean"] == pytest.approx(1.0, abs=1e-9)
