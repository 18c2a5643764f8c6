"""Trials figures scale: binned means or densities above DENSE_TRIALS, one marker per trial below; the
influence ranking is Spearman's rank correlation."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from reflow.plugins.tasks import _trials
from reflow.plugins.tasks._trials import DENSE_TRIALS, influence_ranking, plot_trials


def trials(n: int, seed: int = 0, inputs: tuple[str, ...] = ("a_mm", "b_mpa", "c")) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    x = {name: rng.random(n) for name in inputs}
    y = 3 * x[inputs[0]] + (x[inputs[1]] if len(inputs) > 1 else 0) + rng.normal(0, 0.3, n)
    status = np.full(n, "ok")
    status[::97] = "failed"
    y[::97] = np.nan
    data = {name: ("trial", v) for name, v in x.items()}
    data["warpage_um"] = ("trial", y, {"units": "um"})
    data["status"] = ("trial", status)
    return xr.Dataset(data, coords={"trial": np.arange(n)})


@pytest.fixture
def drawn(monkeypatch):
    """Which matplotlib drawing calls the figures made."""
    from matplotlib.axes import Axes

    calls: list[str] = []
    for name in ("hexbin", "pcolormesh", "scatter", "tricontourf"):
        real = getattr(Axes, name)

        def spy(self, *args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(Axes, name, spy)
    return calls


@pytest.mark.parametrize(("inputs", "call"), [(("a_mm", "b_mpa", "c"), "pcolormesh"), (("a_mm",), "hexbin")],
                         ids=["map", "one-input"])
def test_many_trials_draw_a_density_of_bounded_size(tmp_path, drawn, inputs, call):
    n = 20 * DENSE_TRIALS
    paths = plot_trials(trials(n, inputs=inputs), list(inputs), ["warpage_um"], tmp_path)
    assert [p.name for p in paths] == ["warpage_um_factors.png"]
    assert drawn[0] == call and not {"scatter", "tricontourf"} & set(drawn)  # (colorbars draw meshes too)
    assert paths[0].stat().st_size < 400_000  # a PNG of cells, whatever the number of trials


def test_binned_mean_is_the_mean_of_each_cell():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.array([0.0, 0.1, 0.9, 1.0, 0.95, 0.5, 0.05])
    y = np.array([0.0, 0.1, 0.9, 1.0, 0.05, np.nan, 0.9])
    c = np.array([1.0, 3.0, 10.0, 20.0, 7.0, 5.0, np.nan])
    fig, ax = plt.subplots()
    mesh = _trials._binned_mean(ax, x, y, c, bins=2)  # the trials with a NaN are left out
    grid = mesh.get_array().reshape(2, 2)  # rows: y cells, columns: x cells
    plt.close(fig)
    assert grid[0, 0] == 2.0 and grid[1, 1] == 15.0 and grid[0, 1] == 7.0
    assert np.ma.is_masked(grid[1, 0])


def test_few_trials_draw_every_trial(tmp_path, drawn):
    paths = plot_trials(trials(300), ["a_mm", "b_mpa", "c"], ["warpage_um"], tmp_path)
    assert len(paths) == 1 and paths[0].stat().st_size > 0
    assert drawn[:2] == ["scatter", "tricontourf"]


def test_the_threshold_counts_successful_trials(tmp_path, drawn, monkeypatch):
    monkeypatch.setattr(_trials, "DENSE_TRIALS", 250)
    plot_trials(trials(256), ["a_mm", "b_mpa"], ["warpage_um"], tmp_path)  # 253 ok trials: dense
    dense = list(drawn)
    drawn.clear()
    plot_trials(trials(252), ["a_mm", "b_mpa"], ["warpage_um"], tmp_path)  # 249 ok: every trial
    assert dense[0] == "pcolormesh" and "scatter" not in dense
    assert drawn[:2] == ["scatter", "tricontourf"]


def test_influence_ranking_is_spearman_over_the_successful_trials():
    from scipy.stats import spearmanr

    ds = trials(500, seed=3)
    ds["c"] = ("trial", np.round(ds["c"].values * 4))  # ties: average ranks
    ds["cat"] = ("trial", np.array(["x", "y", "z"])[np.arange(500) % 3])
    ranking = dict(influence_ranking(ds, ["a_mm", "b_mpa", "c", "cat"], "warpage_um"))
    ok = ds["status"].values == "ok"
    y = ds["warpage_um"].values[ok]
    for name in ("a_mm", "b_mpa", "c"):
        assert ranking[name] == pytest.approx(abs(spearmanr(ds[name].values[ok], y).statistic), abs=1e-12)
    codes = np.unique(ds["cat"].values[ok], return_inverse=True)[1]
    assert ranking["cat"] == pytest.approx(abs(spearmanr(codes, y).statistic), abs=1e-12)
    assert list(ranking)[0] == "a_mm"


def test_influence_ranking_of_a_million_trials_uses_a_fixed_subset():
    ds = trials(10**6, seed=1)
    first = influence_ranking(ds, ["a_mm", "b_mpa", "c"], "warpage_um")
    assert first == influence_ranking(ds, ["a_mm", "b_mpa", "c"], "warpage_um")
    ranks = dict(first)
    assert [n for n, _ in first] == ["a_mm", "b_mpa", "c"]
    assert ranks["c"] < 0.01  # noise: no correlation
