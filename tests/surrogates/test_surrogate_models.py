"""The surrogate families as reflow models: the component contract (check_component), predictions named by target,
params split between the family and the preprocessing, and bad data named by variable."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from reflow.errors import DataError
from reflow.registry import get_registry
from reflow.testing import check_component, test_context

TINY = {
    "gp": {},
    "ensemble": {"hidden": [8], "epochs": 5, "members": 2},
    "mlp": {"hidden": [8], "epochs": 5},
    "elm": {"n_hidden": 10, "tune": {"population": 4, "generations": 2}},
    "sklearn": {"estimator": "random-forest", "options": {"n_estimators": 10}},
}


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    a, b, c = rng.uniform(0, 1, (3, n))
    return xr.Dataset({"a_mm": ("sample", a, {"units": "mm"}), "b": ("sample", b), "c": ("sample", c),
                       "w_um": ("sample", np.sin(3 * a) + b**2, {"units": "um"}), "s": ("sample", a * c)},
                      coords={"sample": np.arange(n)})


@pytest.mark.parametrize("name", list(TINY))
def test_registered_model_passes_the_contract(name, tmp_path):
    entry = get_registry().get(name, "model")
    assert entry.cls.family == "surrogate"
    check_component(entry.cls, TINY[name], tmp_path=tmp_path, data=_data(), features=["a_mm", "b", "c"],
                    targets=["w_um", "s"])


@pytest.mark.parametrize(("name", "std"), [("gp", True), ("ensemble", True), ("mlp", False), ("elm", False),
                                           ("sklearn", True)])
def test_predictions_are_named_by_target_with_units(name, std, tmp_path):
    cls = get_registry().get(name, "model").cls
    model = cls({**TINY[name], "scale": "minmax"}).configure(["a_mm", "b", "c"], ["w_um", "s"])
    ctx = test_context(tmp_path)
    model.fit(_data(), ctx)
    pred = model.predict(_data(15, seed=1), ctx)
    names = {"w_um_mean", "s_mean"} | ({"w_um_std", "s_std"} if std else set())
    assert set(pred.data_vars) == names
    assert pred["w_um_mean"].dims == ("sample",) and pred.sizes["sample"] == 15
    assert pred["w_um_mean"].attrs["units"] == "um"
    assert model.summary()["fit_seconds"] > 0
    model.save(tmp_path / "m")
    again = cls.load(tmp_path / "m").predict(_data(15, seed=1), ctx)
    for n in names:
        np.testing.assert_array_equal(again[n].values, pred[n].values)


def test_params_split_between_family_and_preprocessing():
    cls = get_registry().get("elm", "model").cls
    model = cls({"n_hidden": 7, "scale": "robust", "select": {"method": "rfe", "k": 2}, "pca": 1})
    surrogate = model.make_surrogate(seed=3)
    assert surrogate.params.scale == "robust" and surrogate.params.pca == 1
    assert surrogate.surrogate.family == "elm" and surrogate.surrogate.params.n_hidden == 7
    assert surrogate.seed == 3 == surrogate.surrogate.seed


def test_bad_data_is_reported_by_variable(tmp_path):
    cls = get_registry().get("elm", "model").cls
    ctx = test_context(tmp_path)
    data = _data()
    data["b"].values[3] = np.nan
    with pytest.raises(DataError, match=r"elm: 'b' holds 1 NaN or infinite value\(s\)"):
        cls().configure(["a_mm", "b"], ["s"]).fit(data, ctx)
    data = _data().assign(kind=("sample", np.array(["x"] * 40)))
    with pytest.raises(DataError, match=r"elm: feature 'kind' is not numeric"):
        cls().configure(["a_mm", "kind"], ["s"]).fit(data, ctx)
    with pytest.raises(DataError, match=r"elm: the data has no features zz"):
        cls().configure(["a_mm", "zz"], ["s"]).fit(_data(), ctx)


def test_surrogate_model_hands_the_validation_rows_to_the_surrogate(tmp_path, monkeypatch):
    from reflow.surrogates.plugin import SklearnModel

    rng = np.random.default_rng(0)

    def table(n: int) -> xr.Dataset:
        a, b = rng.uniform(0, 1, (2, n))
        return xr.Dataset({"a": ("sample", a), "b": ("sample", b), "y": ("sample", a + b)},
                          coords={"sample": np.arange(n)})

    seen: list = []

    class Recorder:
        quiet = True

        def fit(self, X, Y, validation=None):
            seen.append(validation)
            return self

    model = SklearnModel().configure(["a", "b"], ["y"])
    monkeypatch.setattr(model, "make_surrogate", lambda device="cpu", seed=0: Recorder())
    ctx = test_context(tmp_path)
    train, val = table(20), table(7)
    model.fit(train, ctx)
    model.fit(train, ctx, validation=val)
    assert seen[0] is None
    X_val, Y_val = seen[1]
    np.testing.assert_array_equal(X_val, np.column_stack([val["a"].values, val["b"].values]))
    np.testing.assert_array_equal(Y_val, val["y"].values[:, None])
