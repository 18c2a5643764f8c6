"""Task ``train``: grouped split, metrics, a saved and reloadable model, and that model as an evaluator."""

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
from reflow.store import read_dataset
from reflow.study import load_study


class LeastSquares(reflow.Model):
    """y = X w + b by least squares; remembers which samples and groups it was trained and validated on."""

    family = "regressor"

    class Params(reflow.Params):
        ridge: float = 0.0

    def fit(self, data, ctx, validation=None):
        dim = data[self.targets[0]].dims[0]
        x = np.column_stack([data[f].values.astype(float) for f in self.features] + [np.ones(data.sizes[dim])])
        y = np.column_stack([data[t].values.astype(float) for t in self.targets])
        a = x.T @ x + self.params.ridge * np.eye(x.shape[1])
        self.coef_ = np.linalg.solve(a, x.T @ y)
        self.train_samples_ = np.asarray(data[dim].values)
        self.train_groups_ = np.asarray(data["lot"].values) if "lot" in data else np.array([])
        val = validation
        self.val_samples_ = np.asarray(val[dim].values) if val is not None else np.array([], dtype=int)
        return self

    def predict(self, data, ctx):
        dim = data[self.features[0]].dims[0]
        x = np.column_stack([data[f].values.astype(float) for f in self.features] + [np.ones(data.sizes[dim])])
        y = x @ self.coef_
        return xr.Dataset({f"{t}_mean": (dim, y[:, j]) for j, t in enumerate(self.targets)},
                          coords={dim: data[dim].values})

    def save_state(self, directory: Path) -> None:
        np.savez(directory / "state.npz", coef=self.coef_, train_samples=self.train_samples_,
                 val_samples=self.val_samples_)

    def load_state(self, directory: Path) -> None:
        with np.load(directory / "state.npz", allow_pickle=False) as state:
            self.coef_ = state["coef"]
            self.train_samples_ = state["train_samples"]
            self.val_samples_ = state["val_samples"]


@reflow.hookimpl
def _register_models(register):
    register("lstsq-test", LeastSquares)


PLUGIN = types.SimpleNamespace(register_models=_register_models)

W = np.array([3.0, -2.0, 0.5])
B = 1.25


def truth(x1, x2, x3):
    return W[0] * x1 + W[1] * x2 + W[2] * x3 + B


def _num(v) -> str:
    return repr(float(v))  # round-trips exactly


