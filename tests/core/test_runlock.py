"""One writer per run folder: ``run``, ``run --resume``, ``ask`` and ``tell`` hold a lock for their whole work.

Before the lock, ``reflow run --resume`` of a run that was still running evaluated the remaining points a
second time (a 40-point DOE ended with 66 trials) and two ``reflow ask`` handed out the same trial ids. The
subprocess tests below hold the running DOE at its first evaluation with a gate file, so what they check does
not depend on timing; each takes a few seconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _cli import REFLOW, cli, process_env
from reflow.errors import RunError, UserInputError
from reflow.store import LOCK_HOLDER, RunFolderBusy, RunLock, TrialJournal, lock_run, read_dataset, read_manifest

TRIALS = 12

# Waits while the file "gate" next to it exists (at most 60 s), so the test decides when the run goes on.
EVALUATOR = '''
import os
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def evaluate(x):
    open(os.path.join(HERE, "started"), "a").close()
    deadline = time.time() + 60
    while os.path.exists(os.path.join(HERE, "gate")) and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.01)
    return {"y": x * x}
'''

STUDY = f"""
study: locked
seed: 1
stages:
  doe:
    task: doe
    design: {{lhs: {{samples: {TRIALS}}}}}
    space:
      x: {{low: 0, high: 1}}
    evaluate: {{python: {{function: "gated:evaluate", outputs: [y]}}}}
