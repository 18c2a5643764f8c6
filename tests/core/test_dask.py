"""Dask distributed: a LocalCluster with two worker processes, and an existing scheduler address."""

from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pytest
from reflow.runner import run_study
from reflow.store import read_dataset, read_manifest
from reflow.study import load_study

pytest.importorskip("distributed")

EVALUATOR = """
import os
import time


def evaluate(x):
    time.sleep(0.2)  # long enough that both workers get work
    if x == 3:
        raise ArithmeticError("x = 3 is outside the model")
    if x == 5:
        time.sleep(5)
    return {"y": 10 * x, "pid": os.getpid()}
"""


def _study(write_study, executor: str):
    return write_study(f"""
        study: dask-study
        executor: {executor}
        stages:
          doe:
            task: doe
            design: {{full-factorial: {{levels: 8}}}}
            space:
              x: {{low: 0, high: 7}}
            evaluate: {{python: {{function: "remote:evaluate", outputs: [y, pid]}}}}
        """)


def _check_trials(run) -> set[int]:
    trials = read_dataset(run.dir / "doe" / "trials.nc")
    x = trials["x"].values
    assert sorted(x.tolist()) == [0, 1, 2, 3, 4, 5, 6, 7]
    status = dict(zip(x.tolist(), trials["status"].values.tolist(), strict=True))
    errors = dict(zip(x.tolist(), map(str, trials["error"].values), strict=True))
    assert status[3.0] == "failed"
    assert "ArithmeticError" in errors[3.0] and "outside the model" in errors[3.0]
    ok = trials["status"].values == "ok"
    np.testing.assert_allclose(trials["y"].values[ok], 10 * x[ok])
    pids = {int(p) for p in trials["pid"].values[ok]}
    assert os.getpid() not in pids, "evaluations ran in the test process, not on the cluster"
    return pids


def test_dask_local_cluster_with_two_workers(tmp_path, write_study):
    (tmp_path / "remote.py").write_text(textwrap.dedent(EVALUATOR))
    study = _study(write_study, "{dask: local, workers: 2, timeout: 1.5}")
    run = run_study(load_study(study), tmp_path / "runs", quiet=True)

    trials = read_dataset(run.dir / "doe" / "trials.nc")
    status = dict(zip(trials["x"].values.tolist(), trials["status"].values.tolist(), strict=True))
    assert [x for x, s in status.items() if s == "failed"] == [3.0, 5.0]
    slow = str(trials["error"].values[trials["x"].values == 5][0])
    assert slow.startswith("timeout")
    pids = _check_trials(run)
    assert len(pids) == 2, f"expected two worker processes, saw {pids}"

    manifest = read_manifest(run.dir)
    assert manifest["executor"] == {"dask": "local", "workers": 2, "timeout": 1.5}
    assert manifest["stages"]["doe"]["status"] == "done"
    metrics = json.loads((run.dir / "doe" / "metrics.json").read_text())
    assert (metrics["ok"], metrics["failed"]) == (6, 2)


def test_dask_existing_scheduler_address(tmp_path, write_study):
    from distributed import Client, LocalCluster

    (tmp_path / "remote.py").write_text(textwrap.dedent(EVALUATOR).replace("time.sleep(5)", "pass"))
    with LocalCluster(n_workers=1, processes=True, threads_per_worker=1, dashboard_address=None,
                      silence_logs=40) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://")
        study = _study(write_study, f"{{dask: '{address}'}}")
        run = run_study(load_study(study), tmp_path / "runs", quiet=True)
        pids = _check_trials(run)
        with Client(address) as client:
            worker_pids = set(client.run(os.getpid).values())
            # the run's client closed and left the user's cluster running
            assert len(client.scheduler_info()["workers"]) == 1
    assert pids == worker_pids
    trials = read_dataset(run.dir / "doe" / "trials.nc")
    assert (trials["status"].values == "ok").sum() == 7
    assert read_manifest(run.dir)["executor"] == {"dask": address}
