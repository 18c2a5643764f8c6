"""The third-party example plugin (examples/thirdparty-plugin): installed with pip, found through its entry
point, listed by ``reflow plugins``, and used by a study that chains its evaluator and its model.

The physics and the model's save/load round trip are checked in-process on the module file; everything
about discovery goes through a real ``pip install`` (offline: no deps, no build isolation, no index) and
the CLI in subprocesses, so it is exactly what a user gets. The package is uninstalled afterwards.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from _cli import run_cli
from pydantic import ValidationError
from reflow.errors import DataError, EvaluationError, ReflowError
from reflow.evaluation import check_outputs, run_step
from reflow.registry import reset_plugins
from reflow.testing import check_component

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "thirdparty-plugin"
STUDY = EXAMPLE / "study.yaml"
DIST = "reflow-cantilever"


def _load_module():
    """The example module straight from its file (no install needed for the unit checks)."""
    spec = importlib.util.spec_from_file_location("reflow_cantilever_under_test", EXAMPLE / "reflow_cantilever.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves the Params annotations through sys.modules
    spec.loader.exec_module(module)
    return module


rc = _load_module()


def hand_deflection_um(length_mm, width_mm, thickness_mm, modulus_gpa, load_n):
    """delta = F L^3 / (3 E I), I = w t^3 / 12, in SI, returned in um."""
    inertia = (width_mm * 1e-3) * (thickness_mm * 1e-3) ** 3 / 12
    return load_n * (length_mm * 1e-3) ** 3 / (3 * modulus_gpa * 1e9 * inertia) * 1e6


def hand_stress_mpa(length_mm, width_mm, thickness_mm, load_n):
    """sigma = 6 F L / (w t^2), in SI, returned in MPa."""
    return 6 * load_n * (length_mm * 1e-3) / ((width_mm * 1e-3) * (thickness_mm * 1e-3) ** 2) / 1e6


def _cli(*args, env=None, cwd=None, timeout=180):
    """``reflow`` in a subprocess (the tests' run_cli) with REFLOW_LOAD_PLUGINS unset unless a test sets it: the
    plugin is found as a user's reflow finds it."""
    return run_cli(*args, cwd=cwd, timeout=timeout, env={"REFLOW_LOAD_PLUGINS": None, **(env or {})})


def _pip(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)


# --------------------------------------------------------------------------------------------------
# Unit checks on the module itself
# --------------------------------------------------------------------------------------------------


def test_evaluator_matches_the_hand_formula():
    # A copper lead-frame finger: L = 3 mm, w = 0.2 mm, t = 0.15 mm, E = 120 GPa, F = 0.05 N.
    # I = 0.2e-3 * (0.15e-3)^3 / 12 = 5.625e-17 m^4
    # delta = 0.05 * (3e-3)^3 / (3 * 120e9 * 5.625e-17) = 1.35e-9 / 2.025e-5 = 6.6667e-5 m = 66.667 um
    # sigma = 6 * 0.05 * 3e-3 / (0.2e-3 * (0.15e-3)^2) = 9e-4 / 4.5e-12 = 2.0e8 Pa = 200 MPa
    inputs = {"length_mm": 3.0, "width_mm": 0.2, "thickness_mm": 0.15, "modulus_gpa": 120.0, "load_n": 0.05}
    out = rc.CantileverDeflection().evaluate_one(inputs)
    assert out["tip_deflection_um"] == pytest.approx(200.0 / 3.0, rel=1e-12)
    assert out["max_stress_mpa"] == pytest.approx(200.0, rel=1e-12)
    assert out["tip_deflection_um"] == pytest.approx(hand_deflection_um(3.0, 0.2, 0.15, 120.0, 0.05), rel=1e-12)

    # Another point, against the formulas written out independently; the load factor scales both outputs.
    other = {"length_mm": 12.5, "width_mm": 0.08, "thickness_mm": 0.04, "modulus_gpa": 400.0, "load_n": 0.003}
    out = rc.CantileverDeflection(load_factor=2.5).evaluate_one(other)
    assert out["tip_deflection_um"] == pytest.approx(hand_deflection_um(12.5, 0.08, 0.04, 400.0, 0.0075), rel=1e-12)
    assert out["max_stress_mpa"] == pytest.approx(hand_stress_mpa(12.5, 0.08, 0.04, 0.0075), rel=1e-12)


def test_evaluator_through_reflow_defaults_and_failures():
    ev = rc.CantileverDeflection()
    # Inputs a design leaves out take their declared defaults (the worked example above, but L = 6 mm).
    out = run_step(ev, {"length_mm": 6.0})
    assert out["tip_deflection_um"] == pytest.approx(8 * 200.0 / 3.0)
    assert out["max_stress_mpa"] == pytest.approx(400.0)
    with pytest.raises(ValueError, match="thickness_mm must be positive"):
        run_step(ev, {"thickness_mm": 0.0})
    with pytest.raises(ValidationError):
        rc.CantileverDeflection(load_factor=0)
    with pytest.raises(EvaluationError, match="missing outputs"):
        check_outputs(ev, {"tip_deflection_um": 1.0})


def _beam_data(n=60, seed=0, dim="sample"):
    rng = np.random.default_rng(seed)
    x = {"length_mm": rng.uniform(2.5, 3.5, n), "thickness_mm": rng.uniform(0.14, 0.18, n),
         "load_n": rng.uniform(0.03, 0.07, n)}
    y = {"tip_deflection_um": hand_deflection_um(x["length_mm"], 0.2, x["thickness_mm"], 120.0, x["load_n"]),
         "max_stress_mpa": hand_stress_mpa(x["length_mm"], 0.2, x["thickness_mm"], x["load_n"])}
    return xr.Dataset({k: (dim, v) for k, v in {**x, **y}.items()}, coords={dim: np.arange(n)})


FEATURES = ["length_mm", "thickness_mm", "load_n"]
TARGETS = ["tip_deflection_um", "max_stress_mpa"]


def test_model_save_load_round_trip_gives_identical_predictions(tmp_path):
    data = _beam_data()
    model = rc.LeastSquaresPoly(degree=2).configure(FEATURES, TARGETS).fit(data, None)
    new = _beam_data(n=25, seed=1, dim="trial")  # predictions follow the input's dim
    before = model.predict(new, None)
    assert set(before.data_vars) == {f"{t}_{s}" for t in TARGETS for s in ("mean", "std")}
    assert before["tip_deflection_um_mean"].dims == ("trial",)
    np.testing.assert_array_equal(before["trial"].values, new["trial"].values)

    model.save(tmp_path / "model")
    files = sorted(p.name for p in (tmp_path / "model").iterdir())
    assert "params.json" in files and "state.npz" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".joblib"))]
    meta = json.loads((tmp_path / "model" / "params.json").read_text())
    assert meta["params"] == {"degree": 2, "ridge": 0.0}
    assert meta["features"] == FEATURES and meta["targets"] == TARGETS
    with np.load(tmp_path / "model" / "state.npz", allow_pickle=False) as state:  # plain arrays only
        assert state["coef"].shape == (10, 2)  # 1 + 3 linear + 6 quadratic terms, 2 targets

    loaded = rc.LeastSquaresPoly.load(tmp_path / "model")
    assert loaded.params.degree == 2 and loaded.features == FEATURES and loaded.targets == TARGETS
    after = loaded.predict(new, None)
    for name in before.data_vars:
        np.testing.assert_array_equal(after[name].values, before[name].values)