"""


def _wait_for(predicate, what: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"reflow run ended (code {proc.returncode}) before {what}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def gated_run(tmp_path):
    """``reflow run`` of a 12-point DOE in a subprocess, held at its first evaluation: (process, run folder)."""
    (tmp_path / "gated.py").write_text(EVALUATOR)
    (tmp_path / "study.yaml").write_text(STUDY)
    (tmp_path / "gate").touch()
    out = open(tmp_path / "run.out", "w")
    proc = subprocess.Popen([*REFLOW, "run", "study.yaml", "--out", "runs", "-q"], cwd=tmp_path, stdout=out,
                            stderr=subprocess.STDOUT)
    try:
        _wait_for(lambda: (tmp_path / "started").exists(), "the first evaluation", proc)
        (run_dir,) = (tmp_path / "runs" / "locked").iterdir()
        yield proc, run_dir
    finally:
        (tmp_path / "gate").unlink(missing_ok=True)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        out.close()


def _trial_ids(run_dir: Path) -> list[int]:
    return [r["trial"] for r in TrialJournal(run_dir / "doe" / "trials.jsonl").read()]


def test_resume_ask_tell_and_report_of_a_running_run_are_refused_and_show_works(gated_run, tmp_path):
    proc, run_dir = gated_run
    commands = {"run --resume": ["run", "--resume", str(run_dir), "-q"],
                "ask": ["ask", str(run_dir), "--stage", "doe"],
                "tell": ["tell", str(run_dir), str(tmp_path / "results.csv"), "--stage", "doe"],
                "report": ["report", str(run_dir)]}
    env = process_env()
    others = {name: subprocess.Popen([*REFLOW, *args], cwd=tmp_path, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env) for name, args in commands.items()}
    for name, other in others.items():
        stdout, stderr = other.communicate(timeout=120)
        err = " ".join(stderr.split())
        assert other.returncode == 2, (name, stdout, stderr)
        assert f"run folder {run_dir} is in use by `reflow run` (PID {proc.pid}, since " in err, (name, err)
        assert "One command at a time writes to a run folder" in err and "Traceback" not in err
    assert proc.poll() is None, "the running run goes on"
    assert [h["action"] for h in read_manifest(run_dir)["history"]] == ["start"], "the resume wrote to it"
    assert not (run_dir / "report.html").exists(), "the refused report wrote one"
    code, text = cli("show", run_dir)  # a reader: no lock needed
    assert code == 0 and "running" in text, text

    (tmp_path / "gate").unlink()
    assert proc.wait(timeout=120) == 0, (tmp_path / "run.out").read_text()
    assert _trial_ids(run_dir) == list(range(TRIALS)), "each trial exactly once"
    trials = read_dataset(run_dir / "doe" / "trials.nc")
    assert trials["trial"].values.tolist() == list(range(TRIALS))
    assert read_manifest(run_dir)["status"] == "done"
    assert not (run_dir / LOCK_HOLDER).exists(), "a finished run leaves no holder record"
    code, text = cli("run", "--resume", run_dir, "-q")  # free again: a resume of the finished run works
    assert code == 0 and "warning" not in text, text
    report = run_dir / "report.html"
    report.unlink()
    code, text = cli("report", run_dir)
    assert code == 0 and report.exists() and not (run_dir / LOCK_HOLDER).exists(), text


def test_a_killed_runs_lock_is_taken_over_with_a_warning(gated_run, tmp_path):
    proc, run_dir = gated_run
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    holder = json.loads((run_dir / LOCK_HOLDER).read_text())
    assert holder["pid"] == proc.pid and holder["command"] == "reflow run"
    (tmp_path / "gate").unlink()
    code, text = cli("run", "--resume", run_dir, "-q")
    assert code == 0, text
    assert (f"warning: run folder {run_dir}: taking over the lock left by `reflow run` (PID {proc.pid}, since "
            f"{holder['since']}); that command ended without releasing it (killed?)") in text, text
    assert _trial_ids(run_dir) == list(range(TRIALS))
    assert read_manifest(run_dir)["status"] == "done"
    assert not (run_dir / LOCK_HOLDER).exists()


# ---- the lock itself ---------------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path) -> Path:
    """A folder that passes for a run folder (the lock needs only its manifest)."""
    (tmp_path / "manifest.json").write_text("{}")
    return tmp_path


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_second_writer_is_refused_with_the_holder_named(folder):
    with RunLock(folder, "reflow ask --stage lab") as lock:
        assert lock.held
        holder = json.loads((folder / LOCK_HOLDER).read_text())
        assert holder["pid"] == os.getpid() and holder["command"] == "reflow ask --stage lab"
        with pytest.raises(RunFolderBusy) as info:
            lock_run(folder, "reflow run --resume")
        assert info.value.exit_code == 2 and isinstance(info.value, UserInputError)
        assert (f"is in use by `reflow ask --stage lab` (PID {os.getpid()}, since {holder['since']}). One command "
                "at a time writes to a run folder, so `reflow run --resume` changed nothing") in str(info.value)
    assert not lock.held and not (folder / LOCK_HOLDER).exists()
    lock_run(folder, "reflow run --resume").release()  # free again


def test_a_lock_record_with_a_dead_pid_is_taken_over_with_a_warning(folder, caplog):
    pid = _dead_pid()
    (folder / LOCK_HOLDER).write_text(json.dumps({"command": "reflow tell --stage lab", "pid": pid,
                                                  "host": socket.gethostname(), "since": "2026-01-02T03:04:05+0000"}))
    with caplog.at_level("WARNING", logger="reflow"):
        lock = lock_run(folder, "reflow ask --stage lab")
    assert lock.held
    assert (f"taking over the lock left by `reflow tell --stage lab` (PID {pid}, since 2026-01-02T03:04:05+0000)"
            in caplog.text)
    assert json.loads((folder / LOCK_HOLDER).read_text())["pid"] == os.getpid()
    lock.release()


def test_a_lock_still_held_by_a_child_of_a_dead_holder_is_not_taken(folder):
    """The OS lock outlives its holder only in a process the holder started (a forked worker): refuse and say so."""
    child = subprocess.Popen([sys.executable, "-c", "import sys, time, filelock; "
                              f"lock = filelock.FileLock({str(folder / 'run.lock')!r}); lock.acquire(); "
                              "print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        pid = _dead_pid()
        (folder / LOCK_HOLDER).write_text(json.dumps({"command": "reflow run", "pid": pid,
                                                      "host": socket.gethostname(), "since": "then"}))
        with pytest.raises(RunFolderBusy, match=f"PID {pid} has ended but a process it started still holds the lock"):
            lock_run(folder, "reflow run --resume")
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    lock_run(folder, "reflow run --resume").release()  # the child is gone: the lock is free


def test_only_a_run_folder_is_locked(tmp_path):
    for target in (tmp_path / "nowhere", tmp_path):
        with pytest.raises(UserInputError, match="not a run folder"):
            lock_run(target, "reflow run --resume")
    assert list(tmp_path.iterdir()) == [], "no lock file left in a folder that is not a run folder"


def test_a_holder_without_a_record_is_waited_for_briefly_then_refused(folder):
    from filelock import FileLock

    raw = FileLock(str(folder / "run.lock"), timeout=0)
    with raw:  # a holder that has not written its record (yet)
        t0 = time.monotonic()
        with pytest.raises(RunFolderBusy, match="in use by another reflow command"):
            lock_run(folder, "reflow ask --stage lab")
        assert 0.9 < time.monotonic() - t0 < 5
    lock_run(folder, "reflow ask --stage lab").release()


def test_a_folder_that_cannot_be_locked_is_a_clean_error(folder):
    (folder / "run.lock").mkdir()  # not a file: the lock cannot be opened
    with pytest.raises(RunError, match=f"cannot lock the run folder {folder} for `reflow run --resume`"):
        lock_run(folder, "reflow run --resume")
