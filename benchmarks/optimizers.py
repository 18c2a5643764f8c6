"""Optimizers head to head on problems nobody tuned them for: reflow's default against Ax, Optuna TPE, BayBE, Sobol.

Each cell is one (problem, variant, tool, seed) run of ``--budget`` sequential evaluations; the scores at
30 and 50 evaluations are read from the same run. Variants: ``none`` (objectives only) and ``ref`` (the
problem's reference point given to every tool that can use it: reflow as ``reference``, Ax as objective
thresholds, Optuna as constraints; multi-objective problems only). The score is always measured against
the same reference (benchmarks/_opt_problems.py): the hypervolume as a fraction of the best known, or its
1-D analogue for one objective. Time per suggestion: every step of every tool, set-up and initial design
included, measured the same way (benchmarks/_opt_tools.py). reflow runs its default optimizer for the
problem type (qlognei / qnehvi) through the study path (validate_study, start_run, the optimize task).
A tool that raises during a run (Ax on a constrained problem with no feasible trial yet) stops there: its cell
keeps the error and is scored, at every checkpoint, on the trials it evaluated before the failure, as a user of
the tool would be left with them; the tables list such cells.

W/T/L: per problem, variant and budget, reflow against each peer, paired over seeds with the Wilcoxon
signed-rank test, one-sided each way at 0.05 (with 5 seeds that means reflow ahead, or behind, on all 5);
"T" when neither direction is significant.

Run (the full grid; resumable: cells already in --out are skipped):
  OMP_NUM_THREADS=1 nice -n 10 python benchmarks/optimizers.py --budget 100 --seeds 5 --jobs 2
  python benchmarks/optimizers.py --problems branin,zdt1 --tools reflow,sobol --seeds 1 --budget 6
  python benchmarks/optimizers.py --table-only            # the tables of an existing --out
  python benchmarks/optimizers.py --merge rerun.json      # a re-run kept apart joins --out (same cells replaced)
  touch benchmarks/optimizers.stop                         # finish the running cells, start no more
Writes benchmarks/optimizers.json (gitignored) after every cell and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _opt_problems import PROBLEM_NAMES, get_problem  # noqa: E402

TOOL_NAMES = ["reflow", "ax", "tpe", "baybe", "sobol"]
PEERS = ["ax", "tpe", "baybe", "sobol"]
LABELS = {"reflow": "reflow", "ax": "Ax", "tpe": "TPE", "baybe": "BayBE", "sobol": "Sobol"}
ALPHA = 0.05


def cell_key(problem: str, variant: str, tool: str, seed: int, budget: int) -> str:
    return f"{problem}|{variant}|{tool}|{seed}|{budget}"


def reflow_commit() -> str:
    """The last commit touching reflow's optimizer code, with '+dirty' when it has uncommitted changes."""
    root = HERE.parent
    paths = ["plugins/optimize", "plugins/tasks/optimize.py", "plugins/tasks/_optimize_loop.py",
             "plugins/tasks/_recommend.py", "plugins/tasks/_optimize_figures.py"]
    try:
        sha = subprocess.run(["git", "log", "-1", "--format=%h", "--", *paths], cwd=root, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *paths], cwd=root, capture_output=True,
                               text=True, check=True).stdout.strip()
        if dirty:  # which uncommitted state: a hash of the diff and of the untracked files
            import hashlib

            h = hashlib.sha256(subprocess.run(["git", "diff", "HEAD", "--", *paths], cwd=root, capture_output=True,
                                              check=True).stdout)
            for line in dirty.splitlines():
                if line.startswith("??"):
                    for f in sorted((root / line[3:].strip()).rglob("*.py")) if (root / line[3:].strip()).is_dir() \
                            else [root / line[3:].strip()]:
                        h.update(f.read_bytes())
            return f"{sha}+dirty:{h.hexdigest()[:8]}"
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("reflow", "botorch", "torch", "ax-platform", "optuna", "baybe", "pymoo"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def exit_with_parent(every: float = 2.0) -> None:
    """End this process (a pool worker) once its parent is gone: a benchmark killed instead of stopped with its
    stop file would otherwise leave its workers running their cells for minutes, and skew the times of whatever
    runs next on the machine."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(pool_worker: bool = True) -> None:
    if pool_worker:
        exit_with_parent()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import logging
    import warnings

    warnings.simplefilter("ignore")
    logging.disable(logging.INFO)  # Ax logs every trial at INFO; reflow's run log is not needed here
    import torch

    torch.set_num_threads(1)  # every tool on one thread, the same conditions
    try:
        from reflow.device import quiet_torch_imports

        quiet_torch_imports()
    except ImportError:
        pass


def run_cell(problem_name: str, variant: str, tool: str, seed: int, budget: int, checkpoints: list[int],
             commit: str, reflow_initial: int | None = None,
             reflow_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """One (problem, variant, tool, seed) run: scores at the checkpoints and the seconds of every step."""
    from _opt_tools import run_tool

    problem = get_problem(problem_name)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load = os.getloadavg()[0]
    out: dict[str, Any] = {"problem": problem_name, "variant": variant, "tool": tool, "seed": seed,
                           "budget": budget, "started": started, "load_start": round(load, 2),
                           "reflow_commit": commit if tool == "reflow" else None}
    if tool == "reflow" and (reflow_initial is not None or reflow_params):
        out["reflow_initial"] = reflow_initial
        out["reflow_params"] = reflow_params or None
        out["reflow_commit"] = f"{commit} ({reflow_configuration(reflow_initial, reflow_params)})"
    import _opt_tools

    _opt_tools.LAST_RECORDER = None
    try:
        rec = run_tool(tool, problem, budget, seed, variant == "ref", reflow_initial, reflow_params)
    except Exception as exc:  # a tool that fails is reported, never silently dropped
        out["error"] = f"{type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc()[-3000:]
        rec = _opt_tools.LAST_RECORDER
        if rec is None or not rec.rows:
            return out
        # the run stops at its failure: it is scored on what it evaluated, at every checkpoint (as a user of
        # the tool would be left with), and the tables say which cells these are
        out["failed_after"] = len(rec.rows)
    rows = np.array(rec.rows)
    steps = rec.step_seconds()
    failed = "error" in out
    out.update(
        evaluations=len(rows),
        score={str(c): problem.score(rows[:c]) for c in checkpoints if c <= len(rows) or failed},
        curve=[problem.score(rows[:k]) for k in range(5, len(rows) + 1, 5)],
        step_seconds=[round(s, 5) for s in steps],
        seconds_mean=float(np.mean(steps)), seconds_median=float(np.median(steps)), seconds_max=float(np.max(steps)),
        load_end=round(os.getloadavg()[0], 2), metrics=rec.metrics)
    return out


def reflow_configuration(initial: int | None, params: dict[str, Any] | None) -> str:
    """How reflow's cells were run, in words: ``the default``, or what --reflow-initial/--reflow-params changed."""
    parts = ([f"initial {initial}"] if initial is not None else []) \
        + ([f"params {json.dumps(params, sort_keys=True)}"] if params else [])
    return ", ".join(parts) or "the default"


def _save(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=0))
    tmp.replace(path)