def test_model_fits_what_a_polynomial_can_represent():
    data = _beam_data()
    # The stress is linear in F at fixed L and t: a quadratic in (L, t, F) is close; a linear one less so.
    quad = rc.LeastSquaresPoly(degree=2).configure(FEATURES, ["max_stress_mpa"]).fit(data, None)
    lin = rc.LeastSquaresPoly(degree=1).configure(FEATURES, ["max_stress_mpa"]).fit(data, None)
    assert quad.residual_std_[0] < lin.residual_std_[0]
    # An exact quadratic is recovered to rounding, with a ~0 residual std.
    exact = data.assign(q=("sample", 1 + 2 * data["length_mm"].values - 3 * data["load_n"].values ** 2
                           + data["length_mm"].values * data["thickness_mm"].values))
    fit = rc.LeastSquaresPoly(degree=2).configure(FEATURES, ["q"]).fit(exact, None)
    pred = fit.predict(exact, None)
    np.testing.assert_allclose(pred["q_mean"].values, exact["q"].values, rtol=1e-9)
    assert pred["q_std"].values.max() < 1e-9
    with pytest.raises(ValidationError):
        rc.LeastSquaresPoly(degree=3)
    with pytest.raises(DataError, match="only 5 training samples"):
        rc.LeastSquaresPoly(degree=2).configure(FEATURES, ["q"]).fit(exact.isel(sample=slice(0, 5)), None)
    with pytest.raises(ReflowError, match="call fit before using the model"):
        rc.LeastSquaresPoly().configure(FEATURES, ["q"]).predict(exact, None)


