"""Task ``sensitivity``: Sobol indices against the Ishigami function's analytic values, and of a trained surrogate."""

from __future__ import annotations

import json
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest
import reflow
import xarray as xr
from reflow.errors import StudyError
from reflow.runner import run_study
from reflow.study import load_study

FUNCTIONS = '''
import numpy as np
import xarray as xr


def ishigami(ds):
    """Ishigami and Homma (1990): y = sin x1 + a sin^2 x2 + b x3^4 sin x1, x_i uniform on [-pi, pi]."""
    x1, x2, x3 = (np.asarray(ds[n].values, dtype=float) for n in ("x1", "x2", "x3"))
    a, b = np.asarray(ds["a"].values, dtype=float), np.asarray(ds["b"].values, dtype=float)
    return xr.Dataset({"y": ("trial", np.sin(x1) + a * np.sin(x2) ** 2 + b * x3 ** 4 * np.sin(x1)),
                       "y_doubled": ("trial", 2 * (np.sin(x1) + a * np.sin(x2) ** 2 + b * x3 ** 4 * np.sin(x1)))})


def fragile(x1, x2, x3):
    if x1 > 3.0:
        raise RuntimeError("mesh inverted")
    return {"y": x1 + x2 + x3}


def plane(u_mm, v_mm, w):
    return {"z_um": 3.0 * u_mm - 2.0 * v_mm + 0.5 * w}
'''


