"""Preprocessing: each normalization against hand-computed values, feature selection finds the informative inputs,
PCA keeps what it is asked to, and the saved state refits to the same transform."""

from __future__ import annotations

import numpy as np
import pytest
from reflow.errors import DataError, ReflowError, UserInputError
from reflow.surrogates import load_surrogate, make_surrogate
from reflow.surrogates.preprocess import PreprocessedSurrogate, Preprocessor

# columns on very different scales, one with a negative peak and one with an outlier
X = np.array([
    [0.5, -250.0, 0.002, 3.0],
    [1.5, 120.0, 0.004, 3.0],
    [2.5, 999.0, 0.009, 4.0],
    [3.5, -40.0, 0.001, 100.0],
    [4.5, 10.0, 0.003, 5.0],
])
Y = X[:, :1] * 2.0


def transform(scale: str, data: np.ndarray = X) -> np.ndarray:
    return Preprocessor({"scale": scale}).fit(data, data[:, :1]).transform(data)


def test_zscore_and_minmax():
    mean, std = X.mean(axis=0), X.std(axis=0)
    np.testing.assert_allclose(transform("zscore"), (X - mean) / std)
    lo, hi = X.min(axis=0), X.max(axis=0)
    np.testing.assert_allclose(transform("minmax"), (X - lo) / (hi - lo))
    np.testing.assert_array_equal(transform("none"), X)


def test_decimal_scaling_divides_each_column_by_a_power_of_ten():
    # peaks |x|: 4.5 -> 10^1; 999 -> 10^3; 0.009 -> 10^-2; 100 -> 10^3 (100 / 10^2 = 1 is not < 1)
    np.testing.assert_allclose(transform("decimal"), X / np.array([10.0, 1000.0, 0.01, 1000.0]))
    pre = Preprocessor({"scale": "decimal"}).fit(X, Y)
    assert pre.pipeline_.named_steps["scale"].exponent_.tolist() == [1, 3, -2, 3]
    assert np.abs(pre.transform(X)).max() < 1.0
    edge = np.array([[1000.0, 0.0, 1.0], [-1000.0, 0.0, 0.5]])  # exact power of ten, all-zero, exactly one
    scaler = Preprocessor({"scale": "decimal"}).fit(edge, edge[:, 0]).pipeline_.named_steps["scale"]
    assert scaler.exponent_.tolist() == [4, 0, 1]


def test_robust_uses_median_and_median_absolute_deviation():
    col = X[:, 3]  # 3, 3, 4, 100, 5: median 4, |x - 4| = 1, 1, 0, 96, 1 -> MAD 1
    np.testing.assert_allclose(transform("robust")[:, 3], (col - 4.0) / 1.0)
    col = X[:, 0]  # median 2.5, deviations 2, 1, 0, 1, 2 -> MAD 1
    np.testing.assert_allclose(transform("robust")[:, 0], col - 2.5)
    constant = np.column_stack([np.full(4, 7.0), np.arange(4.0)])
    np.testing.assert_allclose(transform("robust", constant)[:, 0], 0.0)  # a zero MAD does not divide by zero


def test_tanh_estimator_and_sigmoid():
    z = (X - X.mean(axis=0)) / X.std(axis=0)
    np.testing.assert_allclose(transform("tanh"), 0.5 * (np.tanh(0.01 * z) + 1.0))
    np.testing.assert_allclose(transform("sigmoid"), 1.0 / (1.0 + np.exp(-z)))
    assert np.all((transform("tanh") > 0) & (transform("tanh") < 1))


@pytest.mark.parametrize("scale", ["decimal", "robust", "tanh", "sigmoid"])
def test_custom_scalers_invert(scale):
    step = Preprocessor({"scale": scale}).fit(X, Y).pipeline_.named_steps["scale"]
    np.testing.assert_allclose(step.inverse_transform(step.transform(X)), X, rtol=1e-6, atol=1e-9)


def _ignores_second_input(n=150, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (n, 3))
    Y = np.column_stack([np.sin(4 * X[:, 0]) + X[:, 2] ** 2, X[:, 0] * X[:, 2]])  # X[:, 1] plays no part
    return X, Y


@pytest.mark.parametrize("select", [{"method": "mutual-info", "k": 2}, {"method": "rfe", "k": 2},
                                    {"method": "rfe", "k": 2, "estimator": "linear"}])
def test_selection_keeps_the_informative_inputs(select):
    X, Y = _ignores_second_input()
    pre = Preprocessor({"select": select}).fit(X, Y)
    assert pre.selected_.tolist() == [0, 2]
    assert pre.transform(X).shape == (150, 2)
    np.testing.assert_allclose(pre.transform(X), ((X - X.mean(0)) / X.std(0))[:, [0, 2]])


def test_mutual_information_ranks_the_inputs():
    from reflow.surrogates.preprocess import mutual_info_scores

    X, Y = _ignores_second_input()
    scores = mutual_info_scores(X, Y, random_state=0)
    assert scores[1] < 0.05 < min(scores[0], scores[2])