def _seed_list(text: str) -> list[int]:
    """'5' -> 0..4; '0,3' -> [0, 3]; '2-4' -> [2, 3, 4]."""
    if "," in text:
        return [int(s) for s in text.split(",")]
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return list(range(int(text)))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--problems", default=",".join(PROBLEM_NAMES), help="comma-separated (default: all)")
    ap.add_argument("--tools", default=",".join(TOOL_NAMES), help="comma-separated: " + ",".join(TOOL_NAMES))
    ap.add_argument("--variants", default="none,ref", help="none (objectives only), ref (references given)")
    ap.add_argument("--seeds", default="5", help="a count (5: seeds 0-4), a range 2-4 or a list 0,3")
    ap.add_argument("--budget", type=int, default=100, help="evaluations per run")
    ap.add_argument("--checkpoints", default="30,50,100", help="evaluations at which runs are scored")
    ap.add_argument("--jobs", type=int, default=1, help="cells run in parallel processes")
    ap.add_argument("--out", type=Path, default=HERE / "optimizers.json")
    ap.add_argument("--order", choices=["problem", "seed"], default="problem",
                    help="problem: all seeds of a problem before the next (a partial run has whole problems); "
                         "seed: every problem at one seed before the next seed")
    ap.add_argument("--fresh", action="store_true", help="ignore the cells already in --out (default: resume)")
    ap.add_argument("--rerun-tool", default="", help="rerun this tool's cells even if present (e.g. reflow after "
                                                     "a change of its defaults)")
    ap.add_argument("--table-only", action="store_true", help="print the tables of --out and stop")
    ap.add_argument("--against", type=Path, default=None,
                    help="with --table-only: compare reflow's cells of --out with those of this earlier results "
                         "file (a copy kept before --rerun-tool reflow), paired by seed")
    ap.add_argument("--reflow-initial", type=int, default=None,
                    help="size of reflow's initial design instead of its default (an A/B of the budget split; "
                         "the cells' reflow code says so): write such cells to their own --out")
    ap.add_argument("--reflow-params", type=json.loads, default=None,
                    help='params of reflow\'s optimizer instead of its defaults, as JSON (an A/B of a default: '
                         '\'{"outcome_transform": "none"}\', \'{"num_restarts": 20, "raw_samples": 1024}\'); '
                         "write such cells to their own --out")
    ap.add_argument("--merge", type=Path, default=None,
                    help="copy every cell of this results file into --out (a cell of the same problem, variant, "
                         "tool, seed and budget is replaced), save, and print the tables: a re-run kept in a "
                         "separate file joins the grid once it is accepted")
    args = ap.parse_args(argv)
    checkpoints = sorted({int(c) for c in args.checkpoints.split(",") if int(c) <= args.budget} | {args.budget})
    data: dict[str, Any] = {"cells": {}}
    if args.out.exists() and not args.fresh:
        data = json.loads(args.out.read_text())
    if args.merge:
        merged = json.loads(args.merge.read_text())
        data.setdefault("cells", {}).update(merged.get("cells", {}))
        data.setdefault("runs", []).extend(merged.get("runs", []))
        _save(args.out, data)
        print(f"{len(merged.get('cells', {}))} cell(s) of {args.merge} merged into {args.out}")
    if args.table_only or args.merge:
        print_tables(data)
        if args.against:
            print_change(data, json.loads(args.against.read_text()))
        return data
    if args.reflow_params is not None and not isinstance(args.reflow_params, dict):
        ap.error(f"--reflow-params: {args.reflow_params!r} is not a JSON object of optimizer params")
    this = reflow_configuration(args.reflow_initial, args.reflow_params)
    other = {reflow_configuration(c.get("reflow_initial"), c.get("reflow_params"))
             for c in data.get("cells", {}).values() if c.get("tool") == "reflow"} - {this}
    if other:  # resuming would count those cells as this configuration's, or mix two in one grid
        ap.error(f"reflow as {this}: {args.out} holds reflow cells run as {', '.join(sorted(other))}; give "
                 "another --out for this configuration")
    commit = reflow_commit()
    data.setdefault("runs", []).append({
        "argv": sys.argv if argv is None else argv, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}, no GPU used",
        "load": os.getloadavg(), "versions": _versions(), "reflow_commit": commit, "jobs": args.jobs})
    data.setdefault("cells", {})
    problems, tools, seeds = args.problems.split(","), args.tools.split(","), _seed_list(args.seeds)
    todo = []
    for p in problems:  # tools interleaved within each seed: they run under the same conditions
        multi = get_problem(p).multi
        for variant in args.variants.split(","):
            if variant == "ref" and not multi:
                continue  # one objective: no threshold that every tool can take (see README)
            for seed in seeds:
                for tool in tools:
                    key = cell_key(p, variant, tool, seed, args.budget)
                    cell = data["cells"].get(key)
                    if cell and "error" not in cell and tool != args.rerun_tool:
                        continue
                    todo.append((p, variant, tool, seed))
    if args.order == "seed":  # every problem at seed 0 first, then seed 1, ...
        todo.sort(key=lambda c: c[3])  # stable: the problem order is kept within a seed
    print(f"{len(todo)} cells to run, {args.jobs} job(s); reflow optimizer code at {commit}", flush=True)

    def record(cell: dict[str, Any]) -> None:
        key = cell_key(cell["problem"], cell["variant"], cell["tool"], cell["seed"], cell["budget"])
        data["cells"][key] = cell
        _save(args.out, data)
        if "error" in cell:
            print(f"  {key}: ERROR {cell['error']}", flush=True)
        if "score" in cell:
            print(f"  {key}: " + ", ".join(f"@{c} {v:.3f}" for c, v in cell["score"].items())
                  + f"; s/step mean {cell['seconds_mean']:.3f} max {cell['seconds_max']:.2f}"
                  + f" (load {cell['load_start']})", flush=True)

    if args.jobs <= 1:
        _init_worker(pool_worker=False)
        for p, variant, tool, seed in todo:
            if args.out.with_suffix(".stop").exists():
                break
            record(run_cell(p, variant, tool, seed, args.budget, checkpoints, commit, args.reflow_initial,
                            args.reflow_params))
    else:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), initializer=_init_worker) as pool:
            pending: set[Future] = set()
            queue = list(todo)
            stop = args.out.with_suffix(".stop")  # touch it to let running cells finish and start no more
            while queue or pending:
                if stop.exists():
                    queue.clear()
                while queue and len(pending) < args.jobs:
                    p, variant, tool, seed = queue.pop(0)
                    pending.add(pool.submit(run_cell, p, variant, tool, seed, args.budget, checkpoints, commit,
                                            args.reflow_initial, args.reflow_params))
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    record(fut.result())
    print_tables(data)
    return data


