"""Every surrogate family learns a smooth function (scored on held-out points), saves and loads exactly,
reports std where it has one, and rejects bad params with a message naming the field."""

from __future__ import annotations

import json

import numpy as np
import pytest
from reflow.errors import DataError, ReflowError, UserInputError
from reflow.surrogates import load_surrogate, make_surrogate, surrogate_class
from reflow.surrogates.preprocess import PreprocessedSurrogate


def r2(y, p):
    return 1.0 - ((y - p) ** 2).sum(axis=0) / ((y - y.mean(axis=0)) ** 2).sum(axis=0)


TINY_MLP = {"hidden": [32, 32], "epochs": 150, "batch_size": 50, "lr": 0.01}
TINY_ENSEMBLE = {**TINY_MLP, "epochs": 100, "members": 3}
# family, params, R2 each output must reach on the 200 held-out points (inputs z-scored in front)
FAMILIES = [
    ("gp", {}, 0.99),
    ("gp", {"kernel": "matern52"}, 0.99),
    ("elm", {"n_hidden": 40}, 0.99),
    ("mlp", TINY_MLP, 0.98),
    ("ensemble", TINY_ENSEMBLE, 0.98),
    ("sklearn", {"estimator": "random-forest"}, 0.9),
    ("sklearn", {"estimator": "gradient-boosting"}, 0.9),
    ("sklearn", {"estimator": "svr"}, 0.95),
    ("sklearn", {"estimator": "knn"}, 0.85),
    ("sklearn", {"estimator": "bagging"}, 0.88),
]


def _fit(family, params, X, Y, seed=0):
    return PreprocessedSurrogate({"scale": "zscore"}, make_surrogate(family, params, seed=seed)).fit(X, Y)


@pytest.mark.parametrize(("family", "params", "min_r2"), FAMILIES, ids=lambda v: str(v) if not isinstance(v, dict)
                         else "-".join(f"{k}={v[k]}" for k in v)[:40])
def test_family_learns_a_smooth_function_and_round_trips(family, params, min_r2, smooth_data, tmp_path):
    X, Y, Xt, Yt = smooth_data
    model = _fit(family, params, X, Y)
    mean, std = model.predict(Xt)
    assert mean.shape == (200, 2)
    score = r2(Yt, mean)
    assert np.all(score >= min_r2), f"{family}: held-out R2 {score} below {min_r2}"
    assert (std is not None) == model.has_std
    if std is not None:
        assert std.shape == (200, 2) and np.all(std > 0)
    model.save(tmp_path / "m")
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.pickle"))
    again = load_surrogate(tmp_path / "m")
    mean2, std2 = again.predict(Xt)
    np.testing.assert_array_equal(mean2, mean)
    if std is not None:
        np.testing.assert_array_equal(std2, std)
    assert again.summary()["fit_seconds"] == pytest.approx(model.summary()["fit_seconds"])


def test_linear_estimators_recover_a_linear_function(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (80, 3))
    Y = np.column_stack([2.0 * X[:, 0] - X[:, 1] + 0.5, -X[:, 2] + 3.0])
    Xt = rng.uniform(-1, 1, (50, 3))
    Yt = np.column_stack([2.0 * Xt[:, 0] - Xt[:, 1] + 0.5, -Xt[:, 2] + 3.0])
    for estimator, options in [("ols", {}), ("ridge", {"alpha": 1e-3}), ("lasso", {"alpha": 1e-4})]:
        model = make_surrogate("sklearn", {"estimator": estimator, "options": options}).fit(X, Y)
        mean, std = model.predict(Xt)
        assert std is None
        np.testing.assert_allclose(mean, Yt, atol=2e-3, err_msg=estimator)
    ols = make_surrogate("sklearn", {"estimator": "ols"}).fit(X, Y)
    ols.save(tmp_path / "ols")
    np.testing.assert_array_equal(load_surrogate(tmp_path / "ols").predict(Xt)[0], ols.predict(Xt)[0])


