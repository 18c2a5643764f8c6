"""The life-data studies (studies/thermal_cycling_readouts.yaml, studies/alt_arrhenius.yaml) end to end at a tiny
size set through overrides. The fitted numbers are checked against fits computed here from the stage's own data
with scipy alone (not reflow's fitting code), and the design trials against the heatsink formula and the ALT law.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from reflow.runner import execute, start_run
from reflow.study import load_study

STUDIES = Path(__file__).resolve().parents[1] / "studies"
Z10 = -math.log(0.9)


def _run(name: str, overrides: list[str], tmp_path: Path):
    run = execute(start_run(load_study(STUDIES / name, overrides=overrides), tmp_path / "runs", quiet=True))
    failed = {s: v for s, v in run.manifest["stages"].items() if v["status"] != "done"}
    assert not failed, failed
    return run


def _metrics(run, stage: str) -> dict:
    return json.loads((run.dir / stage / "metrics.json").read_text())


def _weibull_mle(lower: np.ndarray, upper: np.ndarray) -> tuple[float, float, float]:
    """(eta, beta, loglik) of a 2-P Weibull on [lower, upper] intervals by scipy (CensoredData) alone."""
    from scipy import stats

    exact = lower == upper
    data = stats.CensoredData(uncensored=lower[exact], interval=np.column_stack([lower[~exact], upper[~exact]]))
    beta, _, eta = stats.weibull_min.fit(data, floc=0)
    ll = float(np.sum(stats.weibull_min.logpdf(lower[exact], beta, scale=eta)))
    right = np.isinf(upper)
    ll += float(np.sum(stats.weibull_min.logsf(lower[right], beta, scale=eta)))
    mid = ~exact & ~right
    ll += float(np.sum(np.log(stats.weibull_min.cdf(upper[mid], beta, scale=eta)
                              - stats.weibull_min.cdf(lower[mid], beta, scale=eta))))
    return eta, beta, ll


def _readout_lives(ds, threshold: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Each unit's [lower, upper] from its readouts, computed here: the crossing between the last readout at or
    below the threshold and the first above it (interval), or interpolated between them (interpolate)."""
    unit, t, d = (np.asarray(ds[v].values) for v in ("unit", "cycles", "degradation"))
    lower, upper = [], []
    for u in np.unique(unit):
        mine = unit == u
        order = np.argsort(t[mine])
        tu, du = t[mine][order].astype(float), d[mine][order]
        if tu[0] == 0 and du[0] > threshold:
            continue  # defective at the start: left out
        above = np.flatnonzero(du > threshold)
        if above.size == 0:
            lower.append(tu[-1])
            upper.append(np.inf)
            continue
        k = above[0]
        if method == "interval":
            lower.append(tu[k - 1] if k > 0 else 0.0)
            upper.append(tu[k])
        else:
            when = tu[k] if k == 0 else tu[k - 1] + (threshold - du[k - 1]) / (du[k] - du[k - 1]) * (tu[k] - tu[k - 1])
            lower.append(when)
            upper.append(when)
    return np.asarray(lower, float), np.asarray(upper, float)


@pytest.fixture(scope="module")
def readouts_run(tmp_path_factory):
    src = "stages.readouts.source.synthetic-readout-test"
    return _run("thermal_cycling_readouts.yaml", [
        f"{src}.units=30", "stages.choose.model.life-distribution.candidates=[weibull, lognormal, exponential]",
        "stages.choose.model.life-distribution.bounds=fisher",
        *(f"stages.{s}.model.life-distribution.bounds=fisher" for s in ("interpolate", "path", "exact")),
    ], tmp_path_factory.mktemp("readouts"))


def test_readouts_distribution_choice_ranks_by_aicc(readouts_run):
    rows = list(csv.DictReader((readouts_run.dir / "choose" / "distribution_ranking.csv").open()))
    assert [r["distribution"] for r in rows] and {r["distribution"] for r in rows} == {"weibull", "lognormal",
                                                                                     "exponential"}
    aicc = [float(r["aicc"]) for r in rows]
    assert aicc == sorted(aicc)
    chosen = _metrics(readouts_run, "choose")
    assert chosen["distribution"] == rows[0]["distribution"]
    for name in ("weibull", "lognormal", "exponential"):
        assert (readouts_run.dir / "choose" / f"probability_{name}.png").stat().st_size > 5000


@pytest.mark.parametrize("stage, method", [("interval", "interval"), ("interpolate", "interpolate")])
def test_readouts_fits_match_scipy_on_the_readouts(readouts_run, stage, method):
    ds = readouts_run.output("readouts")
    lower, upper = _readout_lives(ds, float(ds.attrs["threshold"]), method)
    eta, beta, ll = _weibull_mle(lower, upper)
    m = _metrics(readouts_run, stage)
    assert m["units"] == lower.size and m["failures"] == int(np.isfinite(upper).sum())
    assert m["eta"] == pytest.approx(eta, rel=1e-4) and m["beta"] == pytest.approx(beta, rel=1e-4)
    assert m["log_likelihood"] == pytest.approx(ll, rel=1e-6)
    assert m["b10_cycles"] == pytest.approx(eta * Z10 ** (1 / beta), rel=1e-4)
    # one-sided 90 % bounds around the estimate
    assert m["b10_cycles_lower"] < m["b10_cycles"] < m["b10_cycles_upper"]
    if method == "interval":
        assert m["interval_units"] + m.get("left_units", 0) == m["failures"]


