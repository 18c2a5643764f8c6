"""Smoke test of benchmarks/engine.py at tiny sizes: a case runs a real study in a fresh interpreter, its
figures are consistent, the tables are built from them. No timed assertion."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

engine = pytest.importorskip("engine")


@pytest.mark.slow
def test_overhead_case_in_a_fresh_interpreter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "engine.json"
    data = engine.main(["--sizes", "40,120", "--executors", "local", "--one-call-max", "40", "--no-goals",
                        "--batch-size", "50", "--out", str(out)])
    rows = data["overhead"]
    assert [(r["n"], r["batch"]) for r in rows] == [(40, True), (120, True), (40, False)]
    for r in rows:
        assert "error" not in r, r
        assert r["status"] == {"doe": "done"}
        assert r["metrics"]["ok"] == r["metrics"]["trials"] == r["n"]
        assert r["stage_s"]["doe"] > r["numpy_s"] > 0
        assert 50 < r["peak_rss_mib"] < 4096
        assert r["report_bytes"] > 0 and r["trials_nc_bytes"] > 0
    printed = capsys.readouterr().out
    assert "| in process | one per 50 | 120 |" in printed and "| in process | one per trial | 40 |" in printed
    assert json.loads(out.read_text())["overhead"] == rows


def test_goal_cases_run_in_process() -> None:
    """The DOE goal case (a bilayer-warpage LHS) at a tiny size, and the goals table built from it."""
    doe = {"kind": "doe", "n": 60, **engine.run_case({"kind": "doe", "n": 60})}
    assert doe["status"] == {"doe": "done"} and doe["metrics"]["ok"] == 60
    assert 0 < doe["report_bytes"] < 5_000_000
    table = engine.goals_table([], [doe], None)
    assert "`bilayer-warpage` DOE, 60 LHS points" in table
    assert table.splitlines()[-1].endswith("| - |")  # not the goal's size: no verdict


def test_a_failed_case_is_recorded_not_raised() -> None:
    row = engine.spawn({"kind": "overhead", "n": 10, "executor": "nowhere", "batch": True}, timeout=120)
    assert "error" in row and "nowhere" in row["error"]