def test_poisson_regression_fits_a_log_linear_rate():
    rng = np.random.default_rng(2)
    X = rng.uniform(0, 1, (120, 2))
    rate = np.exp(0.3 + 1.2 * X[:, 0] - 0.7 * X[:, 1])
    model = make_surrogate("sklearn", {"estimator": "poisson", "options": {"alpha": 1e-6}}).fit(X, rate)
    Xt = rng.uniform(0, 1, (40, 2))
    truth = np.exp(0.3 + 1.2 * Xt[:, 0] - 0.7 * Xt[:, 1])
    np.testing.assert_allclose(model.predict(Xt)[0][:, 0], truth, rtol=1e-3)
    with pytest.raises(DataError, match="poisson.*non-negative"):
        make_surrogate("sklearn", {"estimator": "poisson"}).fit(X, rate - 2.0)


def test_forest_std_is_the_spread_across_trees(smooth_data):
    X, Y, Xt, _ = smooth_data
    model = make_surrogate("sklearn", {"estimator": "random-forest", "options": {"n_estimators": 20}}).fit(X, Y)
    mean, std = model.predict(Xt[:5])
    trees = np.stack([t.predict(Xt[:5]) for t in model.estimator_.estimators_])  # standardized units
    np.testing.assert_allclose(std, trees.std(axis=0) * model.y_std_)
    np.testing.assert_allclose(mean, trees.mean(axis=0) * model.y_std_ + model.y_mean_)


@pytest.mark.parametrize(("family", "params", "factor"), [
    ("gp", {}, 5.0), ("ensemble", TINY_ENSEMBLE, 5.0)])
def test_std_grows_away_from_the_data(family, params, factor, smooth_data):
    X, Y, Xt, _ = smooth_data
    model = _fit(family, params, X, Y)
    _, near = model.predict(Xt)
    far_points = np.random.default_rng(3).uniform(3.0, 4.0, (50, 3))  # the training inputs lie in [0, 1]^3
    _, far = model.predict(far_points)
    assert np.all(far.mean(axis=0) > factor * near.mean(axis=0)), (near.mean(axis=0), far.mean(axis=0))


def test_gp_observation_noise_adds_to_the_std(smooth_data):
    X, Y, Xt, _ = smooth_data
    known = make_surrogate("gp", {"noise": 0.05, "include_noise": True}).fit(X, Y[:, 0])
    latent = make_surrogate("gp", {"noise": 0.05}).fit(X, Y[:, 0])
    _, with_noise = known.predict(Xt)
    _, without = latent.predict(Xt)
    np.testing.assert_allclose(with_noise**2, without**2 + 0.05**2, rtol=1e-6)


def test_mlp_uses_a_validation_set_for_early_stopping(smooth_data):
    X, Y, Xt, Yt = smooth_data
    model = make_surrogate("mlp", {"hidden": [16], "epochs": 400, "patience": 5, "lr": 0.05}).fit(
        X[:80], Y[:80], validation=(X[80:], Y[80:]))
    assert model.history_["epochs_run"] < 400 and model.history_["best_epoch"] <= model.history_["epochs_run"]
    inner = make_surrogate("mlp", {"hidden": [16], "epochs": 30, "val_fraction": 0.2}).fit(X, Y)
    assert inner.history_["best_val_loss"] is not None


