"""ELM: the output weights are the ridge / least-squares solution, and ICS-ELM-style tuning of the hidden layer
lowers the inner validation error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from reflow.errors import DataError
from reflow.surrogates import make_surrogate
from reflow.surrogates.elm import inner_split, solve_output_weights


@pytest.mark.parametrize(("n", "hidden"), [(60, 20), (15, 40)], ids=["primal n>L", "dual n<L"])
@pytest.mark.parametrize("alpha", [1e-3, 0.7])
def test_ridge_solve_matches_numpy(n, hidden, alpha):
    rng = np.random.default_rng(0)
    H, T = rng.normal(size=(n, hidden)), rng.normal(size=(n, 2))
    expected = np.linalg.solve(H.T @ H + alpha * np.eye(hidden), H.T @ T)
    got = solve_output_weights(torch.as_tensor(H), torch.as_tensor(T), alpha).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-10)
    # and the closed form minimizes the ridge objective: its gradient vanishes
    np.testing.assert_allclose(H.T @ (H @ got - T) + alpha * got, 0.0, atol=1e-8)


@pytest.mark.parametrize(("n", "hidden"), [(60, 20), (15, 40)])
def test_least_squares_solve_matches_numpy_lstsq(n, hidden):
    rng = np.random.default_rng(1)
    H, T = rng.normal(size=(n, hidden)), rng.normal(size=(n, 3))
    expected = np.linalg.lstsq(H, T, rcond=None)[0]  # the minimum-norm solution when n < L
    got = solve_output_weights(torch.as_tensor(H), torch.as_tensor(T), 0.0).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9)


def test_batched_solve_equals_one_by_one():
    rng = np.random.default_rng(2)
    H, T = rng.normal(size=(4, 12, 30)), rng.normal(size=(12, 2))
    batch = solve_output_weights(torch.as_tensor(H), torch.as_tensor(T), 0.1).numpy()
    for p in range(4):
        one = np.linalg.solve(H[p].T @ H[p] + 0.1 * np.eye(30), H[p].T @ T)
        np.testing.assert_allclose(batch[p], one, rtol=1e-8, atol=1e-10)


def test_fitted_output_weights_are_the_ridge_solution_on_standardized_targets(smooth_data):
    X, Y, *_ = smooth_data
    elm = make_surrogate("elm", {"n_hidden": 25, "alpha": 0.01, "activation": "tanh"}, seed=3).fit(X, Y)
    W, b = elm.draw_hidden(3)
    np.testing.assert_array_equal(elm.W_, W)
    H = np.tanh(X @ W + b)
    T = (Y - Y.mean(axis=0)) / Y.std(axis=0)
    np.testing.assert_allclose(elm.beta_, np.linalg.solve(H.T @ H + 0.01 * np.eye(25), H.T @ T), rtol=1e-8)
    np.testing.assert_allclose(elm.predict(X[:5])[0], (H[:5] @ elm.beta_) * Y.std(axis=0) + Y.mean(axis=0))
    assert np.all((np.abs(W) <= 1.0) & (np.abs(b) <= 1.0).all())


@pytest.mark.parametrize("algorithm", ["de", "ga"])
def test_tuning_lowers_the_inner_validation_rmse(algorithm, smooth_data):
    X, Y, Xt, Yt = smooth_data
    X, Xt = (X - 0.5) / 0.29, (Xt - 0.5) / 0.29
    tune = {"algorithm": algorithm, "population": 12, "generations": 8, "validation_fraction": 0.25}
    tuned = make_surrogate("elm", {"n_hidden": 20, "tune": tune}, seed=5).fit(X, Y)
    plain = make_surrogate("elm", {"n_hidden": 20}, seed=5).fit(X, Y)
    # the untuned RMSE the tuner reports is that of the plain ELM, recomputed here on the same inner split
    train, val = inner_split(len(X), 0.25, 5)
    T = (Y - Y.mean(axis=0)) / Y.std(axis=0)
    W, b = plain.draw_hidden(3)
    H = 1.0 / (1.0 + np.exp(-(X @ W + b)))
    beta = np.linalg.solve(H[train].T @ H[train] + 1e-6 * np.eye(20), H[train].T @ T[train])
    untuned_rmse = np.sqrt(np.mean((H[val] @ beta - T[val]) ** 2))
    info = tuned.tuning_
    assert info["untuned_val_rmse"] == pytest.approx(untuned_rmse, rel=1e-6)
    assert info["tuned_val_rmse"] < 0.9 * info["untuned_val_rmse"], info
    assert np.all(np.diff(info["best_per_generation"]) <= 1e-12)  # elitist: the best never gets worse
    assert len(info["best_per_generation"]) == 8
    assert not np.array_equal(tuned.W_, plain.W_)
    assert np.all(np.abs(tuned.W_) <= 1.0 + 1e-12)  # the search stays in the weight box
    summary = tuned.summary()
    assert summary["elm_tuned_val_rmse"] == info["tuned_val_rmse"]
    # the tuned model still predicts unseen points well
    resid = tuned.predict(Xt)[0] - Yt
    assert np.all(1 - (resid**2).sum(0) / ((Yt - Yt.mean(0)) ** 2).sum(0) > 0.98)


def test_tuning_is_repeatable_and_saved(smooth_data, tmp_path):
    from reflow.surrogates import load_surrogate

    X, Y, Xt, _ = smooth_data
    params = {"n_hidden": 10, "tune": {"population": 6, "generations": 3}}
    a = make_surrogate("elm", params, seed=1).fit(X, Y)
    b = make_surrogate("elm", params, seed=1).fit(X, Y)
    np.testing.assert_array_equal(a.W_, b.W_)
    a.save(tmp_path / "elm")
    again = load_surrogate(tmp_path / "elm")
    np.testing.assert_array_equal(again.predict(Xt)[0], a.predict(Xt)[0])
    assert again.tuning_["tuned_val_rmse"] == a.tuning_["tuned_val_rmse"]


def test_tuning_needs_enough_samples():
    X = np.linspace(0, 1, 6).reshape(3, 2)
    with pytest.raises(DataError, match="tuning holds out part of the training set and needs at least 4 samples"):
        make_surrogate("elm", {"tune": {"population": 4, "generations": 1}}).fit(X, X[:, 0])


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu", "sin", "gaussian"])
def test_every_activation_fits(activation, smooth_data):
    X, Y, Xt, Yt = smooth_data
    elm = make_surrogate("elm", {"n_hidden": 60, "activation": activation, "weight_scale": 2.0}).fit(X, Y)
    resid = elm.predict(Xt)[0] - Yt
    assert np.all(1 - (resid**2).sum(0) / ((Yt - Yt.mean(0)) ** 2).sum(0) > 0.95), activation
