"""A failing evaluation fails its trial, never the study: exceptions, NaN, non-numbers, timeouts, commands."""

from __future__ import annotations

import json
import sys
import textwrap
import time

import numpy as np
import pytest
from reflow.evaluation import TrialsFailed
from reflow.runner import run_study
from reflow.store import TrialJournal, read_dataset, read_manifest
from reflow.study import load_study

MODEL = '''
import math
import time


def evaluate(case, x):
    case = int(case)
    if case == 1:
        raise ValueError(f"bad case {case}")
    if case == 2:
        return {"y": math.nan}
    if case == 3:
        return {"y": "oops"}
    if case == 4:
        time.sleep(30)
    if case == 5:
        return {"z": 1.0}
    if case == 6:
        return "not a mapping"
    if case == 7:
        return {"y": -math.inf}
    if case == 8:
        return {"y": str(2.0 * x)}  # a number written as text is still that number
    return {"y": 2.0 * x}
'''

# what each case must leave in trials.nc: (status, words the error must contain)
EXPECTED = {
    0: ("ok", []),
    1: ("failed", ["ValueError", "bad case 1", "model.py:9)"]),
    2: ("failed", ["'y'", "nan", "model.py:6)"]),  # a bad value is located at the function that returned it
    3: ("failed", ["'y'", "not a number", "oops", "model.py:6)"]),
    4: ("failed", ["timeout", "2"]),
    5: ("failed", ["missing outputs: y", "the evaluator returned: z)", "model.py:6)"]),
    6: ("failed", ["mapping", "str"]),
    7: ("failed", ["'y'", "inf", "model.py:6)"]),
    8: ("ok", []),
}


def _cases_csv(path, n):
    rows = "\n".join(f"{i},{1.5 + 0.5 * i}" for i in range(n))
    path.write_text(f"case,x\n{rows}\n")


def _trials(run, stage):
    return read_dataset(run.dir / stage / "trials.nc")


def test_python_evaluator_failures_fail_trials_not_the_study(tmp_path, write_study):
    (tmp_path / "model.py").write_text(MODEL)
    _cases_csv(tmp_path / "cases.csv", len(EXPECTED))
    study = write_study("""
        study: failures
        executor: {local: {workers: 2, timeout: 2}}
        stages:
          cases:
            task: data
            source: {csv: {path: cases.csv}}
          run:
            task: evaluate
            data: cases
            evaluate: {python: {function: "model:evaluate", outputs: [y]}}
        """)
    t0 = time.time()
    run = run_study(load_study(study), tmp_path / "runs", quiet=True)
    assert time.time() - t0 < 25, "the sleeping trial was not stopped at its timeout"

    manifest = read_manifest(run.dir)
    assert manifest["status"] == "done"
    assert manifest["stages"]["run"]["status"] == "done"

    trials = _trials(run, "run")
    assert list(trials["trial"].values) == list(EXPECTED)
    assert trials["y"].dtype.kind == "f", "a bad output must not turn the column into text"
    for tid, (status, words) in EXPECTED.items():
        assert str(trials["status"].values[tid]) == status, (tid, str(trials["error"].values[tid]))
        error = str(trials["error"].values[tid])
        for word in words:
            assert word in error, f"trial {tid}: {word!r} not in {error!r}"
        if status == "ok":
            assert error == ""
            x = float(trials["x"].values[tid])
            assert float(trials["y"].values[tid]) == 2.0 * x
        else:
            assert np.isnan(trials["y"].values[tid])
    # the killed trial did not hold up the others
    assert "killed" in str(trials["error"].values[4])

    metrics = json.loads((run.dir / "run" / "metrics.json").read_text())
    assert metrics["trials"] == 9 and metrics["ok"] == 2 and metrics["failed"] == 7
    assert metrics["y_min"] == 2.0 * 1.5 and metrics["y_max"] == 2.0 * 5.5
    assert manifest["stages"]["run"]["metrics"]["failed"] == 7

    # the journal holds every trial once, failures included
    journal = [json.loads(line) for line in (run.dir / "run" / "trials.jsonl").read_text().splitlines()]
    assert sorted(r["trial"] for r in journal) == list(EXPECTED)
    assert {r["trial"]: r["status"] for r in journal} == {t: s for t, (s, _) in EXPECTED.items()}
    # the plot of the ok trials was still drawn
    assert (run.dir / "run" / "y_factors.png").exists()


def test_in_process_timeout_fails_the_trial(tmp_path, write_study):
    (tmp_path / "slow.py").write_text(textwrap.dedent("""
        import time

        def evaluate(x):
            if x > 2:
                time.sleep(4)
            return {"y": x + 1}
    """))
    study = write_study("""
        study: slow
        executor: {local: {timeout: 0.5}}
        stages:
          doe:
            task: doe
            design: {full-factorial: {levels: 3}}
            space: {x: {low: 1, high: 3}}
            evaluate: {python: {function: "slow:evaluate", outputs: [y]}}
        """)
    run = run_study(load_study(study), tmp_path / "runs", quiet=True)
    trials = _trials(run, "doe")
    status = dict(zip(trials["x"].values.tolist(), trials["status"].values.tolist(), strict=True))
    assert status == {1.0: "ok", 2.0: "ok", 3.0: "failed"}
    failed = trials.sel(trial=trials["status"] == "failed")
    assert "timeout" in str(failed["error"].values[0])
    assert sorted(trials["y"].values[trials["status"].values == "ok"].tolist()) == [2.0, 3.0]


