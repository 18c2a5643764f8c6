"""The batch-first engine: vectorized evaluators agree with their per-trial path, a bad row fails alone with the
plugin's location, a DOE is journaled chunk by chunk and resumes without repeating a chunk, fsync is throttled,
the trials dataset is built column-wise, and a study that uses no torch never imports it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from reflow import store
from reflow.evaluation import (
    TrialTable,
    evaluate_columns,
    evaluate_trials,
    is_vectorized,
    records_to_dataset,
)
from reflow.registry import get_registry
from reflow.runner import resume_run, run_study
from reflow.store import TrialJournal, read_dataset, read_manifest, write_json
from reflow.study import load_study
from reflow.testing import test_context

VECTORIZED = [
    ("bilayer-warpage", {}),
    ("bilayer-warpage", {"biaxial": True}),
    ("arrhenius", {}),
    ("black", {}),
    ("norris-landzberg", {}),
    ("coffin-manson", {}),
    ("engelmaier", {"weibull_shape": 2.5}),
    ("junction-temperature", {}),
    ("junction-temperature", {"mode": "transient"}),
    ("epoxy-lab", {}),
    ("epoxy-lab", {"noise": 0, "seed": 3}),
]


def _evaluator(name: str, params: dict):
    cls = get_registry().get(name, "evaluator").cls
    return cls(cls.Params(**params))


def _inputs(evaluator, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs inside each declared range; the first rows pushed outside it (below zero, above one)."""
    out = {}
    for v in evaluator.input_variables():
        low = v.low if v.low is not None else 0.5 * v.default
        high = v.high if v.high is not None else 1.5 * v.default
        col = rng.uniform(low, high, n)
        col[0] = -abs(high) - 1.0  # negative sizes, temperatures below absolute zero, ...
        col[1] = 0.0
        out[v.name] = col
    if "dgeba" in out:  # epoxy-lab: mass fractions that sum to 1 (a Dirichlet draw), but for the first rows
        mix = rng.dirichlet(np.ones(4), n)
        for j, k in enumerate(("dgeba", "tgddm", "dds", "pes")):
            out[k][2:] = mix[2:, j]
    return out


@pytest.mark.parametrize(("name", "params"), VECTORIZED, ids=lambda x: str(x))
def test_arrays_agree_with_evaluate_one_row_by_row(name, params):
    evaluator = _evaluator(name, params)
    assert is_vectorized(evaluator)
    inputs = _inputs(evaluator, 64, np.random.default_rng(3))
    with np.errstate(all="ignore"):
        arrays = evaluator.evaluate_arrays(inputs)
    names = [v.name for v in evaluator.output_variables()]
    failures = 0
    for i in range(64):
        row = {k: float(v[i]) for k, v in inputs.items()}
        try:
            one = evaluator.evaluate_one(row)
            ok = all(np.isfinite(float(one[k])) for k in names)
        except (ValueError, ZeroDivisionError, OverflowError):
            ok = False
        got = [float(np.broadcast_to(arrays[k], (64,))[i]) for k in names]
        if not ok:  # the row must come out non-finite, so the engine asks evaluate_one for its error
            failures += 1
            assert not all(np.isfinite(got)), f"row {i}: evaluate_one fails but the arrays give {got}"
            continue
        np.testing.assert_allclose(got, [float(one[k]) for k in names], rtol=1e-9, err_msg=f"row {i}")
    assert failures < 64


def test_a_bad_row_fails_only_its_trial_where_the_plugin_says_so(tmp_path):
    evaluator = _evaluator("bilayer-warpage", {})
    n = 50
    thickness = np.linspace(0.1, 0.8, n)
    thickness[7] = 0.0
    table = evaluate_columns(evaluator, np.arange(100, 100 + n), {"die_thickness_mm": thickness},
                             test_context(tmp_path))
    assert table.ok.tolist() == [i != 7 for i in range(n)]
    assert "die_thickness_mm must be positive" in table.error[7] and "bilayer.py:" in table.error[7]
    for i in (0, 8, n - 1):
        one = evaluator.evaluate_one({**{v.name: v.default for v in evaluator.input_variables()},
                                      "die_thickness_mm": float(thickness[i])})
        assert table.outputs["warpage_um"][i] == pytest.approx(one["warpage_um"], rel=1e-12)
    ds = table.to_dataset()
    assert ds["status"].values[7] == "failed" and np.isnan(ds["warpage_um"].values[7])
    assert ds["trial"].values[7] == 107


BATCH_SIM = '''
import numpy as np


def batch(ds):
    out = ds.copy()
    y = ds["x"].values * 2.0
    y[ds["x"].values > 0.9] = np.nan
    out["y"] = ("trial", y)
    return out


def drop_last(ds):
    return batch(ds).isel(trial=slice(0, -1))
'''