def test_pca_components_and_variance_fraction():
    rng = np.random.default_rng(1)
    latent = rng.normal(size=(100, 2))
    X = np.column_stack([latent[:, 0], latent[:, 0] * 2 + 1e-3 * rng.normal(size=100), latent[:, 1],
                         -latent[:, 1] + 1e-3 * rng.normal(size=100)])
    two = Preprocessor({"pca": 2}).fit(X, latent[:, 0])
    assert two.n_features_out_ == 2 and two.explained_variance_ratio_.sum() > 0.9999
    frac = Preprocessor({"pca": 0.99}).fit(X, latent[:, 0])
    assert frac.n_features_out_ == 2  # two directions explain all but noise
    one = Preprocessor({"pca": 1, "scale": "none"}).fit(X, latent[:, 0])
    centred = X - X.mean(axis=0)
    top = np.linalg.svd(centred, full_matrices=False)[2][0]
    np.testing.assert_allclose(np.abs(one.transform(X)[:, 0]), np.abs(centred @ top), rtol=1e-8, atol=1e-10)
    assert one.summary()["pca_explained_variance"] == pytest.approx(float(one.explained_variance_ratio_[0]))


def test_bad_preprocessing_params():
    with pytest.raises(UserInputError, match=r"preprocess: scale: Input should be 'zscore', 'minmax'.* \(got 'log'\)"):
        Preprocessor({"scale": "log"})
    with pytest.raises(UserInputError, match=r"pca: .*1.5: a float is the fraction of variance to explain"):
        Preprocessor({"pca": 1.5})
    with pytest.raises(UserInputError, match=r"pca: .*0 components: keep at least 1"):
        Preprocessor({"pca": 0})
    with pytest.raises(UserInputError, match=r"select.method: Input should be 'mutual-info' or 'rfe'"):
        Preprocessor({"select": {"method": "anova", "k": 2}})
    with pytest.raises(UserInputError, match=r"select.k: 9 inputs to keep, but the data has only 4"):
        Preprocessor({"select": {"method": "rfe", "k": 9}}).fit(X, Y)
    with pytest.raises(UserInputError, match=r"pca: 3 components, but only 2 inputs are left to combine"):
        Preprocessor({"select": {"method": "mutual-info", "k": 2}, "pca": 3}).fit(X, Y)
    with pytest.raises(DataError, match="pca: 6 components need at least as many samples, got 5"):
        Preprocessor({"pca": 6}).fit(np.tile(X, (1, 2)), Y)
    with pytest.raises(UserInputError, match="give the surrogate to put the preprocessing in front of"):
        PreprocessedSurrogate({}, None)


def test_preprocessed_surrogate_saves_and_refits(tmp_path):
    X, Y = _ignores_second_input()
    params = {"scale": "robust", "select": {"method": "mutual-info", "k": 2}, "pca": 2}
    model = PreprocessedSurrogate(params, make_surrogate("elm", {"n_hidden": 30}, seed=2)).fit(X, Y)
    assert model.n_features_in_ == 3 and model.surrogate.n_features_in_ == 2
    model.save(tmp_path / "m")
    again = load_surrogate(tmp_path / "m")
    Xt = np.random.default_rng(9).uniform(0, 1, (20, 3))
    np.testing.assert_array_equal(again.predict(Xt)[0], model.predict(Xt)[0])
    assert again.preprocessor_.selected_.tolist() == [0, 2]
    # a refit that transforms differently from the saved one is reported, not used
    with np.load(tmp_path / "m" / "preprocess.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["transformed"] = arrays["transformed"] * 1.001
    np.savez(tmp_path / "m" / "preprocess.npz", **arrays)
    with pytest.raises(ReflowError, match="preprocessing refit on load differs from the saved one"):
        load_surrogate(tmp_path / "m")


def test_preprocessing_passes_device_and_std_through():
    inner = make_surrogate("gp", device="cpu")
    model = PreprocessedSurrogate({"scale": "minmax"}, inner)
    assert model.has_std and model.device == "cpu"
    model.device = "cuda:1"
    assert inner.device == "cuda:1"
    assert not PreprocessedSurrogate({}, make_surrogate("elm")).has_std


def test_normalization_matters_for_an_unscaled_elm():
    """Seed 000's point: inputs on very different scales hurt a network unless normalized."""
    rng = np.random.default_rng(4)
    X = rng.uniform(0, 1, (120, 2)) * np.array([1.0, 1000.0])
    Y = np.sin(3 * X[:, 0]) + (X[:, 1] / 1000.0) ** 2
    Xt = rng.uniform(0, 1, (100, 2)) * np.array([1.0, 1000.0])
    Yt = np.sin(3 * Xt[:, 0]) + (Xt[:, 1] / 1000.0) ** 2

    def score(scale):
        model = PreprocessedSurrogate({"scale": scale}, make_surrogate("elm", {"n_hidden": 40}, seed=0)).fit(X, Y)
        p = model.predict(Xt)[0][:, 0]
        return 1 - np.sum((Yt - p) ** 2) / np.sum((Yt - Yt.mean()) ** 2)

    raw, scores = score("none"), {s: score(s) for s in ("zscore", "minmax", "decimal", "robust")}
    assert all(v > 0.99 for v in scores.values()), scores
    assert raw < min(scores.values()) - 0.05, (raw, scores)