def test_same_seed_same_model_other_seed_other_model(smooth_data):
    X, Y, Xt, _ = smooth_data
    params = {"hidden": [8], "epochs": 20}
    a = make_surrogate("mlp", params, seed=4).fit(X, Y).predict(Xt)[0]
    b = make_surrogate("mlp", params, seed=4).fit(X, Y).predict(Xt)[0]
    c = make_surrogate("mlp", params, seed=5).fit(X, Y).predict(Xt)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_bad_params_and_data_give_clear_errors(smooth_data):
    X, Y, *_ = smooth_data
    with pytest.raises(UserInputError, match=r"unknown surrogate family 'svm'; known: gp, mlp"):
        make_surrogate("svm")
    with pytest.raises(UserInputError, match=r"gp: kernel: Input should be 'rbf' or 'matern52' \(got 'cubic'\)"):
        make_surrogate("gp", {"kernel": "cubic"})
    with pytest.raises(UserInputError, match=r"elm: n_hidden: Input should be greater than or equal to 1 \(got 0\)"):
        make_surrogate("elm", {"n_hidden": 0})
    with pytest.raises(UserInputError, match=r"mlp: hidden: .*at least one hidden layer"):
        make_surrogate("mlp", {"hidden": []})
    with pytest.raises(UserInputError, match=r"ensemble: members: .*greater than or equal to 2"):
        make_surrogate("ensemble", {"members": 1})
    with pytest.raises(UserInputError, match=r"options: .*svr has no option\(s\) n_estimators; its options: C"):
        make_surrogate("sklearn", {"estimator": "svr", "options": {"n_estimators": 10}})
    with pytest.raises(UserInputError, match=r"sklearn: options of svr: The 'C' parameter"):
        make_surrogate("sklearn", {"estimator": "svr", "options": {"C": -1.0}}).fit(X, Y)
    with pytest.raises(UserInputError, match=r"elm: tune.population: .*greater than or equal to 4"):
        make_surrogate("elm", {"tune": {"population": 2}})
    with pytest.raises(UserInputError, match="elm: nodes: Extra inputs are not permitted"):
        make_surrogate("elm", {"nodes": 3})
    elm = make_surrogate("elm")
    with pytest.raises(ReflowError, match="predict before fit"):
        elm.predict(X)
    with pytest.raises(DataError, match="X has 100 samples but Y has 99"):
        elm.fit(X, Y[:99])
    with pytest.raises(DataError, match=r"inputs X hold NaN or infinite values in column\(s\) \[1\]"):
        elm.fit(np.where(np.arange(3) == 1, np.nan, X), Y)
    with pytest.raises(DataError, match="must be a 2-D array"):
        elm.fit(X[:, 0], Y)
    elm.fit(X, Y)
    with pytest.raises(DataError, match="inputs X have 2 columns; the surrogate was fit on 3"):
        elm.predict(X[:, :2])


def test_saved_folder_is_json_and_npz_only(smooth_data, tmp_path):
    X, Y, Xt, _ = smooth_data
    model = _fit("elm", {"n_hidden": 10}, X, Y)
    model.save(tmp_path / "m")
    files = sorted(p.relative_to(tmp_path / "m").as_posix() for p in (tmp_path / "m").rglob("*") if p.is_file())
    assert files == ["model/state.npz", "model/surrogate.json", "preprocess.json", "preprocess.npz", "surrogate.json"]
    meta = json.loads((tmp_path / "m" / "surrogate.json").read_text())
    assert meta["family"] == "preprocessed" and meta["state"]["inner_family"] == "elm"
    for npz in (tmp_path / "m").rglob("*.npz"):
        with np.load(npz, allow_pickle=False) as data:
            assert all(data[k].dtype != object for k in data.files)
    with pytest.raises(ReflowError, match="holds a 'preprocessed' surrogate, not a 'gp' one"):
        surrogate_class("gp").load(tmp_path / "m")


def test_sklearn_refit_on_load_is_checked(smooth_data, tmp_path):
    """Stored training arrays + fixed random_state give the same forest; a changed refit is reported."""
    X, Y, Xt, _ = smooth_data
    model = make_surrogate("sklearn", {"estimator": "random-forest", "options": {"n_estimators": 10}}, seed=3)
    model.fit(X, Y).save(tmp_path / "rf")
    np.testing.assert_array_equal(load_surrogate(tmp_path / "rf").predict(Xt)[1], model.predict(Xt)[1])
    with np.load(tmp_path / "rf" / "state.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["fingerprint"] = arrays["fingerprint"] + 1.0
    np.savez(tmp_path / "rf" / "state.npz", **arrays)
    with pytest.raises(ReflowError, match="refit on load predicts differently"):
        load_surrogate(tmp_path / "rf")