def test_components_pass_reflow_contract_checks(tmp_path):
    check_component(rc.CantileverDeflection, {"load_factor": 1.5}, tmp_path=tmp_path / "evaluator")
    for degree in (1, 2):
        check_component(rc.LeastSquaresPoly, {"degree": degree}, data=_beam_data(), features=FEATURES,
                        targets=TARGETS, tmp_path=tmp_path / f"model{degree}")


# --------------------------------------------------------------------------------------------------
# Installed with pip: discovery, the CLI, and a study that uses both components
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """pip-installs the example (from a copy, so no build files land in the repo); uninstalls it after."""
    source = tmp_path_factory.mktemp("plugin") / "thirdparty-plugin"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "runs"))
    done = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", "-q", str(source))
    if done.returncode != 0:
        pytest.fail("pip install of examples/thirdparty-plugin failed. Installing without build isolation needs "
                    "setuptools>=70.1 (or the wheel package) in this environment: pip install -e '.[dev]'.\n"
                    + done.stdout + done.stderr, pytrace=False)
    try:
        yield source
    finally:
        _pip("uninstall", "-y", DIST)
        importlib.invalidate_caches()
        reset_plugins()  # nothing in this process may keep the plugin's components


def _table_row(output: str, name: str) -> list[str]:
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 2 and cells[1] == name:
            return cells[1:-1]
    raise AssertionError(f"no row for {name!r} in:\n{output}")


def test_reflow_plugins_lists_both_components(installed):
    done = _cli("plugins")
    assert done.returncode == 0, done.stderr
    name, kind, family, plugin, _summary = _table_row(done.stdout, "cantilever-deflection")
    assert (kind, family, plugin) == ("evaluator", "evaluator", "cantilever")
    name, kind, family, plugin, _summary = _table_row(done.stdout, "least-squares-poly")
    assert (kind, family, plugin) == ("model", "regressor", "cantilever")
    assert "failed to load" not in done.stdout


def test_reflow_plugins_show(installed):
    done = _cli("plugins", "show", "cantilever-deflection")
    assert done.returncode == 0, done.stderr
    assert "plugin cantilever" in done.stdout and "reflow_cantilever.CantileverDeflection" in done.stdout
    param = _table_row(done.stdout, "load_factor")
    assert param[1:3] == ["float", "1.0"] and "load" in param[3]
    for row, units, default in (("length_mm", "mm", "3.0"), ("thickness_mm", "mm", "0.15"), ("load_n", "N", "0.05")):
        assert _table_row(done.stdout, row)[1:3] == [units, default]
    assert _table_row(done.stdout, "tip_deflection_um")[1] == "um"
    assert _table_row(done.stdout, "max_stress_mpa")[1] == "MPa"

    done = _cli("plugins", "show", "least-squares-poly")
    assert done.returncode == 0, done.stderr
    assert "regressor" in done.stdout
    assert _table_row(done.stdout, "degree")[1:3] == ["1 | 2", "2"]