def ishigami_indices(a: float = 7.0, b: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """The analytic first-order and total indices of the Ishigami function (Sobol' and Levitan 1999)."""
    v1 = 0.5 * (1 + b * np.pi**4 / 5) ** 2
    v2 = a**2 / 8
    v13 = b**2 * np.pi**8 * (1 / 18 - 1 / 50)
    var = v1 + v2 + v13
    return np.array([v1, v2, 0.0]) / var, np.array([v1 + v13, v2, v13]) / var


def test_analytic_ishigami_values_match_the_published_ones():
    s1, st = ishigami_indices()
    np.testing.assert_allclose(s1, [0.314, 0.442, 0.0], atol=5e-4)
    np.testing.assert_allclose(st, [0.558, 0.442, 0.244], atol=5e-4)


ISHIGAMI = """
    study: sobol
    seed: 1
    stages:
      sobol:
        task: sensitivity
        space:
          x1: {low: -3.141592653589793, high: 3.141592653589793}
          x2: {low: -3.141592653589793, high: 3.141592653589793}
          x3: {low: -3.141592653589793, high: 3.141592653589793}
          a: {value: 7.0}
          b: {value: 0.1}
        evaluate: {python: {function: "functions:ishigami", batch: true, outputs: [y, y_doubled]}}
        samples: SAMPLES
        SECOND
"""


def _run(tmp_path, text: str):
    (tmp_path / "functions.py").write_text(FUNCTIONS)
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    return run_study(load_study(path), out=tmp_path / "runs", quiet=True)


def test_ishigami_first_and_total_indices(tmp_path):
    """N = 2048 (10 240 evaluations): every index within 0.03 of its analytic value, inside its 95 % interval."""
    run = _run(tmp_path, ISHIGAMI.replace("SAMPLES", "2048").replace("SECOND", ""))
    ind = run.output("sobol")
    assert ind["parameter"].values.tolist() == ["x1", "x2", "x3"]  # fixed a and b are not analysed
    assert ind["output"].values.tolist() == ["y", "y_doubled"]
    s1, st = ishigami_indices()
    for out in ("y", "y_doubled"):  # indices are shares of variance: scaling the output changes nothing
        sel = ind.sel(output=out)
        np.testing.assert_allclose(sel["S1"].values, s1, atol=0.03)
        np.testing.assert_allclose(sel["ST"].values, st, atol=0.03)
        assert (np.abs(sel["S1"].values - s1) <= sel["S1_conf"].values + 0.01).all()
        assert (sel["S1_conf"].values < 0.08).all() and (sel["ST_conf"].values < 0.08).all()
    samples = run.output("sobol.samples")
    assert samples.sizes["trial"] == 2048 * (3 + 2)
    assert (samples["a"].values == 7.0).all() and (samples["status"].values == "ok").all()
    assert samples["x1"].min() >= -np.pi and samples["x1"].max() <= np.pi
    metrics = json.loads((run.dir / "sobol" / "metrics.json").read_text())
    assert metrics["evaluations"] == 10240
    assert metrics["y_most_influential"] == "x1"  # x1 has the largest total index (0.558)
    assert metrics["y_S1_x2"] == pytest.approx(float(ind["S1"].sel(output="y", parameter="x2")))
    assert (run.dir / "sobol" / "sobol_indices.png").stat().st_size > 5000


def test_second_order_indices(tmp_path):
    """S2: the only interaction of Ishigami is x1-x3 (S13 = ST1 - S1 = 0.244); N = 1024, 8192 evaluations."""
    run = _run(tmp_path, ISHIGAMI.replace("SAMPLES", "1024").replace("SECOND", "second_order: true"))
    ind = run.output("sobol").sel(output="y")
    assert run.output("sobol.samples").sizes["trial"] == 1024 * (2 * 3 + 2)
    s2 = ind["S2"]
    s1, st = ishigami_indices()
    assert s2.sel(parameter="x1", other="x3").item() == pytest.approx(st[0] - s1[0], abs=0.05)
    assert s2.sel(parameter="x3", other="x1").item() == s2.sel(parameter="x1", other="x3").item()  # symmetric
    assert abs(s2.sel(parameter="x1", other="x2").item()) < 0.05
    assert abs(s2.sel(parameter="x2", other="x3").item()) < 0.05
    np.testing.assert_allclose(ind["S1"].values, s1, atol=0.05)
    np.testing.assert_allclose(ind["ST"].values, st, atol=0.05)
    assert (run.dir / "sobol" / "sobol_s2_y.png").exists()


class Plane(reflow.Model):
    """A least-squares plane: the surrogate whose indices are known in closed form."""

    family = "surrogate"

    class Params(reflow.Params):
        pass

    def _x(self, data):
        return np.column_stack([np.asarray(data[f].values, dtype=float) for f in self.features] +
                               [np.ones(data[self.features[0]].size)])

    def fit(self, data, ctx, validation=None):
        self.coef_, *_ = np.linalg.lstsq(self._x(data), np.asarray(data[self.targets[0]].values, float), rcond=None)
        return self

    def predict(self, data, ctx):
        dim = data[self.features[0]].dims[0]
        return xr.Dataset({f"{self.targets[0]}_mean": (dim, self._x(data) @ self.coef_)})

    def save_state(self, directory: Path) -> None:
        np.savez(directory / "state.npz", coef=self.coef_)

    def load_state(self, directory: Path) -> None:
        with np.load(directory / "state.npz", allow_pickle=False) as state:
            self.coef_ = state["coef"]


@reflow.hookimpl
def _register_models(register):
    register("plane-sens", Plane)


def test_sobol_indices_of_a_trained_surrogate(register_plugin, tmp_path):
    """y = 3u - 2v + 0.5w is additive: S1 = ST = w_i^2 var(x_i) / sum, here with u on [0, 2] (variance 4/12)."""
    register_plugin(types.SimpleNamespace(register_models=_register_models), "sens-test-models")
    run = _run(tmp_path, """
        study: surrogate-sobol
        seed: 2
        stages:
          sim:
            task: doe
            design: {lhs: {samples: 20}}
            space:
              u_mm: {low: 0, high: 2}
              v_mm: {low: 0, high: 1}
              w: {low: 0, high: 1}
            evaluate: {python: {function: "functions:plane", outputs: [z_um]}}
          fit:
            task: train
            model: plane-sens
            data: sim.trials
            target: z_um
            features: [u_mm, v_mm, w]
          sobol:
            task: sensitivity
            space:
              u_mm: {low: 0, high: 2}
              v_mm: {low: 0, high: 1}
              w: {low: 0, high: 1}
            evaluate: {stage: fit}
            samples: 512
    """)
    shares = np.array([9.0 * 4, 4.0, 0.25])
    expected = shares / shares.sum()
    ind = run.output("sobol").sel(output="z_um")
    np.testing.assert_allclose(ind["S1"].values, expected, atol=0.03)
    np.testing.assert_allclose(ind["ST"].values, expected, atol=0.03)
    assert float(run.output("sobol")["variance"].sel(output="z_um")) == pytest.approx(shares.sum() / 12, rel=0.05)


def test_a_failed_evaluation_stops_the_analysis_with_a_clear_error(tmp_path):
    text = ISHIGAMI.replace('{function: "functions:ishigami", batch: true, outputs: [y, y_doubled]}',
                            '{function: "functions:fragile", outputs: [y]}')
    text = text.replace("          a: {value: 7.0}\n          b: {value: 0.1}\n", "")
    with pytest.raises(reflow.ReflowError) as err:
        _run(tmp_path, text.replace("SAMPLES", "16").replace("SECOND", ""))
    message = str(err.value)
    assert "evaluations failed" in message and "mesh inverted" in message and "trials.jsonl" in message


def _study(space: str, extra: str = "", evaluate: str = '{python: {function: "functions:fragile", '
                                                            'outputs: [y]}}') -> str:
    return f"""
        study: bad
        stages:
          sobol:
            task: sensitivity
            space: {space}
            evaluate: {evaluate}
            {extra}
    """


@pytest.mark.parametrize(("text", "message"), [
    (_study("{x1: {low: 0, high: 1}, mat: {choices: [A, B]}}"), "'mat' is categorical"),
    (_study("{x1: {low: 0, high: 1}}", "samples: 100"), "samples must be a power of 2 (it keeps the Sobol "
                                                        "sequence balanced), got 100; use 64 or 128"),
    (_study("{x1: {low: 0, high: 1}}", "outputs: [warp]"), "'warp' is not an output of the evaluator"),
    (_study("{x1: {value: 1}}"), "at least one parameter with a range"),
    (_study("{thickness_um: {low: 1, high: 2}}", evaluate="bilayer-warpage"),
     "'thickness_um' is not an input of the evaluator"),
    (_study("{x1: {low: 0, high: 1}}", "second_order: maybe"), "second_order"),
])
def test_bad_params_are_caught_before_running(tmp_path, text, message):
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(text).lstrip())
    with pytest.raises(StudyError) as err:
        load_study(path)
    assert message in str(err.value)