def test_a_batch_python_evaluator_fails_only_its_nan_row_at_the_users_line(tmp_path):
    (tmp_path / "sim.py").write_text(BATCH_SIM)
    cls = get_registry().get("python", "evaluator").cls
    ctx = test_context(tmp_path)
    x = np.array([0.1, 0.95, 0.5, 0.2])
    for function, missing in (("sim:batch", None), ("sim:drop_last", 3)):
        evaluator = cls(cls.Params(function=function, batch=True, outputs=["y"]))
        evaluator.setup(ctx)
        records = evaluate_trials(evaluator, [(i, {"x": float(v)}) for i, v in enumerate(x)], ctx)
        status = {r["trial"]: r["status"] for r in records}
        assert status[1] == "failed" and "output 'y' is nan" in records[1]["error"]
        assert "sim.py" in records[1]["error"], records[1]["error"]
        if missing is not None:
            assert status[missing] == "failed" and "no row for this trial" in records[missing]["error"]
        for i in {0, 2, 3} - {missing}:
            assert status[i] == "ok" and records[i]["outputs"]["y"] == pytest.approx(2 * x[i])


STUDY = """
study: chunks
seed: 5
executor: {local: {chunk_size: 128}}
stages:
  doe:
    task: doe
    design: {random: {samples: 300}}
    batch_size: 64
    space:
      die_thickness_mm: {low: 0.1, high: 0.8}
      length_mm: {low: 5, high: 20}
    evaluate: bilayer-warpage
"""


