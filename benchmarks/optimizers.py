"""Multi-objective optimizers head to head: reflow qnehvi / nsga2 / sobol against Optuna and Ax.

Same problems, budgets and seeds for every tool; evaluations are sequential (one point per suggestion,
except the NSGA-II variants, which need a population: 10 per generation). For each run the script records
the hypervolume of the points found after 30 and 50 evaluations as a fraction of the problem's maximum,
and the optimizer's own seconds per suggestion (time inside ask/suggest/get_next_trials and tell, not the
evaluation). Problems (all minimized here):

- BraninCurrin (2-D, 2 objectives; BoTorch's test function, reference point (18, 6), max HV 59.3601)
- DTLZ2 (6-D, 2 objectives; reference point (1.1, 1.1), max HV 1.1^2 - pi/4)
- epoxy-lab (5-D, reflow's simulated epoxy lab without noise; maximize Tg and elongation at break; the
  composition is parametrized as PES, DDS, and the TGDDM share of the remaining epoxy so that every tool
  sees the same box; the maximum HV is that of a 20 000-evaluation NSGA-II run, or anything better found).

Run:  python benchmarks/optimizers.py [--repeats 5] [--budget 50] [--problems braincurrin,dtlz2,epoxy]
                                      [--tools reflow-qnehvi,reflow-nsga2,reflow-sobol,optuna-tpe,optuna-nsga2,ax]
Needs the bench extra (pip install -e '.[bench]') for Optuna and Ax. Prints a table (medians over repeats)
and writes benchmarks/optimizers.json and benchmarks/optimizers.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
POP = 10  # NSGA-II population / generation size for the 50-evaluation budget


@dataclass
class BenchProblem:
    name: str
    names: list[str]
    low: np.ndarray
    high: np.ndarray
    fn: Callable[[np.ndarray], np.ndarray]  # (d,) -> (m,) values to minimize
    ref: np.ndarray
    max_hv: float


def branin_currin() -> BenchProblem:
    import torch
    from botorch.test_functions.multi_objective import BraninCurrin

    f = BraninCurrin()
    return BenchProblem("BraninCurrin", ["x0", "x1"], np.zeros(2), np.ones(2),
                        lambda x: f(torch.as_tensor(x, dtype=torch.double)[None]).numpy()[0],
                        np.array([18.0, 6.0]), float(f._max_hv))


def dtlz2() -> BenchProblem:
    import torch
    from botorch.test_functions.multi_objective import DTLZ2

    f = DTLZ2(dim=6, num_objectives=2)
    return BenchProblem("DTLZ2-6D", [f"x{i}" for i in range(6)], np.zeros(6), np.ones(6),
                        lambda x: f(torch.as_tensor(x, dtype=torch.double)[None]).numpy()[0],
                        np.array([1.1, 1.1]), 1.1**2 - math.pi / 4)


def epoxy() -> BenchProblem:
    from reflow.plugins.physics.epoxy import EpoxyLab

    lab = EpoxyLab(noise=0)

    def fn(x: np.ndarray) -> np.ndarray:
        pes, dds, share, temp, hours = x
        rest = 1.0 - pes - dds
        out = lab.evaluate_one({"dgeba": rest * (1 - share), "tgddm": rest * share, "dds": dds, "pes": pes,
                                "cure_temperature_c": temp, "cure_time_h": hours})
        return -np.array([out["tg_c"], out["elongation_pct"]])

    low, high = np.array([0.0, 0.15, 0.0, 150.0, 1.0]), np.array([0.2, 0.4, 1.0, 220.0, 6.0])
    ref = np.array([-100.0, 0.0])  # Tg 100 degC, elongation 0 %
    max_hv = _reference_front_hv(fn, low, high, ref)
    return BenchProblem("epoxy-lab", ["pes", "dds", "tgddm_share", "cure_temperature_c", "cure_time_h"], low, high,
                        fn, ref, max_hv)


def _reference_front_hv(fn, low, high, ref) -> float:
    """The HV of a long NSGA-II run (200 x 100) on ``fn``: the best front we know."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.optimize import minimize

    class P(Problem):
        def __init__(self):
            super().__init__(n_var=len(low), n_obj=2, xl=low, xu=high)

        def _evaluate(self, x, out, *args, **kwargs):
            out["F"] = np.array([fn(row) for row in x])

    res = minimize(P(), NSGA2(pop_size=100), ("n_gen", 200), seed=1, verbose=False)
    return hypervolume(res.F, ref)


def hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    from pymoo.indicators.hv import HV

    points = np.asarray(points, dtype=float)
    points = points[np.all(points < ref, axis=1)] if len(points) else points
    return float(HV(ref_point=ref)(points)) if len(points) else 0.0


# ---- tools: each returns (all evaluated points as (n, m) minimized values, seconds per suggestion) ----------
def run_reflow(problem: BenchProblem, optimizer: str, budget: int, seed: int):
    from reflow.evaluation import records_to_dataset
    from reflow.problem import Objective, OptimizationProblem
    from reflow.registry import get_registry
    from reflow.sampling import space_filling
    from reflow.space import ParameterSpec, Space

    space = Space.from_specs({n: ParameterSpec(low=lo, high=hi) for n, lo, hi in
                              zip(problem.names, problem.low, problem.high, strict=True)})
    objectives = [Objective(f"f{j}", "min", float(problem.ref[j])) for j in range(len(problem.ref))]
    prob = OptimizationProblem(space, objectives)
    initial = budget if optimizer == "sobol" else (POP if optimizer == "nsga2" else 5)  # Ax starts with 5 too
    batch = POP if optimizer == "nsga2" else 1
    opt = None if optimizer == "sobol" else get_registry().get(optimizer, "optimizer").cls()
    if opt is not None:
        opt.setup(prob, seed)
    t0 = time.perf_counter()
    unit = space_filling(prob, initial, seed, center=optimizer != "sobol")  # a centre run, as Ax starts
    seconds = [time.perf_counter() - t0]
    values, records = [], []

    def evaluate(points: dict[str, np.ndarray], n: int) -> list[dict]:
        recs = []
        for i in range(n):
            x = np.array([float(points[k][i]) for k in problem.names])
            f = problem.fn(x)
            values.append(f)
            recs.append({"trial": len(records) + len(recs), "inputs": {k: x[j] for j, k in enumerate(problem.names)},
                         "outputs": {f"f{j}": float(v) for j, v in enumerate(f)}, "status": "ok", "error": "",
                         "batch": len(records) // batch, "started": 0.0, "finished": 0.0})
        records.extend(recs)
        return recs

    recs = evaluate(prob.decode(unit), initial)

    class Ctx:
        device = "cpu"

    while len(records) < budget:
        n = min(batch, budget - len(records))
        t0 = time.perf_counter()
        opt.tell(records_to_dataset(recs))
        ds = opt.ask(n, Ctx())
        seconds.append((time.perf_counter() - t0) / n)
        recs = evaluate({k: ds[k].values for k in problem.names}, n)
    return np.array(values), float(np.mean(seconds[1:] if len(seconds) > 1 else seconds))


def run_optuna(problem: BenchProblem, sampler: str, budget: int, seed: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    m = len(problem.ref)
    if sampler == "tpe":
        s = optuna.samplers.TPESampler(seed=seed, multivariate=True)
    else:
        s = optuna.samplers.NSGAIISampler(seed=seed, population_size=POP)
    study = optuna.create_study(directions=["minimize"] * m, sampler=s)
    values, seconds = [], []
    for _ in range(budget):
        t0 = time.perf_counter()
        trial = study.ask()
        x = np.array([trial.suggest_float(n, lo, hi) for n, lo, hi in
                      zip(problem.names, problem.low, problem.high, strict=True)])
        seconds.append(time.perf_counter() - t0)
        f = problem.fn(x)
        values.append(f)
        t0 = time.perf_counter()
        study.tell(trial, list(map(float, f)))
        seconds[-1] += time.perf_counter() - t0
    return np.array(values), float(np.mean(seconds))


def run_ax(problem: BenchProblem, budget: int, seed: int):
    from ax import Client, RangeParameterConfig

    logging.getLogger("ax").setLevel(logging.WARNING)
    client = Client(random_seed=seed)
    client.configure_experiment(parameters=[RangeParameterConfig(name=n, bounds=(float(lo), float(hi)),
                                                                 parameter_type="float")
                                            for n, lo, hi in zip(problem.names, problem.low, problem.high,
                                                                 strict=True)])
    m = len(problem.ref)
    client.configure_optimization(objective=", ".join(f"-f{j}" for j in range(m)))
    values, seconds = [], []
    for _ in range(budget):
        t0 = time.perf_counter()
        trials = client.get_next_trials(max_trials=1)
        seconds.append(time.perf_counter() - t0)
        ((index, params),) = trials.items()
        x = np.array([params[n] for n in problem.names])
        f = problem.fn(x)
        values.append(f)
        t0 = time.perf_counter()
        client.complete_trial(trial_index=index, raw_data={f"f{j}": float(v) for j, v in enumerate(f)})
        seconds[-1] += time.perf_counter() - t0
    return np.array(values), float(np.mean(seconds))


TOOLS = {
    "reflow-qnehvi": lambda p, b, s: run_reflow(p, "qnehvi", b, s),
    "reflow-nsga2": lambda p, b, s: run_reflow(p, "nsga2", b, s),
    "reflow-sobol": lambda p, b, s: run_reflow(p, "sobol", b, s),
    "optuna-tpe": lambda p, b, s: run_optuna(p, "tpe", b, s),
    "optuna-nsga2": lambda p, b, s: run_optuna(p, "nsga2", b, s),
    "ax": lambda p, b, s: run_ax(p, b, s),
}
PROBLEMS = {"branincurrin": branin_currin, "dtlz2": dtlz2, "epoxy": epoxy}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--budget", type=int, default=50)
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--out", type=Path, default=HERE / "optimizers.json")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from reflow.device import quiet_torch_imports

    quiet_torch_imports()
    checkpoints = [c for c in (30, 50) if c <= args.budget] or [args.budget]
    results = []
    for pname in args.problems.split(","):
        problem = PROBLEMS[pname]()
        print(f"{problem.name}: max hypervolume {problem.max_hv:.5g}", flush=True)
        for tool in args.tools.split(","):
            for seed in range(args.repeats):
                values, sps = TOOLS[tool](problem, args.budget, seed)
                fractions = {c: hypervolume(values[:c], problem.ref) / problem.max_hv for c in checkpoints}
                curve = [hypervolume(values[:k], problem.ref) / problem.max_hv for k in range(1, len(values) + 1)]
                results.append({"problem": problem.name, "tool": tool, "seed": seed, "seconds_per_suggestion": sps,
                                "hv_fraction": {str(c): f for c, f in fractions.items()}, "curve": curve})
                print(f"  {tool:14s} seed {seed}: " + ", ".join(f"HV@{c} {f:.3f}" for c, f in fractions.items())
                      + f", {sps:.3f} s/suggestion", flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}, no GPU used"
    args.out.write_text(json.dumps({"machine": machine, "budget": args.budget, "results": results}, indent=1))
    table(results, checkpoints)
    plot(results, args.out.with_suffix(".png"))


def table(results: list[dict], checkpoints: list[int]) -> None:
    problems = list(dict.fromkeys(r["problem"] for r in results))
    tools = list(dict.fromkeys(r["tool"] for r in results))
    head = "| tool | " + " | ".join(f"{p} HV@{c}" for p in problems for c in checkpoints) + " | " + \
        " | ".join(f"{p} s/suggestion" for p in problems) + " |"
    print("\nmedians over seeds\n" + head)
    print("|" + "---|" * (1 + len(problems) * (len(checkpoints) + 1)))
    for tool in tools:
        cells = []
        for p in problems:
            rs = [r for r in results if r["tool"] == tool and r["problem"] == p]
            cells += [f"{np.median([r['hv_fraction'][str(c)] for r in rs]):.3f}" for c in checkpoints]
        for p in problems:
            rs = [r for r in results if r["tool"] == tool and r["problem"] == p]
            cells.append(f"{np.median([r['seconds_per_suggestion'] for r in rs]):.3f}")
        print(f"| {tool} | " + " | ".join(cells) + " |")


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(dict.fromkeys(r["problem"] for r in results))
    tools = list(dict.fromkeys(r["tool"] for r in results))
    fig, axes = plt.subplots(1, len(problems), figsize=(5 * len(problems), 4), squeeze=False)
    for ax, p in zip(axes[0], problems, strict=True):
        for tool in tools:
            curves = np.array([r["curve"] for r in results if r["tool"] == tool and r["problem"] == p])
            x = np.arange(1, curves.shape[1] + 1)
            ax.plot(x, np.median(curves, axis=0), label=tool)
            ax.fill_between(x, curves.min(axis=0), curves.max(axis=0), alpha=0.12)
        ax.set_title(p)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("hypervolume / maximum")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
