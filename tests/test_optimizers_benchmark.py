"""Smoke test of benchmarks/optimizers.py: 2 problems x 2 tools x 1 seed x 6 evaluations, resume, paired test."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

optimizers = pytest.importorskip("optimizers")


def test_grid_runs_scores_times_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "opt.json"
    argv = ["--problems", "branin,zdt1", "--tools", "reflow,sobol", "--seeds", "1", "--budget", "6",
            "--out", str(out)]
    data = optimizers.main(argv)
    cells = data["cells"]
    # branin: one variant; zdt1 (two objectives): without and with references
    assert len(cells) == 6, sorted(cells)
    for key, cell in cells.items():
        assert "error" not in cell, (key, cell.get("traceback"))
        assert cell["evaluations"] == 6
        assert len(cell["step_seconds"]) == 6  # every step timed, the initial design too
        assert cell["seconds_max"] >= cell["seconds_mean"] >= 0
        assert 0.0 <= cell["score"]["6"] <= 1.5
    assert cells["zdt1|ref|reflow|0|6"]["reflow_commit"]
    printed = capsys.readouterr().out
    assert "| branin | none | 1 |" in printed and "vs Sobol" in printed
    assert json.loads(out.read_text())["cells"].keys() == cells.keys()
    again = optimizers.main(argv)  # resume: nothing left to run
    assert "0 cells to run" in capsys.readouterr().out
    assert again["cells"] == cells


def test_against_compares_reflow_cells_with_an_earlier_file_seed_by_seed(capsys: pytest.CaptureFixture[str]) -> None:
    def cells(scores: list[float], seconds: float) -> dict:
        return {"cells": {f"zdt1|none|reflow|{s}|30": {
            "problem": "zdt1", "variant": "none", "tool": "reflow", "seed": s, "budget": 30, "reflow_commit": "abc",
            "score": {"30": v}, "step_seconds": [seconds] * 30} for s, v in enumerate(scores)}}

    before = cells([0.80, 0.81, 0.82, 0.83, 0.84], 1.0)
    optimizers.print_change(cells([0.90, 0.91, 0.92, 0.93, 0.94], 0.5), before)
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| zdt1"))
    assert row.split(" | ")[4:8] == ["0.820", "0.920", "W (0.03)", "0.50"]  # ahead on every seed, half the time
    optimizers.print_change(before, before)
    assert "total W/T/L: 0/1/0" in capsys.readouterr().out


def test_merge_replaces_the_same_cells_and_keeps_the_rest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def cell(tool: str, seed: int, score: float) -> dict:
        return {"problem": "zdt1", "variant": "none", "tool": tool, "seed": seed, "budget": 30,
                "reflow_commit": "abc", "score": {"30": score}, "step_seconds": [0.1] * 30}

    grid, rerun = tmp_path / "grid.json", tmp_path / "rerun.json"
    grid.write_text(json.dumps({"runs": [{"argv": ["grid"]}], "cells": {
        "zdt1|none|reflow|0|30": cell("reflow", 0, 0.5), "zdt1|none|sobol|0|30": cell("sobol", 0, 0.4)}}))
    rerun.write_text(json.dumps({"runs": [{"argv": ["rerun"]}], "cells": {
        "zdt1|none|reflow|0|30": cell("reflow", 0, 0.9)}}))
    data = optimizers.main(["--out", str(grid), "--merge", str(rerun)])
    saved = json.loads(grid.read_text())
    assert saved == data
    assert saved["cells"]["zdt1|none|reflow|0|30"]["score"]["30"] == 0.9, "the re-run's cell replaces the old one"
    assert saved["cells"]["zdt1|none|sobol|0|30"]["score"]["30"] == 0.4, "cells it does not have are kept"
    assert [r["argv"] for r in saved["runs"]] == [["grid"], ["rerun"]]
    assert "| zdt1 | none | 1 | 0.900 |" in capsys.readouterr().out


def test_reflow_initial_sets_the_initial_design_and_labels_the_cells(tmp_path: Path) -> None:
    from _opt_problems import get_problem
    from _opt_tools import run_reflow

    problem = get_problem("branin")
    default = np.array(run_reflow(problem, 4, 0, False).rows)  # a tiny budget: 2 initial points
    fewer = np.array(run_reflow(problem, 4, 0, False, initial=1).rows)
    np.testing.assert_allclose(fewer[0], default[0])  # the same centre point first
    assert not np.allclose(fewer[1], default[1]), "the second point is the model's, not the design's"
    data = optimizers.main(["--problems", "branin", "--tools", "reflow", "--seeds", "1", "--budget", "4",
                            "--reflow-initial", "1", "--out", str(tmp_path / "a.json")])
    assert data["cells"]["branin|none|reflow|0|4"]["reflow_commit"].endswith("(initial 1)")
    # the same --out with the default design would resume those cells as if they were the default's
    with pytest.raises(SystemExit) as stop:
        optimizers.main(["--problems", "branin", "--tools", "reflow", "--seeds", "1", "--budget", "4",
                         "--out", str(tmp_path / "a.json")])
    assert stop.value.code == 2


def test_reflow_params_reach_the_optimizer_and_label_the_cells(tmp_path: Path) -> None:
    """--reflow-params runs reflow's optimizer with other params (an A/B of a default through the same harness):
    they reach the study, the cells say so, and such cells never resume as the default's."""
    from _opt_problems import get_problem
    from _opt_tools import run_reflow

    problem = get_problem("heavy-cantilever")  # its stress spans decades: `auto` logs it
    auto = run_reflow(problem, 10, 0, False)
    raw = run_reflow(problem, 10, 0, False, params={"outcome_transform": "none"})
    assert auto.metrics["outcome_transform_stress_mpa"] == "log"
    assert raw.metrics["outcome_transform_stress_mpa"] == "none"
    out = tmp_path / "p.json"
    argv = ["--problems", "branin", "--tools", "reflow", "--seeds", "1", "--budget", "4", "--out", str(out)]
    data = optimizers.main([*argv, "--reflow-params", '{"num_restarts": 3}'])
    cell = data["cells"]["branin|none|reflow|0|4"]
    assert cell["reflow_params"] == {"num_restarts": 3}
    assert cell["reflow_commit"].endswith('(params {"num_restarts": 3})')
    for other in ([], ["--reflow-params", '{"num_restarts": 4}'], ["--reflow-params", "[3]"]):
        with pytest.raises(SystemExit) as stop:
            optimizers.main([*argv, *other])
        assert stop.value.code == 2


