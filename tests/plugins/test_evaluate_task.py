"""Task ``evaluate`` on an earlier stage's trials: the trial bookkeeping is never passed on as an input."""

from __future__ import annotations

import numpy as np
import xarray as xr
from reflow.runner import run_study
from reflow.study import load_study

SIM = '''
def square(x):
    return {"y": x * x}
'''


def test_trial_bookkeeping_is_not_an_input(write_study, tmp_path):
    """An optimize stage's trials carry status, timings and suggest_seconds: only ``x`` is a design input."""
    n = 5
    trials = xr.Dataset({"x": ("trial", np.linspace(0.0, 1.0, n)), "status": ("trial", ["ok"] * n),
                         "error": ("trial", [""] * n), "batch": ("trial", np.zeros(n, dtype=int)),
                         "started": ("trial", np.arange(n, dtype=float)), "finished": ("trial", np.arange(n) + 0.5),
                         "suggest_seconds": ("trial", np.full(n, 0.01))}, coords={"trial": np.arange(n)})
    trials.to_netcdf(tmp_path / "opt.nc", engine="h5netcdf")
    (tmp_path / "sim.py").write_text(SIM)
    path = write_study("""
        study: evaluate-trials
        stages:
          opt:
            task: data
            source: {netcdf: {path: opt.nc}}
          again:
            task: evaluate
            data: opt
            evaluate: {python: {function: "sim:square", outputs: [y]}}
    """)
    run = run_study(load_study(path), out=tmp_path / "runs", quiet=True)
    out = run.output("again")
    assert list(out.attrs["inputs"]) == ["x"]
    assert out["status"].values.tolist() == ["ok"] * n
    np.testing.assert_allclose(out["y"].values, trials["x"].values ** 2)