@pytest.fixture(scope="module")
def study_run(installed, tmp_path_factory):
    """The example study run once through the CLI; returns the run folder."""
    out = tmp_path_factory.mktemp("runs")
    done = _cli("run", STUDY, "--out", out, "--quiet", cwd=out)
    assert done.returncode == 0, done.stdout + done.stderr
    (run_dir,) = (out / "cantilever-surrogate").iterdir()
    return run_dir


def test_study_uses_the_plugin_evaluator_and_model(study_run):
    manifest = json.loads((study_run / "manifest.json").read_text())
    assert manifest["status"] == "done"
    assert manifest["plugins"]["cantilever-deflection"]["plugin"] == "cantilever"
    assert manifest["plugins"]["least-squares-poly"]["plugin"] == "cantilever"
    assert all(s["status"] == "done" for s in manifest["stages"].values()), manifest["stages"]

    # Stage 1: the plugin's evaluator, with the study's load_factor 1.5, agrees with the hand formula.
    beam = xr.load_dataset(study_run / "beam" / "trials.nc")
    assert beam.sizes["trial"] == 40 and (beam["status"].values == "ok").all()
    f = 1.5 * beam["load_n"].values
    np.testing.assert_allclose(beam["tip_deflection_um"].values,
                               hand_deflection_um(beam["length_mm"].values, 0.2, beam["thickness_mm"].values, 120.0, f),
                               rtol=1e-9)
    np.testing.assert_allclose(beam["max_stress_mpa"].values,
                               hand_stress_mpa(beam["length_mm"].values, 0.2, beam["thickness_mm"].values, f),
                               rtol=1e-9)

    # Stage 2: the plugin's model, saved as npz + JSON, scores well on the held-out quarter.
    metrics = json.loads((study_run / "fit" / "metrics.json").read_text())
    assert metrics["test_samples"] == 10 and metrics["train_samples"] == 30
    assert metrics["tip_deflection_um_r2"] > 0.95, metrics
    model_files = {p.name for p in (study_run / "fit" / "model").iterdir()}
    assert {"params.json", "state.npz", "component.json"} <= model_files
    assert json.loads((study_run / "fit" / "model" / "component.json").read_text())["name"] == "least-squares-poly"

    # Stage 3: the trained model is the evaluator. Its only output is the model's target (the simulation
    # would also give max_stress_mpa), and on the new LHS points it is close to the true cantilever values.
    explore = xr.load_dataset(study_run / "explore" / "trials.nc")
    assert explore.sizes["trial"] == 200 and (explore["status"].values == "ok").all()
    assert "tip_deflection_um" in explore and "max_stress_mpa" not in explore
    truth = hand_deflection_um(explore["length_mm"].values, 0.2, explore["thickness_mm"].values, 120.0,
                               1.5 * explore["load_n"].values)
    pred = explore["tip_deflection_um"].values
    assert not np.allclose(pred, truth, rtol=1e-6)  # a surrogate, not the simulation again
    r2 = 1 - np.sum((pred - truth) ** 2) / np.sum((truth - truth.mean()) ** 2)
    assert r2 > 0.95
    assert np.median(np.abs(pred - truth) / truth) < 0.05


def test_reflow_load_plugins_empty_hides_the_plugin(installed, tmp_path):
    listed = _cli("plugins", env={"REFLOW_LOAD_PLUGINS": ""})
    assert listed.returncode == 0, listed.stderr
    assert "cantilever-deflection" not in listed.stdout and "least-squares-poly" not in listed.stdout
    assert "bilayer-warpage" in listed.stdout  # reflow's own plugins always load

    done = _cli("run", STUDY, "--out", tmp_path / "runs", env={"REFLOW_LOAD_PLUGINS": ""}, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unknown evaluator 'cantilever-deflection'" in done.stderr
    assert "unknown model 'least-squares-poly'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "runs").exists()  # validation fails before a run folder is made

    # Naming the plugin loads it again.
    done = _cli("validate", STUDY, env={"REFLOW_LOAD_PLUGINS": "cantilever"}, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