def test_ask_breakdown_splits_an_ask_and_leaves_the_optimizer_unwrapped(capsys: pytest.CaptureFixture[str]) -> None:
    import ask_breakdown
    import botorch.optim.optimize as optimize_module
    import reflow.plugins.optimize.bayes as bayes

    fit, screen, limit = bayes._Bayes.fit, optimize_module.gen_batch_initial_conditions, bayes.INIT_BATCH_LIMIT
    ask_breakdown.main(["branin", "--budget", "12", "--init-batch-limit", "16"])
    out = capsys.readouterr().out
    assert "init_batch_limit 16" in out
    line = next(x for x in out.splitlines() if "seed 0" in x)
    parts = dict(p.rsplit(" ", 1) for p in line.split("= ")[1].split(" + "))
    assert set(parts) == {"gp_fit", "screen", "lbfgs", "rest"} and float(parts["gp_fit"]) > 0
    assert (bayes._Bayes.fit, optimize_module.gen_batch_initial_conditions, bayes.INIT_BATCH_LIMIT) == (
        fit, screen, limit)


def test_feasibility_lists_the_feasible_trials_of_each_seed(capsys: pytest.CaptureFixture[str]) -> None:
    import _opt_problems
    import feasibility

    feasibility.main(["tension-string", "--variant", "none", "--seeds", "0", "--budget", "9"])
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.strip().startswith("seed 0:"))
    listed = [int(i) for i in line.split("feasible trials [")[1].split("]")[0].split(",") if i.strip()]
    assert all(0 <= i < 9 for i in listed)
    problem = _opt_problems.get_problem("tension-string")
    assert f"reference {problem.ref.tolist()}" in out
    with pytest.raises(SystemExit):  # a problem without constraints is refused
        feasibility.main(["branin"])


