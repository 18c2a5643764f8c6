"""IMC growth laws: constants recovered from aging data they did not see, honest uncertainties."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from reflow.errors import DataError
from reflow.plugins.reliability.imc import ImcGrowth
from reflow.testing import check_component, test_context

HOURS = np.array([0, 24, 48, 100, 168, 250, 336, 500, 750, 1000], dtype=float)


def _aging(law: str, noise: float, rng: np.random.Generator) -> xr.Dataset:
    if law == "power":  # X0 = 1.2 um, D = 0.15 um/h^0.5, n = 0.5: diffusion-controlled Cu6Sn5 growth
        x = 1.2 + 0.15 * HOURS**0.5
    else:  # Zhu: B1 = 0.0008 um/h, B2 = 0.1 um/h^0.5, X0 = 1.0 um
        x = 0.0008 * HOURS + 0.1 * HOURS**0.5 + 1.0
    t = np.repeat(HOURS, 3)
    y = np.repeat(x, 3) + rng.normal(0.0, noise, t.size)
    return xr.Dataset({"aging_h": ("sample", t), "imc_um": ("sample", y)})


def _fit(law, data, tmp_path):
    return ImcGrowth(law=law).configure(["aging_h"], ["imc_um"]).fit(data, test_context(tmp_path))


@pytest.mark.parametrize("law, truth", [("power", {"x0": 1.2, "d": 0.15, "n": 0.5}),
                                        ("zhu", {"b1": 0.0008, "b2": 0.1, "x0": 1.0})])
def test_noiseless_data_gives_the_constants_back(law, truth, tmp_path):
    model = _fit(law, _aging(law, 0.0, np.random.default_rng(0)), tmp_path)
    for name, value in truth.items():
        assert model.constants()[name][0] == pytest.approx(value, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("law, name, true", [("power", "n", 0.5), ("zhu", "b2", 0.1)])
def test_standard_errors_cover_the_truth(law, name, true, tmp_path):
    rng = np.random.default_rng(1)
    hits = 0
    draws = 40
    for _ in range(draws):
        value, se = _fit(law, _aging(law, 0.05, rng), tmp_path).constants()[name]
        hits += abs(value - true) <= 1.96 * se
    assert hits >= 0.8 * draws  # nominal 95 % intervals; allow sampling slack


def test_prediction_std_matches_the_scatter_of_new_measurements(tmp_path):
    rng = np.random.default_rng(2)
    model = _fit("power", _aging("power", 0.05, rng), tmp_path)
    fresh = _aging("power", 0.05, rng)  # data the fit never saw
    pred = model.predict(fresh, test_context(tmp_path))
    z = (fresh["imc_um"].values - pred["imc_um_mean"].values) / pred["imc_um_std"].values
    assert 0.6 < np.std(z) < 1.5
    assert np.mean(np.abs(z) < 1.96) > 0.85


def test_errors_and_contract(tmp_path):
    data = _aging("power", 0.02, np.random.default_rng(3))
    with pytest.raises(DataError, match="exactly one feature"):
        ImcGrowth().configure(["aging_h", "imc_um"], ["imc_um"]).fit(data, test_context(tmp_path))
    with pytest.raises(DataError, match="at least 4"):
        _fit("power", data.isel(sample=slice(0, 3)), tmp_path)
    check_component(ImcGrowth, {"law": "zhu"}, data=data, features=["aging_h"], targets=["imc_um"],
                    tmp_path=tmp_path)


def test_train_stage_reports_the_constants(write_study, tmp_path):
    from reflow.runner import run_study
    from reflow.study import load_study

    data = _aging("power", 0.03, np.random.default_rng(4))
    data["lot"] = ("sample", np.tile(np.arange(3), HOURS.size))
    data.to_netcdf(tmp_path / "aging.nc", engine="h5netcdf")
    study = write_study("""
        study: imc
        stages:
          aging:
            task: data
            source: {netcdf: {path: aging.nc}}
          growth:
            task: train
            model: {imc-growth: {law: power}}
            data: aging
            features: [aging_h]
            target: imc_um
            split: {by: lot, test: 0.34}
    """)
    run = run_study(load_study(study), out=tmp_path / "runs", quiet=True)
    metrics = run.result("growth").metrics
    assert metrics["n"] == pytest.approx(0.5, abs=0.1)
    assert metrics["n_se"] > 0
    assert metrics["imc_um_r2"] > 0.9  # on the held-out lot
    assert (run.dir / "growth" / "model" / "constants.json").exists()