def test_batch_python_evaluator_failures(tmp_path, write_study):
    (tmp_path / "vec.py").write_text(textwrap.dedent("""
        import numpy as np

        def evaluate(ds):
            y = ds["x"].values * 10.0
            y[ds["x"].values > 4.5] = np.nan
            return ds.assign(y=("trial", y))

        def broken(ds):
            raise RuntimeError("the whole batch broke")
    """))
    _cases_csv(tmp_path / "cases.csv", 8)
    study = write_study("""
        study: batch
        stages:
          cases:
            task: data
            source: {csv: {path: cases.csv}}
          vec:
            task: evaluate
            data: cases
            inputs: [x]
            evaluate: {python: {function: "vec:evaluate", batch: true, outputs: [y]}}
          broken:
            task: evaluate
            data: cases
            evaluate: {python: {function: "vec:broken", batch: true, outputs: [y]}}
        """)
    with pytest.raises(TrialsFailed) as err:  # every evaluation of the last stage failed: it fails, and says why
        run_study(load_study(study), tmp_path / "runs", quiet=True)
    run_dir = next((tmp_path / "runs" / "batch").iterdir())
    trials = read_dataset(run_dir / "vec" / "trials.nc")
    x = trials["x"].values
    ok = trials["status"].values == "ok"
    assert ok.tolist() == (x <= 4.5).tolist()
    np.testing.assert_allclose(trials["y"].values[ok], x[ok] * 10.0)
    assert all("nan" in str(e) and "vec.py:4)" in str(e) for e in trials["error"].values[~ok])

    message = str(err.value)
    assert "stage 'broken': all 8 evaluations failed" in message
    assert "8 x" in message and "RuntimeError: the whole batch broke" in message and "vec.py:10)" in message
    broken = TrialJournal(run_dir / "broken" / "trials.jsonl").read()
    assert len(broken) == 8 and {r["status"] for r in broken} == {"failed"}
    manifest = read_manifest(run_dir)
    assert manifest["stages"]["vec"]["status"] == "done" and manifest["stages"]["broken"]["status"] == "failed"


SIM = '''
import json
import sys
import time

inputs = json.load(open(sys.argv[1]))
case = int(inputs["case"])
if case == 1:
    print("solver diverged", file=sys.stderr)
    sys.exit(3)
if case == 2:
    sys.exit(0)  # no outputs.json
if case == 3:
    time.sleep(30)
if case == 4:
    open(sys.argv[2], "w").write("{not json")
    sys.exit(0)
json.dump({"y": inputs["x"] * 3}, open(sys.argv[2], "w"))
'''


def test_command_evaluator_failures(tmp_path, write_study):
    (tmp_path / "sim.py").write_text(SIM)
    _cases_csv(tmp_path / "cases.csv", 6)
    # sim.py is given relative to the study, as a user writes it; the program runs in each trial's folder
    study = write_study(f"""
        study: command
        stages:
          cases:
            task: data
            source: {{csv: {{path: cases.csv}}}}
          run:
            task: evaluate
            data: cases
            evaluate:
              command:
                argv: [{json.dumps(sys.executable)}, sim.py, "{{inputs}}", "{{outputs}}"]
                timeout: 1.5
                outputs: [y]
                keep: true
        """)
    t0 = time.time()
    run = run_study(load_study(study), tmp_path / "runs", quiet=True)
    assert time.time() - t0 < 20, "the sleeping command was not killed at its timeout"
    trials = _trials(run, "run")
    status = trials["status"].values.tolist()
    errors = [str(e) for e in trials["error"].values]
    assert status == ["ok", "failed", "failed", "failed", "failed", "ok"], errors
    assert trials["y"].values[0] == 3 * 1.5 and trials["y"].values[5] == 3 * 4.0
    assert "exited with code 3" in errors[1] and "solver diverged" in errors[1]
    assert "outputs.json" in errors[2] and "no" in errors[2]
    assert "timed out" in errors[3] and "1.5" in errors[3]
    assert "not valid JSON" in errors[4]
    metrics = json.loads((run.dir / "run" / "metrics.json").read_text())
    assert (metrics["ok"], metrics["failed"]) == (2, 4)
    # keep: true leaves each trial's folder, with the inputs it was given
    kept = sorted((run.dir / "run" / "evaluations").iterdir())
    assert len(kept) == 6
    given = sorted(json.loads((d / "inputs.json").read_text())["case"] for d in kept)
    assert given == [0, 1, 2, 3, 4, 5]
