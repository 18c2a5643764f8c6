"""Journals survive damage: a line that cannot be read costs that line only.

Before, one damaged line in a stage's ``trials.jsonl`` made ``--resume`` stop reading there: the finished
trials after it were evaluated again and the stage reported only the trials before it. A damaged
``asked.jsonl`` line made an optimize stage hand out trial ids that were taken.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest
from _cli import cli
from reflow.runner import run_study
from reflow.store import TrialJournal, read_dataset, read_manifest, write_json
from reflow.study import load_study

EVALUATOR = '''
import os

LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "calls.log")


def evaluate(x):
    with open(LOG, "a") as fh:
        fh.write(f"{x!r}\\n")
    return {"y": x * x}
'''

DOE = """
study: damaged
seed: 5
stages:
  doe:
    task: doe
    design: {lhs: {samples: 10}}
    space:
      x: {low: 0, high: 1}
    evaluate: {python: {function: "sim:evaluate", outputs: [y]}}
"""

OPTIMIZE = """
study: damaged-opt
seed: 5
stages:
  opt:
    task: optimize
    space:
      x: {low: 0, high: 1}
    evaluate: {python: {function: "sim:evaluate", outputs: [y]}}
    optimizer: sobol
    objectives: {y: min}
    budget: {initial: 6, evaluations: 6}
"""


def _calls(folder: Path) -> Counter:
    log = folder / "calls.log"
    return Counter(float(x) for x in log.read_text().splitlines()) if log.exists() else Counter()


def _damage(path: Path, line: int, junk: bytes) -> bytes:
    """Replace line ``line`` (1-based) of ``path`` with ``junk``; return the line it replaced."""
    lines = path.read_bytes().split(b"\n")
    old, lines[line - 1] = lines[line - 1], junk
    path.write_bytes(b"\n".join(lines))
    return old


def _as_if_killed(run_dir: Path, stage: str) -> None:
    """Put the manifest back as a run killed inside ``stage`` leaves it (the stage's outputs not yet written)."""
    manifest = read_manifest(run_dir)
    manifest["status"] = "running"
    manifest["stages"][stage].update(status="running")
    write_json(run_dir / "manifest.json", manifest)
    for path in (run_dir / stage).glob("*.nc"):
        path.unlink()


# ---- the reader -------------------------------------------------------------------------------------------


def test_a_damaged_line_is_skipped_with_a_warning_and_every_later_line_kept(tmp_path, caplog):
    journal = TrialJournal(tmp_path / "trials.jsonl")
    journal.append([{"trial": i, "status": "ok", "outputs": {"y": i / 10}} for i in range(10)])
    _damage(journal.path, 3, b'{"trial": 2, "status": "o\x00\x00\x00')  # a disk error inside the line
    _damage(journal.path, 6, b'\xff\xfe{"trial": 5}')  # not UTF-8
    _damage(journal.path, 8, b'["a hand edit"]')  # JSON, but no trial record
    with open(journal.path, "ab") as fh:
        fh.write(b'{"trial": 10, "sta')  # torn last line: a kill -9 mid-write
    with caplog.at_level(logging.WARNING, logger="reflow"):
        records = journal.read()
    assert [r["trial"] for r in records] == [0, 1, 3, 4, 6, 8, 9]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3, warnings  # the torn last line goes quietly
    assert warnings[0].startswith(f"{journal.path}, line 3: skipped, it is not valid JSON")
    assert warnings[1].startswith(f"{journal.path}, line 6: skipped, it is not UTF-8 text")
    assert warnings[2].startswith(f"{journal.path}, line 8: skipped, it is not a trial record")
    assert all("every other line is kept" in w for w in warnings)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="reflow"):
        assert journal.read() == records
    assert caplog.records == [], "each damaged line is warned about once"

    journal.append([{"trial": 10, "status": "ok"}])  # the torn tail is cut, the damage in the middle stays
    assert [r["trial"] for r in journal.read()] == [0, 1, 3, 4, 6, 8, 9, 10]
    assert journal.path.read_bytes().count(b"\n") == 11


@pytest.mark.parametrize("junk", [b"", b"   ", b"null", b'{"trial": "7"}', b'{"trial": true}', b"{}"])
def test_lines_that_are_not_trial_records(tmp_path, junk):
    journal = TrialJournal(tmp_path / "asked.jsonl")
    journal.append([{"trial": 0}, {"trial": 1}, {"trial": 2}])
    _damage(journal.path, 2, junk)
    assert [r["trial"] for r in journal.read()] == [0, 2]


# ---- a damaged line is never a reason to evaluate finished trials again ---------------------------------------


def test_resume_after_a_damaged_trials_line_evaluates_only_that_trial(tmp_path, write_study):
    (tmp_path / "sim.py").write_text(EVALUATOR)
    run = run_study(load_study(write_study(DOE)), tmp_path / "runs", quiet=True)
    first = read_dataset(run.dir / "doe" / "trials.nc")
    assert sum(_calls(tmp_path).values()) == 10
    journal = run.dir / "doe" / "trials.jsonl"
    lost = json.loads(_damage(journal, 3, b'{"trial": 2, "status": "ok", "outp#$%'))
    _as_if_killed(run.dir, "doe")

    code, text = cli("run", "--resume", run.dir, "-q")
    assert code == 0, text
    assert f"warning: {journal}, line 3: skipped, it is not valid JSON" in text, text
    calls = _calls(tmp_path)
    assert sum(calls.values()) == 11, "only the trial on the damaged line ran again"
    assert calls[lost["inputs"]["x"]] == 2
    trials = read_dataset(run.dir / "doe" / "trials.nc")
    assert trials["trial"].values.tolist() == list(range(10))
    assert trials["y"].values.tolist() == first["y"].values.tolist()
    assert json.loads((run.dir / "doe" / "metrics.json").read_text())["ok"] == 10
    assert f"{journal}, line 3: skipped" in (run.dir / "run.log").read_text()


def test_a_damaged_asked_line_hands_out_no_taken_id_and_repeats_no_trial(tmp_path, write_study):
    (tmp_path / "sim.py").write_text(EVALUATOR)
    run = run_study(load_study(write_study(OPTIMIZE)), tmp_path / "runs", quiet=True)
    folder = run.dir / "opt"
    assert sum(_calls(tmp_path).values()) == 6
    # trials 0-3 finished; 4 and 5 were asked and never finished; the asked lines of 1 (finished) and 4 are damaged
    told = folder / "trials.jsonl"
    told.write_bytes(b"".join(told.read_bytes().splitlines(keepends=True)[:4]))
    asked = folder / "asked.jsonl"
    _damage(asked, 2, b"\x00" * 40)
    lost = json.loads(_damage(asked, 5, b'{"trial": 4, "inp'))
    _as_if_killed(run.dir, "opt")
    calls_before = _calls(tmp_path)

    code, text = cli("run", "--resume", run.dir, "-q")
    assert code == 0, text
    assert f"warning: {asked}, line 2: skipped" in text and f"{asked}, line 5: skipped" in text
    trials = read_dataset(folder / "trials.nc")
    assert trials["trial"].values.tolist() == list(range(6)), "the budget exactly, no id twice"
    new = _calls(tmp_path) - calls_before
    assert sum(new.values()) == 2, "finished trials 0-3 are not evaluated again; 4 and 5 are, once"
    assert new[lost["inputs"]["x"]] == 1, "the lost initial point 4 is asked again as it was"
    assert trials["x"].values[4] == lost["inputs"]["x"]
    assert sorted(r["trial"] for r in TrialJournal(told).read()) == list(range(6))