def test_a_doe_is_journaled_by_chunk_and_resumes_without_repeating_a_chunk(tmp_path, monkeypatch):
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(STUDY))
    cls = get_registry().get("bilayer-warpage", "evaluator").cls
    sizes: list[int] = []
    arrays = cls.evaluate_arrays

    def counting(self, inputs):
        sizes.append(len(next(iter(inputs.values()))))
        return arrays(self, inputs)

    appends: list[int] = []
    append = TrialJournal.append_text

    def counting_append(self, text):
        appends.append(text.count("\n"))
        return append(self, text)

    monkeypatch.setattr(cls, "evaluate_arrays", counting)
    monkeypatch.setattr(TrialJournal, "append_text", counting_append)
    run = run_study(load_study(path), tmp_path / "runs", quiet=True)
    assert sizes == [128, 128, 44] and appends == [128, 128, 44], "one evaluation and one write per chunk"
    journal = TrialJournal(run.dir / "doe" / "trials.jsonl").read()
    assert sorted(r["trial"] for r in journal) == list(range(300))
    trials = read_dataset(run.dir / "doe" / "trials.nc")
    assert set(trials["status"].values.tolist()) == {"ok"}
    assert trials["batch"].values.tolist() == [i // 64 for i in range(300)]
    design = read_dataset(run.dir / "doe" / "design.nc")
    np.testing.assert_array_equal(trials["die_thickness_mm"].values, design["die_thickness_mm"].values)
    row = {"die_thickness_mm": float(trials["die_thickness_mm"][9]), "length_mm": float(trials["length_mm"][9])}
    expect = cls(cls.Params()).evaluate_one({**{v.name: v.default for v in cls.inputs}, **row})
    assert float(trials["warpage_um"][9]) == pytest.approx(expect["warpage_um"], rel=1e-12)

    # a kill after two chunks: the journal holds 256 trials, the stage is running
    folder = run.dir / "doe"
    lines = (folder / "trials.jsonl").read_bytes().splitlines(keepends=True)
    (folder / "trials.jsonl").write_bytes(b"".join(lines[:256]))
    (folder / "trials.nc").unlink()
    manifest = read_manifest(run.dir)
    manifest["status"] = "running"
    manifest["stages"]["doe"]["status"] = "running"
    write_json(run.dir / "manifest.json", manifest)
    sizes.clear()
    resume_run(run.dir, quiet=True)
    assert sizes == [44], "only the trials not journaled are evaluated again"
    resumed = read_dataset(folder / "trials.nc")
    np.testing.assert_array_equal(resumed["warpage_um"].values, trials["warpage_um"].values)
    assert sorted(r["trial"] for r in TrialJournal(folder / "trials.jsonl").read()) == list(range(300))


def test_fsync_at_most_every_second_and_at_close(tmp_path, monkeypatch):
    clock = [100.0]
    synced: list[float] = []
    monkeypatch.setattr(store.time, "monotonic", lambda: clock[0])
    real_fsync = store.os.fsync
    monkeypatch.setattr(store.os, "fsync", lambda fd: (synced.append(clock[0]), real_fsync(fd)))
    armed = []

    class Timer:  # the fake clock drives this test: the real timer is tested below
        def __init__(self, seconds, fn):
            armed.append(seconds)

        def start(self):
            pass

        def cancel(self):
            pass

    monkeypatch.setattr(store.threading, "Timer", Timer)
    journal = TrialJournal(tmp_path / "trials.jsonl")
    for i in range(10):  # 10 chunks within 0.9 s: one fsync (the first), and a timer armed for the rest
        journal.append([{"trial": i, "status": "ok"}])
        clock[0] += 0.1
    assert synced == [100.0]
    assert armed == [1.0]
    clock[0] += 0.2
    journal.append([{"trial": 10, "status": "ok"}])  # a second after the last fsync
    assert synced == [100.0, pytest.approx(101.2)]
    journal.append([{"trial": 11, "status": "ok"}])
    journal.close()  # stage end: what is pending reaches the disk
    assert len(synced) == 3
    assert [r["trial"] for r in journal.read()] == list(range(12))


def test_an_unsynced_append_is_synced_by_the_timer(tmp_path, monkeypatch):
    synced = []
    real_fsync = store.os.fsync
    monkeypatch.setattr(store.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    journal = TrialJournal(tmp_path / "trials.jsonl")
    journal.SYNC_EVERY = 0.05
    journal.append([{"trial": 0, "status": "ok"}])  # synced at once (the first)
    journal.append([{"trial": 1, "status": "ok"}])  # within SYNC_EVERY: left to the timer
    import time

    deadline = time.time() + 10
    while len(synced) < 2 and time.time() < deadline:
        time.sleep(0.01)
    assert len(synced) == 2, "the timer did not fsync the pending append"
    journal.close()


def test_records_and_table_give_the_same_dataset():
    records = [
        {"trial": 2, "inputs": {"a": 1.5, "kind": "x"}, "outputs": {"y": 3.0}, "status": "ok", "error": "",
         "batch": 1, "started": 10.0, "finished": 11.0},
        {"trial": 0, "inputs": {"a": 0.5, "kind": "y"}, "outputs": {}, "status": "failed",
         "error": "ValueError: no (at sim.py:3)", "batch": 0, "started": 9.0, "finished": 9.5},
        {"trial": 1, "inputs": {"a": None, "kind": "x"}, "outputs": {"y": 2.0}, "status": "ok", "error": "",
         "batch": 0, "started": 9.0, "finished": 9.5},
    ]
    ds = records_to_dataset(records, units={"a": "mm"})
    assert ds["trial"].values.tolist() == [0, 1, 2]
    assert ds["status"].values.tolist() == ["failed", "ok", "ok"]
    assert ds["error"].values[0] == "ValueError: no (at sim.py:3)"
    assert ds["kind"].dtype.kind == "U" and ds["kind"].values.tolist() == ["y", "x", "x"]
    np.testing.assert_array_equal(ds["y"].values, [np.nan, 2.0, 3.0])
    assert np.isnan(ds["a"].values[1]) and ds["a"].attrs == {"units": "mm", "role": "parameter"}
    assert ds["started"].values[2] == np.datetime64(10_000_000_000, "ns")
    table = TrialTable.from_records(records)
    # the journal text encoded column by column is the JSON of the records (NaN included)
    lines = table.journal_text().splitlines()
    assert [json.dumps(json.loads(line)) for line in lines] == [json.dumps(r) for r in table.records()]
    again = records_to_dataset(table.records())
    for name in ("a", "y", "status", "error", "batch", "started"):
        np.testing.assert_array_equal(again[name].values, ds[name].values)


def test_a_study_that_uses_no_torch_never_imports_it(tmp_path):
    """The quickstart's kind of study (a DOE over a closed form, device: auto) runs without importing torch."""
    pytest.importorskip("torch")
    study = tmp_path / "study.yaml"
    study.write_text(textwrap.dedent("""
        study: no-torch
        seed: 1
        device: auto
        stages:
          warpage:
            task: doe
            design: {lhs: {samples: 16}}
            space:
              die_thickness_mm: {low: 0.1, high: 0.8}
              length_mm: {low: 5, high: 20}
            evaluate: bilayer-warpage
    """))
    script = textwrap.dedent(f"""
        import json, sys
        from reflow.study import load_study
        from reflow.runner import run_study
        run = run_study(load_study({str(study)!r}), {str(tmp_path / "runs")!r}, quiet=True)
        print(json.dumps({{"torch": "torch" in sys.modules, "status": run.manifest["status"],
                          "device": run.manifest["device"]}}))
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out == {"torch": False, "status": "done", "device": "auto"}


def test_chunk_size_comes_from_the_study_executor_or_the_default(tmp_path):
    """A run's study sets the vectorized chunk (in whole batches); a test's stand-in run has no study: CHUNK."""
    from reflow.context import RunContext
    from reflow.evaluation import CHUNK, chunk_size
    from reflow.runner import Run

    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(STUDY))
    run = Run(tmp_path / "run", load_study(path), {})
    ctx = RunContext(run=run, stage="doe", seed=1, device="cpu", folder=tmp_path, study_dir=tmp_path, quiet=True)
    assert chunk_size(ctx, 300) == 128
    assert chunk_size(ctx, 300, batch_size=64) == 128
    assert chunk_size(ctx, 300, batch_size=100) == 100  # never less than one batch
    assert chunk_size(ctx, 50) == 50  # never more than the trials to go
    stand_in = test_context(tmp_path)
    assert chunk_size(stand_in, 10 * CHUNK) == CHUNK
