"""Resume: a `reflow run` killed with SIGKILL mid-DOE ends, after --resume, with every point evaluated once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from _cli import REFLOW, process_env
from reflow.errors import ReflowError
from reflow.runner import resume_run, run_study
from reflow.store import StageStore, TrialJournal, read_dataset, read_manifest
from reflow.study import load_study

# One line per call, written when the call starts, so an evaluation cut off by the kill is counted too.
EVALUATOR = '''
import os
import time

LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "calls.log")


def evaluate(x, z):
    with open(LOG, "a") as fh:
        fh.write(f"{x!r}\\n")
    time.sleep(DELAY)
    return {"y": x * x + z}
'''

STUDY = """
study: resume
seed: 3
stages:
  doe:
    task: doe
    design: {lhs: {samples: 30}}
    space:
      x: {low: 0, high: 1}
      z: {low: -1, high: 1}
    batch_size: 4
    evaluate: {python: {function: "sim:evaluate", outputs: [y]}}
"""


def _write_evaluator(folder: Path, delay: float) -> Path:
    (folder / "sim.py").write_text(EVALUATOR.replace("DELAY", repr(delay)))
    return folder / "calls.log"


def _calls(log: Path) -> Counter:
    return Counter(float(line) for line in log.read_text().splitlines()) if log.exists() else Counter()


def _wait_for(predicate, timeout: float, what: str, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"reflow run ended (code {proc.returncode}) before {what}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_killed_run_resumes_without_repeating_a_finished_evaluation(tmp_path, write_study, run_cli):
    log = _write_evaluator(tmp_path, delay=0.15)
    study = write_study(STUDY)
    out = tmp_path / "runs"
    stdout = open(tmp_path / "first.out", "w")
    proc = subprocess.Popen([*REFLOW, "run", str(study), "--out", str(out), "-q"], cwd=tmp_path, stdout=stdout,
                            stderr=subprocess.STDOUT, env=process_env())
    try:
        _wait_for(lambda: len(_calls(log)) >= 10, 90, "10 evaluations", proc)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stdout.close()

    (run_dir,) = (out / "resume").iterdir()
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "running", "a killed run cannot have recorded an end"
    assert manifest["stages"]["doe"]["status"] == "running"
    assert not (run_dir / "doe" / "trials.nc").exists()

    journal = TrialJournal(run_dir / "doe" / "trials.jsonl").read()
    journaled = {r["trial"]: r for r in journal}
    assert len(journaled) == len(journal), "a trial journaled twice"
    assert 8 <= len(journaled) < 30, f"{len(journaled)} trials journaled before the kill"
    assert all(r["status"] == "ok" for r in journal)
    calls_before = _calls(log)
    for rec in journal:  # every journaled trial really ran, once
        assert calls_before[rec["inputs"]["x"]] == 1
    design_before = StageStore(run_dir / "doe").read_cache("design")  # drawn once, kept for the resume
    assert design_before is not None

    res = run_cli("run", "--resume", run_dir, "-q", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr

    manifest = read_manifest(run_dir)
    assert manifest["status"] == "done"
    assert manifest["stages"]["doe"]["status"] == "done"
    assert [h["action"] for h in manifest["history"]] == ["start", "resume"]

    trials = read_dataset(run_dir / "doe" / "trials.nc")
    assert trials["trial"].values.tolist() == list(range(30)), "every design trial exactly once"
    assert set(trials["status"].values.tolist()) == {"ok"}
    # the design was drawn once: the resumed run evaluated the same points
    np.testing.assert_array_equal(trials["x"].values, design_before["x"].values)
    np.testing.assert_allclose(trials["y"].values, trials["x"].values ** 2 + trials["z"].values)
    for tid, rec in journaled.items():  # results from before the kill are kept as they were
        assert trials["y"].values[tid] == rec["outputs"]["y"]

    # each design point evaluated exactly once, except at most the one in flight at the kill,
    # and never one that had been journaled
    calls = _calls(log)
    points = trials["x"].values.tolist()
    assert set(calls) == set(points), "calls for points outside the design"
    repeated = [x for x in points if calls[x] != 1]
    assert len(repeated) <= 1, f"re-evaluated: {[(x, calls[x]) for x in repeated]}"
    for x in repeated:
        assert calls[x] == 2
        assert x not in {r["inputs"]["x"] for r in journal}
    for rec in journal:
        assert calls[rec["inputs"]["x"]] == 1, "a finished evaluation ran again on resume"

    final_journal = TrialJournal(run_dir / "doe" / "trials.jsonl").read()
    assert sorted(r["trial"] for r in final_journal) == list(range(30))
    assert (run_dir / "report.html").exists()
    assert json.loads((run_dir / "doe" / "metrics.json").read_text())["ok"] == 30


def test_resume_of_a_finished_run_skips_every_stage(tmp_path, write_study):
    log = _write_evaluator(tmp_path, delay=0.0)
    study = write_study(STUDY.replace("samples: 30", "samples: 6"))
    run = run_study(load_study(study), tmp_path / "runs", quiet=True)
    calls = _calls(log)
    assert sum(calls.values()) == 6
    manifest = read_manifest(run.dir)
    trials_before = (run.dir / "doe" / "trials.nc").read_bytes()

    again = resume_run(run.dir, quiet=True)
    assert again.dir == run.dir
    assert _calls(log) == calls, "a finished stage was evaluated again"
    after = read_manifest(run.dir)
    assert after["status"] == "done"
    assert after["stages"]["doe"] == manifest["stages"]["doe"], "a finished stage's record changed"
    assert [h["action"] for h in after["history"]] == ["start", "resume"]
    assert (run.dir / "doe" / "trials.nc").read_bytes() == trials_before
    assert "done earlier, skipped" in (run.dir / "run.log").read_text()


def test_a_failed_later_stage_runs_again_on_resume(tmp_path, write_study):
    log = _write_evaluator(tmp_path, delay=0.0)
    study = write_study(STUDY.replace("samples: 30", "samples: 5") + textwrap.indent(textwrap.dedent("""
        post:
          task: evaluate
          data: doe.trials
          inputs: [x, y]
          evaluate: {python: {function: "post:evaluate", outputs: [w]}}
        """), "  "))
    with pytest.raises(ReflowError, match="post"):
        run_study(load_study(study), tmp_path / "runs", quiet=True)
    (run_dir,) = (tmp_path / "runs" / "resume").iterdir()
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "failed"
    assert manifest["stages"]["doe"]["status"] == "done"
    assert manifest["stages"]["post"]["status"] == "failed"
    assert "post.py" in manifest["stages"]["post"]["error"]
    doe_record = dict(manifest["stages"]["doe"])
    assert sum(_calls(log).values()) == 5
    assert manifest["stages"]["post"]["reads"] == [{"stage": "doe", "what": "data", "output": "trials"}]
    assert doe_record["reads"] == [] and doe_record["units"] == {}
    for info in manifest["stages"].values():  # a manifest written before reads were recorded
        del info["reads"]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))

    # fix the one missing piece and resume: only the failed stage runs
    (tmp_path / "post.py").write_text("def evaluate(x, y):\n    return {'w': y - x}\n")
    resume_run(run_dir, quiet=True)
    manifest = read_manifest(run_dir)
    assert manifest["status"] == "done"
    assert manifest["stages"]["post"]["status"] == "done" and manifest["stages"]["post"]["error"] is None
    assert manifest["stages"]["doe"] == doe_record, "stage doe ran again"
    assert manifest["stages"]["post"]["reads"] == [{"stage": "doe", "what": "data", "output": "trials"}]
    assert sum(_calls(log).values()) == 5
    doe = read_dataset(run_dir / "doe" / "trials.nc")
    post = read_dataset(run_dir / "post" / "trials.nc")
    assert set(post["status"].values.tolist()) == {"ok"}
    np.testing.assert_allclose(post["w"].values, doe["y"].values - doe["x"].values)


def test_journal_survives_a_torn_last_line(tmp_path):
    journal = TrialJournal(tmp_path / "trials.jsonl")
    journal.append([{"trial": 0, "status": "ok"}, {"trial": 1, "status": "ok"}])
    with open(journal.path, "a") as fh:  # a crash in the middle of writing trial 2
        fh.write('{"trial": 2, "sta')
    assert [r["trial"] for r in journal.read()] == [0, 1]
    journal.append([{"trial": 2, "status": "ok"}, {"trial": 3, "status": "failed"}])
    assert [r["trial"] for r in journal.read()] == [0, 1, 2, 3]
    assert journal.path.read_text().count("\n") == 4


def test_resume_of_a_missing_or_foreign_folder_is_a_user_error(tmp_path, run_cli):
    for target in (tmp_path / "nowhere", tmp_path):
        res = run_cli("run", "--resume", target, "-q", cwd=tmp_path)
        assert res.returncode == 2, res.stderr
        assert "not a run folder" in res.stderr and "Traceback" not in res.stderr


LIFE_STUDY = """
study: life-resume
seed: 5
stages:
  test:
    task: data
    source: {synthetic-life-test: {units: 60, shape: 3.0, scale: 3000, test_cycles: 3200}}
  life:
    task: train
    model: weibull
    data: test