def test_readouts_path_method_extrapolates_every_unit(readouts_run):
    m = _metrics(readouts_run, "path")
    assert m["units"] == _metrics(readouts_run, "interval")["units"]
    assert 0 < m["failures"] <= m["units"] and m["b10_cycles"] > 0


# ---- ALT -> field B10 -> heatsink design ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def alt_run(tmp_path_factory):
    return _run("alt_arrhenius.yaml", [
        "stages.test.source.synthetic-alt-test.units_per_condition=12",
        "stages.heatsink.budget.initial=4", "stages.heatsink.budget.evaluations=6",
        "stages.heatsink.optimizer.qlognei.raw_samples=32", "stages.heatsink.optimizer.qlognei.num_restarts=2",
    ], tmp_path_factory.mktemp("alt"))


def _alt_mle(ds) -> tuple[float, float, float, float]:
    """(a, b, beta, loglik) of eta(T) = b exp(a / T) with a common Weibull shape on the intervals, by scipy.optimize
    on a likelihood written here."""
    from scipy import optimize, stats

    lo, up = ds["lower"].values.astype(float), ds["upper"].values.astype(float)
    up = np.where(np.isnan(up), np.inf, up)
    inv_t = 1.0 / ds["temperature_k"].values.astype(float)
    c = inv_t.mean()

    def nll(x):
        w0, a, lnb = x
        beta = math.exp(lnb)
        eta = np.exp(w0 + a * (inv_t - c))
        right = np.isinf(up)
        ll = np.sum(stats.weibull_min.logsf(lo[right], beta, scale=eta[right]))
        left = ~right & (lo == 0)
        ll += np.sum(stats.weibull_min.logcdf(up[left], beta, scale=eta[left]))
        mid = ~right & (lo > 0)
        ll += np.sum(np.log(stats.weibull_min.cdf(up[mid], beta, scale=eta[mid])
                            - stats.weibull_min.cdf(lo[mid], beta, scale=eta[mid])))
        return -ll if np.isfinite(ll) else 1e300

    mid = np.where(np.isinf(up), lo, np.where(lo == 0, up, 0.5 * (lo + up)))
    slope, icpt = np.polyfit(inv_t - c, np.log(mid), 1)
    res = optimize.minimize(nll, [icpt + 0.3, slope, 0.5], method="Nelder-Mead",
                            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000, "maxfev": 40000})
    w0, a, lnb = res.x
    return a, math.exp(w0 - a * c), math.exp(lnb), -res.fun


def test_alt_fit_matches_an_independent_mle(alt_run):
    a, b, beta, ll = _alt_mle(alt_run.output("test"))
    m = _metrics(alt_run, "alt")
    assert m["conditions"] == 3 and m["units"] == 36
    assert m["a"] == pytest.approx(a, rel=1e-4) and m["beta"] == pytest.approx(beta, rel=1e-4)
    assert m["b"] == pytest.approx(b, rel=1e-3)  # b = exp(intercept): its error is a's times 1/T
    assert m["log_likelihood"] == pytest.approx(ll, rel=1e-6)
    use = 348.15
    assert m["use_b10_cycles"] == pytest.approx(b * math.exp(a / use) * Z10 ** (1 / beta), rel=1e-3)
    assert m["use_b10_cycles_lower"] < m["use_b10_cycles"]


def test_heatsink_trials_chain_the_thermal_model_into_the_alt_law(alt_run):
    m = _metrics(alt_run, "alt")
    trials = alt_run.output("heatsink.trials")
    ok = trials["status"].values == "ok"
    assert ok.sum() == 6
    v = trials["heatsink_volume_cm3"].values[ok]
    t_k = trials["temperature_k"].values[ok]
    np.testing.assert_allclose(t_k, 40.0 + 3.0 * (6.0 + 700.0 / v) + 273.15, rtol=1e-12)
    np.testing.assert_allclose(trials["heatsink_mass_g"].values[ok], 2.70 * 0.25 * v, rtol=1e-12)
    b10 = m["b"] * np.exp(m["a"] / t_k) * Z10 ** (1 / m["beta"])
    np.testing.assert_allclose(trials["b10_cycles"].values[ok], b10, rtol=1e-6)
    lower = trials["b10_cycles_lower"].values[ok]
    assert np.all(lower < trials["b10_cycles"].values[ok])
    best = _metrics(alt_run, "heatsink")
    feasible = lower >= 8000
    if feasible.any():  # the best design is the lightest one whose bounded B10 meets the limit
        assert best["best_heatsink_mass_g"] == pytest.approx(float(trials["heatsink_mass_g"].values[ok][feasible]
                                                                   .min()))


def test_readouts_exact_stage_fits_the_true_lives(readouts_run):
    from scipy import stats

    ds = readouts_run.output("readouts")
    first = ds["cycles"].values == 0
    lives = ds["true_cycles"].values[first]
    assert lives.size == 30
    beta, _, eta = stats.weibull_min.fit(lives, floc=0)
    m = _metrics(readouts_run, "exact")
    assert m["units"] == m["failures"] == 30
    assert m["eta"] == pytest.approx(eta, rel=1e-4) and m["beta"] == pytest.approx(beta, rel=1e-4)