def write_data(folder: Path, n_lots: int = 10, per_lot: int = 6, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    n = n_lots * per_lot
    x = rng.uniform(0, 1, size=(n, 3))
    lot = np.repeat([f"L{i:02d}" for i in range(n_lots)], per_lot)
    y = truth(x[:, 0], x[:, 1], x[:, 2])
    rows = ["x1_mm,x2_mm,x3,lot,y_um"] + [",".join([*map(_num, r), g, _num(t)])
                                         for r, g, t in zip(x, lot, y, strict=True)]
    (folder / "lots.csv").write_text("\n".join(rows) + "\n")
    new = rng.uniform(0, 1, size=(7, 3))
    (folder / "new.csv").write_text("x1_mm,x2_mm,x3\n" + "\n".join(",".join(map(_num, r)) for r in new) + "\n")
    return xr.Dataset({"lot": ("sample", lot), "y": ("sample", y)})


STUDY = """
    study: train-lstsq
    seed: 5
    stages:
      lots:
        task: data
        source: {csv: {path: lots.csv, categorical: [lot]}}
      fit:
        task: train
        model: lstsq-test
        data: lots
        target: y_um
        split: {by: lot, test: 0.3, val: 0.2}
      new:
        task: data
        source: {csv: {path: new.csv}}
      score:
        task: evaluate
        data: new
        evaluate: {stage: fit}
"""


@pytest.fixture
def trained(register_plugin, write_study, tmp_path):
    register_plugin(PLUGIN, "lstsq-test-plugin")
    truth_ds = write_data(tmp_path)
    run = run_study(load_study(write_study(STUDY)), out=tmp_path / "runs", quiet=True)
    return run, truth_ds


def test_grouped_split_keeps_each_lot_on_one_side(trained):
    run, data = trained
    model = run.model("fit")
    lots = data["lot"].values
    train = set(model.train_samples_.tolist())
    val = set(model.val_samples_.tolist())
    test = set(run.output("fit.predictions")["sample"].values.tolist())
    # every sample used exactly once
    assert train | val | test == set(range(data.sizes["sample"]))
    assert not (train & val) and not (train & test) and not (val & test)
    # no lot on two sides
    groups = {name: {lots[i] for i in part} for name, part in (("train", train), ("val", val), ("test", test))}
    assert not (groups["train"] & groups["test"])
    assert not (groups["train"] & groups["val"])
    assert not (groups["val"] & groups["test"])
    # 10 lots: 3 for test, 2 for validation, 5 for training, whole lots of 6 samples each
    assert (len(groups["test"]), len(groups["val"]), len(groups["train"])) == (3, 2, 5)
    assert (len(test), len(val), len(train)) == (18, 12, 30)


def test_same_seed_same_split(trained, tmp_path):
    run, _ = trained
    again = run_study(run.study, out=tmp_path / "runs2", quiet=True)
    first = run.output("fit.predictions")["sample"].values
    second = again.output("fit.predictions")["sample"].values
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(run.model("fit").train_samples_, again.model("fit").train_samples_)


def test_metrics_present(trained):
    run, _ = trained
    metrics = json.loads((run.dir / "fit" / "metrics.json").read_text())
    assert metrics["train_samples"] == 30
    assert metrics["val_samples"] == 12
    assert metrics["test_samples"] == 18
    assert metrics["y_um_r2"] == pytest.approx(1.0, abs=1e-9)  # the data is exactly linear
    assert metrics["y_um_rmse"] == pytest.approx(0.0, abs=1e-9)
    assert metrics["y_um_mae"] == pytest.approx(0.0, abs=1e-9)
    assert run.manifest["stages"]["fit"]["status"] == "done"
    assert run.manifest["stages"]["fit"]["metrics"]["y_um_r2"] == pytest.approx(1.0, abs=1e-9)


def test_predictions_output(trained):
    run, _ = trained
    pred = run.output("fit.predictions")
    assert set(pred.data_vars) >= {"x1_mm", "x2_mm", "x3", "y_um", "y_um_mean"}
    assert "lot" not in pred.data_vars or pred["lot"].dims == ("sample",)
    np.testing.assert_allclose(pred["y_um_mean"].values, pred["y_um"].values, atol=1e-9)
    stored = xr.load_dataset(run.dir / "fit" / "predictions.nc")
    np.testing.assert_allclose(stored["y_um_mean"].values, pred["y_um_mean"].values)
    for ds in (pred, stored):  # predictions in the units of the training data; features keep theirs
        assert ds["y_um_mean"].attrs["units"] == "um" and ds["y_um"].attrs["units"] == "um"
        assert ds["x1_mm"].attrs["units"] == "mm" and not ds["x3"].attrs.get("units")


def test_model_saved_and_reloadable(trained):
    run, _ = trained
    folder = run.dir / "fit" / "model"
    meta = json.loads((folder / "params.json").read_text())
    assert meta["features"] == ["x1_mm", "x2_mm", "x3"]  # the group variable is not a feature
    assert meta["targets"] == ["y_um"]
    assert meta["params"] == {"ridge": 0.0}
    # the units of the training data go with the model, so that predict labels new predictions with them
    assert json.loads((folder / "component.json").read_text()) == {
        "name": "lstsq-test", "units": {"x1_mm": "mm", "x2_mm": "mm", "y_um": "um"}}
    assert (folder / "state.npz").exists()
    assert not list(folder.glob("*.pkl")) and not list(folder.glob("*.pickle"))

    model = LeastSquares.load(folder)
    assert model.features == ["x1_mm", "x2_mm", "x3"] and model.targets == ["y_um"]
    np.testing.assert_allclose(model.coef_[:, 0], [*W, B], atol=1e-9)
    probe = xr.Dataset({"x1_mm": ("sample", [0.0, 1.0]), "x2_mm": ("sample", [0.5, 0.2]),
                        "x3": ("sample", [1.0, 0.0])}, coords={"sample": [0, 1]})
    out = model.predict(probe, None)
    np.testing.assert_allclose(out["y_um_mean"].values, truth(probe["x1_mm"].values, probe["x2_mm"].values,
                                                              probe["x3"].values), atol=1e-9)
    # the run resolves the same model through the registry
    again = run.model("fit")
    assert isinstance(again, LeastSquares)
    np.testing.assert_array_equal(again.coef_, model.coef_)


def test_trained_model_as_evaluator(trained, tmp_path):
    run, _ = trained
    trials = run.output("score")
    new = run.output("new")
    assert trials.sizes["trial"] == 7
    assert trials["status"].values.tolist() == ["ok"] * 7
    expected = truth(new["x1_mm"].values, new["x2_mm"].values, new["x3"].values)
    np.testing.assert_allclose(trials["y_um"].values, expected, atol=1e-9)
    np.testing.assert_allclose(trials["x1_mm"].values, new["x1_mm"].values)
    assert list(trials.attrs["outputs"]) == ["y_um"]
    assert run.manifest["stages"]["score"]["status"] == "done"
    assert list(run.study.stages) == ["lots", "fit", "new", "score"]


def test_trained_model_in_a_doe_pipeline(register_plugin, write_study, tmp_path):
    """{stage: fit} as the evaluator of a DOE: the surrogate stands in for the simulation."""
    register_plugin(PLUGIN, "lstsq-test-plugin")
    write_data(tmp_path)
    path = write_study("""
        study: surrogate-doe
        stages:
          lots:
            task: data
            source: {csv: {path: lots.csv, categorical: [lot]}}
          fit:
            task: train
            model: {lstsq-test: {ridge: 0.0}}
            data: lots
            target: y_um
            split: {by: lot, test: 0.2}
          doe:
            task: doe
            design: {full-factorial: {levels: 2}}
            space:
              x1_mm: {low: 0, high: 1}
              x2_mm: {low: 0, high: 1}
              x3: {value: 0.5}
            evaluate: {stage: fit}
          new:
            task: data
            source: {csv: {path: new.csv}}
          guess:
            task: predict
            model: {stage: fit}
            data: new
    """)
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    trials = run.output("doe")
    assert trials.sizes["trial"] == 4
    expected = truth(trials["x1_mm"].values, trials["x2_mm"].values, trials["x3"].values)
    np.testing.assert_allclose(trials["y_um"].values, expected, atol=1e-9)
    # new data without the truth: predict's predictions still carry the units the model was trained in
    guess = read_dataset(run.dir / "guess" / "predictions.nc")
    assert "y_um" not in guess and guess["y_um_mean"].attrs["units"] == "um"
    assert guess["x1_mm"].attrs["units"] == "mm"


def test_split_without_groups_and_without_val(register_plugin, write_study, tmp_path):
    register_plugin(PLUGIN, "lstsq-test-plugin")
    write_data(tmp_path, n_lots=4, per_lot=5)
    path = write_study("""
        study: plain-split
        stages:
          lots:
            task: data
            source: {csv: {path: lots.csv, categorical: [lot]}}
          fit:
            task: train
            model: lstsq-test
            data: lots
            target: y_um
            features: [x1_mm, x2_mm, x3]
            split: {test: 0.25}
    """)
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    metrics = run.result("fit").metrics
    assert (metrics["train_samples"], metrics["val_samples"], metrics["test_samples"]) == (15, 0, 5)
    assert run.model("fit").val_samples_.size == 0


def test_unknown_target_is_a_clear_error(register_plugin, write_study, tmp_path):
    register_plugin(PLUGIN, "lstsq-test-plugin")
    write_data(tmp_path)
    path = write_study("""
        study: bad-target
        stages:
          lots:
            task: data
            source: {csv: {path: lots.csv, categorical: [lot]}}
          fit:
            task: train
            model: lstsq-test
            data: lots
            target: warpage_um
            split: {by: lot}
    """)
    with pytest.raises(reflow.DataError, match="warpage_um"):
        run_study(load_study(path), out=tmp_path / "runs", quiet=True)


def test_unknown_model_and_stage_reference_are_study_errors(register_plugin, write_study):
    register_plugin(PLUGIN, "lstsq-test-plugin")
    path = write_study("""
        study: bad-refs
        stages:
          fit:
            task: train
            model: lstsq-tset
            data: nowhere
            target: y
          score:
            task: evaluate
            data: fit.predictions
            evaluate: {stage: fitt}
    """)
    with pytest.raises(StudyError) as err:
        load_study(path)
    msg = str(err.value)
    assert "lstsq-test" in msg  # did you mean
    assert "nowhere" in msg
    assert "fitt" in msg


def test_bad_split_fractions_are_study_errors(register_plugin, write_study):
    register_plugin(PLUGIN, "lstsq-test-plugin")
    path = write_study("""
        study: bad-split
        stages:
          lots:
            task: data
            source: {csv: {path: lots.csv}}
          fit:
            task: train
            model: lstsq-test
            data: lots
            target: y
            split: {test: 0.6, val: 0.5}
    """)
    with pytest.raises(StudyError, match="test \\+ val"):
        load_study(path)


def test_trial_bookkeeping_is_never_a_feature(register_plugin, write_study, tmp_path):
    """An optimize stage's trials: status, timings and ``suggest_seconds`` are bookkeeping, not inputs."""
    register_plugin(PLUGIN, "lstsq-test-plugin")
    rng = np.random.default_rng(3)
    n = 24
    x = rng.uniform(0, 1, size=(n, 2))
    status = np.where(np.arange(n) % 6 == 5, "failed", "ok")
    y = np.where(status == "ok", truth(x[:, 0], x[:, 1], 0.0), np.nan)
    trials = xr.Dataset({"x1_mm": ("trial", x[:, 0]), "x2_mm": ("trial", x[:, 1]), "y_um": ("trial", y),
                         "status": ("trial", status), "error": ("trial", np.where(status == "ok", "", "boom")),
                         "batch": ("trial", np.arange(n) // 4), "started": ("trial", np.arange(n, dtype=float)),
                         "finished": ("trial", np.arange(n) + 0.5),
                         "suggest_seconds": ("trial", rng.uniform(0.01, 0.1, n))},
                        coords={"trial": np.arange(n)})
    trials.to_netcdf(tmp_path / "trials.nc", engine="h5netcdf")
    path = write_study("""
        study: train-on-trials
        stages:
          opt:
            task: data
            source: {netcdf: {path: trials.nc}}
          fit:
            task: train
            model: lstsq-test
            data: opt
            target: y_um
            split: {test: 0.25}
    """)
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    model = run.model("fit")
    assert model.features == ["x1_mm", "x2_mm"]
    metrics = run.result("fit").metrics
    assert metrics["train_samples"] + metrics["test_samples"] == 20  # the failed trials are left out
    assert metrics["y_um_r2"] == pytest.approx(1.0, abs=1e-9)