"""


def test_a_life_fit_reset_and_resumed_fits_the_same_units(tmp_path, write_study):
    """The resolved study writes every default out; the life stage must still be fit on every unit after resume
    (it used to read the written-out default split as the user's and hold out 20 %)."""
    run = run_study(load_study(write_study(LIFE_STUDY)), tmp_path / "runs", quiet=True)
    before = read_manifest(run.dir)["stages"]["life"]["metrics"]
    assert before["units"] == 60 and before["test_samples"] == 0

    manifest = json.loads((run.dir / "manifest.json").read_text())
    manifest["stages"]["life"]["status"] = "pending"
    (run.dir / "manifest.json").write_text(json.dumps(manifest))
    resume_run(run.dir, quiet=True)
    after = read_manifest(run.dir)["stages"]["life"]
    assert after["status"] == "done"
    for key in ("units", "failures", "train_samples", "test_samples"):
        assert after["metrics"][key] == before[key], key
    for key in ("beta", "eta", "b10_cycles"):
        assert after["metrics"][key] == pytest.approx(before[key], rel=1e-12), key


def test_the_resolved_study_round_trips_the_train_split(tmp_path, write_study):
    """load_study(study.resolved.yaml) runs like the study it came from: no default reads as given."""
    study = load_study(write_study(LIFE_STUDY.replace(
        "    data: test\n", "    data: test\n  held:\n    task: train\n    model: weibull\n    data: test\n"
        "    split: {test: 0.25}\n")))
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(yaml.safe_dump(study.resolved(), sort_keys=False))
    again = load_study(resolved)
    assert again.resolved() == study.resolved()
    assert again.stages["life"].params.split is None  # the default: every unit of a life test
    assert again.stages["held"].params.split.test == 0.25


POF_STUDY = """
study: pof-resume
seed: 1
stages:
  doe:
    task: doe
    design: {lhs: {samples: 4}}
    space:
      shear_strain_range: {low: 0.005, high: 0.02}
    evaluate:
      engelmaier: {calibrate: {cycles_to_failure: 3000, shear_strain_range: 0.01, mean_solder_temp_c: 60,
                               cycles_per_day: 24, void_fraction: 0}}
"""


def test_the_resolved_study_round_trips_an_engelmaier_calibration(tmp_path, write_study):
    study = load_study(write_study(POF_STUDY))
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(yaml.safe_dump(study.resolved(), sort_keys=False))
    assert load_study(resolved).resolved() == study.resolved()