# ---- statistics and tables ---------------------------------------------------------------------------
def paired(a: list[float], b: list[float]) -> tuple[str, float]:
    """'W', 'T' or 'L' for a against b over paired seeds (Wilcoxon signed-rank, one-sided each way), and the
    smaller one-sided p."""
    from scipy.stats import wilcoxon

    d = np.asarray(a) - np.asarray(b)
    d = d[np.abs(d) > 1e-12]
    if len(d) == 0:
        return "T", 1.0
    p_gt = float(wilcoxon(d, alternative="greater").pvalue)
    p_lt = float(wilcoxon(d, alternative="less").pvalue)
    if p_gt < ALPHA:
        return "W", p_gt
    if p_lt < ALPHA:
        return "L", p_lt
    return "T", min(p_gt, p_lt)


def summarize(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (problem, variant, checkpoint): medians per tool, W/T/L of reflow against each peer and
    the time ratios (mean seconds per step of reflow over the peer's, all steps of all seeds)."""
    cells = [c for c in data["cells"].values() if "score" in c]
    rows = []
    groups = dict.fromkeys((c["problem"], c["variant"], c["budget"]) for c in cells)
    for problem, variant, budget in groups:
        group = [c for c in cells if (c["problem"], c["variant"], c["budget"]) == (problem, variant, budget)]
        by_tool = {t: {c["seed"]: c for c in group if c["tool"] == t} for t in TOOL_NAMES}
        checkpoints = sorted({int(k) for c in group for k in c["score"]})
        for cp in checkpoints:
            row: dict[str, Any] = {"problem": problem, "variant": variant, "budget": budget, "at": cp, "median": {},
                                   "n": {}, "vs": {}, "time_ratio": {}}
            for t, seeds in by_tool.items():
                vals = [c["score"][str(cp)] for c in seeds.values() if str(cp) in c["score"]]
                if vals:
                    row["median"][t], row["n"][t] = float(np.median(vals)), len(vals)
            mine = by_tool["reflow"]
            row["commits"] = sorted({str(c.get("reflow_commit")) for c in mine.values()})
            for peer in PEERS:
                common = sorted(set(mine) & set(by_tool[peer]))
                if not common:
                    continue
                a = [mine[s]["score"][str(cp)] for s in common]
                b = [by_tool[peer][s]["score"][str(cp)] for s in common]
                res, p = paired(a, b)
                row["vs"][peer] = {"result": res, "p": p, "seeds": len(common)}
                ta = np.mean([x for s in common for x in mine[s]["step_seconds"]])
                tb = np.mean([x for s in common for x in by_tool[peer][s]["step_seconds"]])
                row["time_ratio"][peer] = float(ta / tb) if tb > 0 else float("inf")
            rows.append(row)
    return rows


def print_tables(data: dict[str, Any]) -> None:
    rows = summarize(data)
    if not rows:
        print("no results")
        return
    for cp in sorted({r["at"] for r in rows}):
        sel = [r for r in rows if r["at"] == cp]
        tools = [t for t in TOOL_NAMES if any(t in r["median"] for r in sel)]
        peers = [t for t in PEERS if any(t in r["vs"] for r in sel)]
        print(f"\n#### Score after {cp} evaluations (median over seeds; reflow vs peer: W/T/L, Wilcoxon p)\n")
        print("| problem | refs | seeds | " + " | ".join(LABELS[t] for t in tools) + " | "
              + " | ".join(f"vs {LABELS[p]}" for p in peers) + " | time reflow/Ax | reflow code |")
        print("|---|---|---|" + "---|" * (len(tools) + len(peers) + 2))
        for r in sel:
            med = [f"{r['median'][t]:.3f}" if t in r["median"] else "-" for t in tools]
            vs = [f"{r['vs'][p]['result']} ({r['vs'][p]['p']:.2f})" if p in r["vs"] else "-" for p in peers]
            n = min(r["n"].values())
            ratio = f"{r['time_ratio']['ax']:.2f}" if "ax" in r["time_ratio"] else "-"
            print(f"| {r['problem']} | {r['variant']} | {n} | " + " | ".join(med) + " | " + " | ".join(vs)
                  + f" | {ratio} | {', '.join(r.get('commits', []))} |")
        tally = {p: {k: sum(r["vs"].get(p, {}).get("result") == k for r in sel) for k in "WTL"} for p in peers}
        print("\ntotal W/T/L: " + "; ".join(f"vs {LABELS[p]} {t['W']}/{t['T']}/{t['L']}" for p, t in tally.items()))
    cells = [c for c in data["cells"].values() if "score" in c]
    print("\n#### Seconds per suggestion, all steps of all cells (set-up and initial design included)\n")
    print("| tool | cells | mean | median | max | reflow / tool (mean, per-problem median) |")
    print("|---|---|---|---|---|---|")
    first = [r for r in rows if r["at"] == min(x["at"] for x in rows)]
    for t in TOOL_NAMES:
        steps = [s for c in cells if c["tool"] == t for s in c["step_seconds"]]
        if not steps:
            continue
        ratios = [r["time_ratio"][t] for r in first if t in r["time_ratio"]]
        ratio = f"{np.median(ratios):.2f} (range {min(ratios):.2f}-{max(ratios):.2f})" if ratios else "-"
        print(f"| {LABELS[t]} | {sum(c['tool'] == t for c in cells)} | {np.mean(steps):.3f} | {np.median(steps):.4f} "
              f"| {np.max(steps):.2f} | {ratio} |")
    errors = [k for k, c in data["cells"].items() if "error" in c and "score" not in c]
    if errors:
        print(f"\n{len(errors)} cell(s) failed: " + ", ".join(errors[:10]))
    stopped = [f"{k} after {c['failed_after']} evaluations ({c['error'][:80]})"
               for k, c in data["cells"].items() if "error" in c and "score" in c]
    if stopped:
        print(f"\n{len(stopped)} cell(s) failed during the run and are scored on the trials before the failure: "
              + "; ".join(stopped))


def print_change(data: dict[str, Any], before: dict[str, Any], tool: str = "reflow") -> None:
    """``tool``'s cells of ``data`` against the same cells of ``before`` (an earlier results file): medians,
    W/T/L paired by seed, and the ratio of mean seconds per step (now / before), per problem-variant-checkpoint."""
    def cells(d: dict[str, Any]) -> dict[tuple, dict[str, Any]]:
        return {(c["problem"], c["variant"], c["budget"], c["seed"]): c for c in d["cells"].values()
                if c.get("tool") == tool and "score" in c}

    now, old = cells(data), cells(before)
    groups = sorted({k[:3] for k in now} & {k[:3] for k in old})
    if not groups:
        print(f"\nno {tool} cells in common")
        return
    print(f"\n#### {LABELS[tool]} now against the earlier results (paired by seed; W: now ahead)\n")
    print("| problem | refs | at | seeds | before | now | W/T/L (p) | time now/before | code before -> now |")
    print("|---|---|---|---|---|---|---|---|---|")
    tally = dict.fromkeys("WTL", 0)
    for problem, variant, budget in groups:
        seeds = sorted(s for (p, v, b, s) in now if (p, v, b) == (problem, variant, budget)
                       and (p, v, b, s) in old)
        pairs = [(now[(problem, variant, budget, s)], old[(problem, variant, budget, s)]) for s in seeds]
        for cp in sorted({k for a, b in pairs for k in a["score"] if k in b["score"]}, key=int):
            a = [x["score"][cp] for x, _ in pairs]
            b = [y["score"][cp] for _, y in pairs]
            res, p = paired(a, b)
            tally[res] += 1
            ratio = (np.mean([t for x, _ in pairs for t in x["step_seconds"]])
                     / np.mean([t for _, y in pairs for t in y["step_seconds"]]))
            codes = (sorted({str(y.get("reflow_commit")) for _, y in pairs}),
                     sorted({str(x.get("reflow_commit")) for x, _ in pairs}))
            print(f"| {problem} | {variant} | {cp} | {len(seeds)} | {np.median(b):.3f} | {np.median(a):.3f} | "
                  f"{res} ({p:.2f}) | {ratio:.2f} | {', '.join(codes[0])} -> {', '.join(codes[1])} |")
    print(f"\ntotal W/T/L: {tally['W']}/{tally['T']}/{tally['L']}")


if __name__ == "__main__":
    main()