def test_partitioning_benchmark_checks_the_cells_and_prints_both_times(capsys: pytest.CaptureFixture[str]) -> None:
    import partitioning

    partitioning.main(["--objectives", "3", "--points", "8", "--samples", "16"])  # milliseconds each
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| 3 ")]
    assert [r[1].strip() for r in rows] == ["normal", "sphere"]
    for row in rows:
        assert float(row[3]) > 0 and float(row[4]) > 0 and row[5].strip().endswith("x")


def test_paired_test_needs_every_seed_for_a_win_with_five() -> None:
    a = [0.9, 0.8, 0.85, 0.95, 0.7]
    assert optimizers.paired(a, [x - 0.1 for x in a])[0] == "W"
    assert optimizers.paired([x - 0.1 for x in a], a)[0] == "L"
    assert optimizers.paired(a, [x - 0.1 for x in a[:4]] + [0.75])[0] == "T"  # one seed the other way
    assert optimizers.paired(a, a) == ("T", 1.0)


def test_scores_are_fractions_of_the_best_known() -> None:
    from _opt_problems import get_problem

    p = get_problem("branin")
    optimum = np.array([[-np.pi, 12.275], [np.pi, 2.275]])
    assert p.score(optimum) == pytest.approx(1.0, abs=1e-4)
    assert p.score(np.array([[-5.0, 0.0]])) == 0.0  # worse than the reference
    bc = get_problem("branincurrin")
    assert 0.0 < bc.score(np.random.default_rng(0).random((200, 2))) < 1.0


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads process states from /proc")
def test_a_pool_worker_ends_when_the_benchmark_is_killed(tmp_path: Path) -> None:
    """A worker (here a child that runs exit_with_parent) outlives its killed parent by one poll at most."""
    import subprocess
    import time

    child = (f"import sys, time; sys.path.insert(0, {str(BENCH)!r}); import optimizers; "
             "optimizers.exit_with_parent(every=0.1); print('ready', flush=True); time.sleep(60)")
    parent = (f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', {child!r}], "
              "stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True); p.stdout.readline(); "
              "print(p.pid, flush=True)")
    pid = int(subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=120,
                             check=True).stdout.split()[-1])
    status = Path(f"/proc/{pid}/status")
    deadline = time.monotonic() + 10
    while status.exists() and "zombie" not in status.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not status.exists() or "zombie" in status.read_text(), f"worker {pid} still running"


def test_a_tool_that_fails_mid_run_is_scored_on_what_it_evaluated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Ax raises on a constrained problem while no trial is feasible: the run stops there, and its cell scores the
    trials before the failure (a user of the tool is left with them) instead of dropping the seed from the row."""
    import _opt_tools

    def fails_after_three(problem, budget, seed, ref):
        rec = _opt_tools.Recorder(problem)
        for x in ([-np.pi, 12.275], [0.0, 0.0], [5.0, 5.0]):
            rec({"x0": x[0], "x1": x[1]})
        raise ValueError("no feasible trial")

    def never_evaluates(problem, budget, seed, ref):
        raise RuntimeError("broken before the first trial")

    monkeypatch.setitem(_opt_tools.TOOLS, "sobol", fails_after_three)
    monkeypatch.setitem(_opt_tools.TOOLS, "tpe", never_evaluates)
    data = optimizers.main(["--problems", "branin", "--tools", "sobol,tpe", "--seeds", "1", "--budget", "6",
                            "--checkpoints", "2,6", "--out", str(tmp_path / "f.json")])
    cell = data["cells"]["branin|none|sobol|0|6"]
    assert cell["error"] == "ValueError: no feasible trial" and cell["failed_after"] == 3
    assert cell["evaluations"] == 3 and len(cell["step_seconds"]) == 3
    assert cell["score"]["6"] == pytest.approx(1.0, abs=1e-4)  # its optimum, found before the failure, counts
    assert cell["score"]["2"] == cell["score"]["6"]
    assert "score" not in data["cells"]["branin|none|tpe|0|6"]
    out = capsys.readouterr().out
    assert "branin|none|sobol|0|6 after 3 evaluations (ValueError: no feasible trial)" in out
    assert "1 cell(s) failed: branin|none|tpe|0|6" in out
    assert "| branin | none | 1 | 1.000 |" in out  # the failed cell's score is in the table
