"""Every built-in component passes reflow.testing.check_component (the suite plugin authors run too)."""

from __future__ import annotations

import pytest
from reflow.registry import get_registry
from reflow.testing import check_component

REGISTRY = get_registry()
PARAMS = {
    "python": {"function": "mod:fn"},
    "command": {"argv": ["true"]},
    "csv": {"path": "x.csv"},
    "netcdf": {"path": "x.nc"},
    "data": {"source": {"csv": {"path": "x.csv"}}},
    "doe": {"design": "lhs", "space": {"die_thickness_mm": {"low": 0.1, "high": 1}}, "evaluate": "bilayer-warpage"},
    "evaluate": {"data": "doe", "evaluate": "bilayer-warpage"},
    "train": {"model": "some-model", "data": "doe.trials", "target": "warpage_um"},
    "optimize": {"space": {"die_thickness_mm": {"low": 0.1, "high": 1}}, "evaluate": "bilayer-warpage",
                 "optimizer": "qlognei", "objectives": {"warpage_um": "min"}},
    "lab": {"outputs": {"strength_mpa": "MPa"}},
}
SKIP_RUN = {"csv", "netcdf"}  # need files; covered by tests/plugins/test_tabular.py


def _aging_data():
    import numpy as np
    import xarray as xr

    t = np.linspace(0.0, 1000.0, 12)
    return xr.Dataset({"t_h": ("sample", t), "x_um": ("sample", 1.0 + 0.1 * t**0.5 + 0.01 * np.sin(t))})


def _life_test_data():
    """40 units, Weibull cycles (shape 2, scale 3000 shrinking with voids), suspended at 2500 cycles."""
    import numpy as np
    import xarray as xr

    rng = np.random.default_rng(0)
    voids = rng.uniform(0.0, 0.3, 40)
    life = 3000.0 * np.exp(-8.0 * voids / 2.0) * rng.weibull(2.0, 40)
    return xr.Dataset({"cycles": ("sample", np.minimum(life, 2500.0)), "failed": ("sample", (life <= 2500.0) * 1),
                       "void_fraction": ("sample", voids)})


# Models need data to check fit/predict/save/load: (data, features, targets) by name.
MODEL_DATA = {
    "imc-growth": lambda: (_aging_data(), ["t_h"], ["x_um"]),
    # life models: the feature is the time (or covariate) they predict at, the target one of their outputs
    "weibull": lambda: (_life_test_data(), ["cycles"], ["reliability"]),
    "kaplan-meier": lambda: (_life_test_data(), ["cycles"], ["reliability"]),
    "cox-ph": lambda: (_life_test_data(), ["void_fraction"], ["median_cycles"]),
}


@pytest.mark.parametrize("name", REGISTRY.names())
def test_builtin_component_contract(name, tmp_path):
    entry = REGISTRY.get(name)
    if not entry.plugin.startswith("reflow."):
        pytest.skip("not a built-in component")
    if entry.kind == "data_source" and name in SKIP_RUN:
        from reflow.testing import check_params

        check_params(entry.cls, PARAMS[name])
        return
    if entry.kind == "model":
        assert name in MODEL_DATA, f"add check data for the built-in model {name!r} to MODEL_DATA"
        data, features, targets = MODEL_DATA[name]()
        check_component(entry.cls, PARAMS.get(name), tmp_path=tmp_path, data=data, features=features,
                        targets=targets)
        return
    check_component(entry.cls, PARAMS.get(name), tmp_path=tmp_path)


def test_check_component_catches_a_broken_evaluator(tmp_path):
    import reflow

    class Broken(reflow.Evaluator):
        """Returns NaN."""

        inputs = (reflow.Variable("x", default=1.0),)
        outputs = (reflow.Variable("y"),)

        class Params(reflow.Params):
            pass

        def evaluate_one(self, inputs):
            return {"y": float("nan")}

    with pytest.raises(AssertionError, match="failed at its default inputs"):
        check_component(Broken, tmp_path=tmp_path)


def test_check_component_catches_undocumented_params(tmp_path):
    import reflow

    class Undocumented(reflow.Evaluator):
        """No description on its param."""

        inputs = (reflow.Variable("x", default=1.0),)
        outputs = (reflow.Variable("y"),)

        class Params(reflow.Params):
            scale: float = 1.0

        def evaluate_one(self, inputs):
            return {"y": inputs["x"] * self.params.scale}

    with pytest.raises(AssertionError, match="no description"):
        check_component(Undocumented, tmp_path=tmp_path)
