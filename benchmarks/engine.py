"""What does reflow's evaluation engine add per trial, and does a large DOE fit in seconds and memory?

Run by hand (2 cores, other work paused or niced)::

    nice -n 10 .venv/bin/python benchmarks/engine.py                 # the README table (about 15 min)
    .venv/bin/python benchmarks/engine.py --quick                    # a smoke run at tiny sizes (seconds)
    .venv/bin/python benchmarks/engine.py --sizes 1000,100000 --executors local --no-goals

Overhead: a ``doe`` stage over three factors evaluates the closed form ``y = x1 sin(x2) + x3^2`` through the
``python`` evaluator, one call per trial (``batch: false``) and one call per 10,000 trials (``batch: true``,
``batch_size: 10000``), in process, in a process pool of 2 workers and on a Dask LocalCluster of 2 workers.
Its stage time (design,
evaluation, journal, ``trials.nc`` and plots: everything between the stage's start and end) less the time
bare numpy takes to evaluate the same function on the same points, divided by the number of trials, is the
engine's overhead per trial. Goals: the issue's cases, a ``bilayer-warpage`` DOE of 10^5 and 10^6 Latin
hypercube points, and the Sobol indices of a trained ``gp`` from about 10^5 evaluations.

Each case runs in a fresh interpreter (``--case JSON``), so its peak resident memory (``ru_maxrss`` of the
main process; worker processes not counted) is its own. Prints markdown tables; ``--out`` keeps the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

FUNCTIONS = '''
import numpy as np
import xarray as xr


def closed_form(x1, x2, x3):
    """One trial: floats in, a dict out."""
    return {"y": x1 * np.sin(x2) + x3 ** 2}


def closed_form_batch(ds):
    """One batch: a Dataset of trials in, a Dataset of outputs out."""
    x1, x2, x3 = (np.asarray(ds[n].values, dtype=float) for n in ("x1", "x2", "x3"))
    return xr.Dataset({"y": ("trial", x1 * np.sin(x2) + x3 ** 2)})
'''

BATCH = 10_000
"""Trials per call of the batched python function (the doe stage's ``batch_size``)."""

EXECUTORS = {
    "local": ("in process", "local"),
    "pool": ("process pool, 2 workers", "{local: {workers: 2}}"),
    "dask": ("Dask LocalCluster, 2 workers", "{dask: local, workers: 2}"),
}

SPACE4 = """
      die_thickness_mm: {low: 0.1, high: 0.8, units: mm}
      substrate_thickness_mm: {low: 0.4, high: 1.6, units: mm}
      substrate_cte_ppm: {low: 12, high: 18, units: ppm/K}
      length_mm: {low: 5, high: 20, units: mm}
      delta_t_k: {value: -200, units: K}"""


# ---- one case, in its own interpreter ---------------------------------------------------------------


def overhead_study(n: int, executor: str, batch: bool, batch_size: int) -> str:
    function = "functions:closed_form_batch" if batch else "functions:closed_form"
    size = f"\n            batch_size: {batch_size}" if batch else ""
    return textwrap.dedent(f"""
        study: engine-overhead
        seed: 1
        executor: {EXECUTORS[executor][1]}
        stages:
          doe:
            task: doe
            design: {{random: {{samples: {n}}}}}
            space:
              x1: {{low: 0, high: 1}}
              x2: {{low: 0, high: 3}}
              x3: {{low: -1, high: 1}}
            evaluate: {{python: {{function: "{function}", batch: {str(batch).lower()}, outputs: [y]}}}}{size}
    """)


def doe_study(n: int) -> str:
    return f"""study: engine-doe
seed: 7
stages:
  doe:
    task: doe
    design: {{lhs: {{samples: {n}}}}}
    space:{SPACE4}
    evaluate: bilayer-warpage
    plot: [warpage_um, die_interface_stress_mpa]
"""


def sobol_study(base: int, train: int) -> str:
    return f"""study: engine-sobol-gp
seed: 3
stages:
  sim:
    task: doe
    design: {{lhs: {{samples: {train}}}}}
    space:{SPACE4}
    evaluate: bilayer-warpage
  fit:
    task: train
    model: gp
    data: sim.trials
    target: warpage_um
    features: [die_thickness_mm, substrate_thickness_mm, substrate_cte_ppm, length_mm]
  sobol:
    task: sensitivity
    space:{SPACE4.replace("      delta_t_k: {value: -200, units: K}", "").rstrip()}
    evaluate: {{stage: fit}}
    samples: {base}
"""


def numpy_seconds(n: int) -> float:
    """Best of three: bare numpy evaluating the closed form on ``n`` random points."""
    import numpy as np

    x = np.random.default_rng(0).random((n, 3))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        y = x[:, 0] * np.sin(3 * x[:, 1]) + (2 * x[:, 2] - 1) ** 2
        best = min(best, time.perf_counter() - t0)
    assert y.shape == (n,)
    return best


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Run one study in this interpreter; its stage times, sizes and this process's peak memory."""
    from reflow.runner import run_study
    from reflow.study import load_study

    kind = case["kind"]
    with tempfile.TemporaryDirectory(prefix="reflow-engine-") as tmp:
        folder = Path(tmp)
        (folder / "functions.py").write_text(FUNCTIONS)
        if kind == "overhead":
            text = overhead_study(case["n"], case["executor"], case["batch"], case.get("batch_size", BATCH))
        elif kind == "doe":
            text = doe_study(case["n"])
        else:
            text = sobol_study(case["base"], case["train"])
        path = folder / "study.yaml"
        path.write_text(text)
        t0 = time.perf_counter()
        run = run_study(load_study(path), out=folder / "runs", quiet=True)
        wall = time.perf_counter() - t0
        stages = run.manifest["stages"]
        out: dict[str, Any] = {
            "wall_s": wall,
            "stage_s": {name: info.get("seconds") for name, info in stages.items()},
            "status": {name: info.get("status") for name, info in stages.items()},
            "report_bytes": (run.dir / "report.html").stat().st_size,
        }
        last = list(stages)[-1]
        trials_nc = run.dir / last / ("samples.nc" if kind == "sobol" else "trials.nc")
        out["trials_nc_bytes"] = trials_nc.stat().st_size if trials_nc.exists() else None
        metrics = json.loads((run.dir / last / "metrics.json").read_text())
        out["metrics"] = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if kind == "overhead":
        out["numpy_s"] = numpy_seconds(case["n"])
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return out


# ---- the driver ---------------------------------------------------------------------------------------


def spawn(case: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run ``case`` in a fresh interpreter; a failure or a timeout is recorded, not raised."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {**case, "error": f"over {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {**case, "error": " / ".join(tail) or f"exit {proc.returncode}"}
    return {**case, **json.loads(lines[-1]), "process_s": time.perf_counter() - t0}


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def overhead_table(rows: list[dict[str, Any]]) -> str:
    """One line per case; ``marginal`` is the extra stage time per extra trial from the next smaller size
    of the same executor and mode (the fixed start-up cost of a stage left out)."""
    lines = ["| executor | calls | trials | stage s | bare numpy s | overhead us / trial | marginal us / trial "
             "| peak RSS MiB |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    previous: dict[tuple[str, bool], dict[str, Any]] = {}
    for r in rows:
        where = EXECUTORS[r["executor"]][0]
        calls = f"one per {r.get('batch_size', BATCH):,}" if r["batch"] else "one per trial"
        if "error" in r:
            lines.append(f"| {where} | {calls} | {r['n']:,} | {r['error']} | | | | |")
            continue
        stage = r["stage_s"]["doe"]
        per = (stage - r["numpy_s"]) / r["n"] * 1e6
        before = previous.get((r["executor"], r["batch"]))
        marginal = None
        if before is not None and r["n"] > before["n"]:
            marginal = (stage - r["numpy_s"] - before["stage_s"]["doe"] + before["numpy_s"]) / (r["n"] - before["n"])
            marginal *= 1e6
        previous[(r["executor"], r["batch"])] = r
        lines.append(f"| {where} | {calls} | {r['n']:,} | {fmt(stage, 2)} | {r['numpy_s']:.5f} | {fmt(per)} | "
                     f"{fmt(marginal)} | {fmt(r['peak_rss_mib'], 0)} |")
    return "\n".join(lines)


def overhead_of(rows: list[dict[str, Any]], executor: str, batch: bool) -> tuple[float, int] | None:
    """The overhead per trial (us) of the largest successful case of ``executor`` and mode."""
    done = [r for r in rows if r["executor"] == executor and r["batch"] == batch and "error" not in r]
    if not done:
        return None
    r = max(done, key=lambda r: r["n"])
    return (r["stage_s"]["doe"] - r["numpy_s"]) / r["n"] * 1e6, r["n"]


def goals_table(rows: list[dict[str, Any]], doe: list[dict[str, Any]], sobol: dict[str, Any] | None) -> str:
    lines = ["| goal | target | measured | met |", "|---|---|---|---|"]

    def add(goal: str, target: str, measured: str, met: bool | None) -> None:
        lines.append(f"| {goal} | {target} | {measured} | {'-' if met is None else ('yes' if met else '**no**')} |")

    for r in doe:
        n = r["n"]
        limit_s, limit_mib = (5.0, None) if n <= 100_000 else (60.0, 2048.0)
        goal = f"`bilayer-warpage` DOE, {n:,} LHS points: stage (journal, trials.nc, plots)"
        target = f"< {limit_s:.0f} s" + (f", < {limit_mib / 1024:.0f} GB" if limit_mib else "")
        if "error" in r:
            add(goal, target, r["error"], False)
            continue
        stage = r["stage_s"]["doe"]
        rss = r["peak_rss_mib"]
        measured = (f"{stage:.1f} s, peak RSS {rss:,.0f} MiB; report.html {r['report_bytes'] / 1e6:.2f} MB, "
                    f"trials.nc {r['trials_nc_bytes'] / 1e6:.1f} MB; whole run {r['wall_s']:.1f} s")
        full = n in (100_000, 1_000_000)
        add(goal, target, measured, (stage < limit_s and (limit_mib is None or rss < limit_mib)) if full else None)
    for batch, limit in ((True, 20.0), (False, 200.0)):
        got = overhead_of(rows, "local", batch)
        what = "batched" if batch else "one call per trial"
        if got is not None:
            add(f"engine overhead, {what}, in process (largest n run: {got[1]:,})", f"< {limit:.0f} us / trial",
                f"{got[0]:.1f} us / trial", got[0] < limit if got[1] >= 100_000 else None)
    if sobol is not None:
        evaluations = sobol.get("metrics", {}).get("evaluations")
        goal = f"Sobol indices of a trained `gp`, {sobol['base']:,} x (4 + 2) evaluations: sensitivity stage"
        if "error" in sobol:
            add(goal, "< 15 s", sobol["error"], False)
        else:
            stage = sobol["stage_s"]["sobol"]
            extra = f" ({evaluations:,} evaluations)" if isinstance(evaluations, int) else ""
            fit = sobol["stage_s"]["fit"]
            add(goal, "< 15 s", f"{stage:.1f} s{extra}; gp fit on {sobol['train']} points {fit:.1f} s",
                stage < 15.0 if sobol["base"] * 6 >= 90_000 else None)
    return "\n".join(lines)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024**2:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    load = ", load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    return f"{os.cpu_count()} cores, {cpu}{mem}{load}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="1000,10000,100000,1000000", help="trial counts of the overhead table")
    ap.add_argument("--one-call-max", type=int, default=100_000,
                    help="largest size run one call per trial (10^6 calls take minutes)")
    ap.add_argument("--executors", default="local,pool,dask", help="any of local, pool, dask")
    ap.add_argument("--doe", default="100000,1000000", help="bilayer-warpage DOE sizes of the goals")
    ap.add_argument("--sobol", type=int, default=16384, help="Sobol base sample (evaluations: 6 x this)")
    ap.add_argument("--train", type=int, default=64, help="DOE points the gp is trained on")
    ap.add_argument("--batch-size", type=int, default=BATCH, help="trials per call when batched")
    ap.add_argument("--no-goals", action="store_true", help="only the overhead table")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, in process only: a smoke run")
    ap.add_argument("--timeout", type=float, default=900, help="seconds one case may take")
    ap.add_argument("--out", type=Path, help="write every figure as JSON here")
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return {}
    if args.quick:
        args.sizes, args.executors, args.doe, args.sobol, args.train = "300", "local", "500", 16, 12
    sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    executors = [e for e in args.executors.split(",") if e]
    unknown = set(executors) - set(EXECUTORS)
    if unknown:
        ap.error(f"unknown executors {sorted(unknown)}; use {', '.join(EXECUTORS)}")
    print(f"machine: {machine()}", flush=True)
    rows = []
    for executor in executors:
        for batch in (True, False):
            for n in sizes:
                if not batch and n > args.one_call_max:
                    continue
                case = {"kind": "overhead", "n": n, "executor": executor, "batch": batch,
                        "batch_size": args.batch_size}
                row = spawn(case, args.timeout)
                print(f"  {executor} {'batch' if batch else 'one'} {n}: "
                      f"{row.get('error') or row['stage_s']['doe']}", file=sys.stderr, flush=True)
                rows.append(row)
    doe, sobol = [], None
    if not args.no_goals:
        for n in [int(float(s)) for s in args.doe.split(",") if s]:
            doe.append(spawn({"kind": "doe", "n": n}, args.timeout))
            print(f"  doe {n}: {doe[-1].get('error') or doe[-1]['stage_s']}", file=sys.stderr, flush=True)
        sobol = spawn({"kind": "sobol", "base": args.sobol, "train": args.train}, args.timeout)
        print(f"  sobol: {sobol.get('error') or sobol['stage_s']}", file=sys.stderr, flush=True)
    print("\n" + overhead_table(rows))
    if not args.no_goals:
        print("\n" + goals_table(rows, doe, sobol))
    result = {"machine": machine(), "argv": sys.argv[1:] if argv is None else argv, "overhead": rows, "doe": doe,
              "sobol": sobol}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
