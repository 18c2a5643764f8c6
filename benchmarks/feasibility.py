"""Which of reflow's trials on a constrained benchmark problem were feasible, and which beat the reference.

A score of 0 on a constrained problem can mean that no trial was feasible or that no feasible trial beat the
reference (the hypervolume's bound, with references given also the target reflow steers to). This prints, per
seed, the trials that met every constraint, those that also beat the reference, the best feasible value of each
objective and the share of trials violating each constraint (noise-free values, as the score reads them).

Run:  OMP_NUM_THREADS=1 python benchmarks/feasibility.py weldedbeam [--variant ref] [--seeds 0,2] [--budget 30]
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("problem")
    ap.add_argument("--variant", default="ref", choices=["none", "ref"])
    ap.add_argument("--seeds", default="0", help="comma-separated")
    ap.add_argument("--budget", type=int, default=30)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    logging.disable(logging.INFO)

    import _opt_tools
    from _opt_problems import get_problem

    problem = get_problem(args.problem)
    if not problem.constraints:
        ap.error(f"{args.problem} has no constraints")
    m = len(problem.objectives)
    print(f"{args.problem} {args.variant}: reference {problem.ref.tolist()}, constraints {problem.constraints}")
    for seed in (int(s) for s in args.seeds.split(",")):
        rows = np.array(_opt_tools.run_reflow(problem, args.budget, seed, args.variant == "ref").rows)[:args.budget]
        y = problem.true_values(rows)
        feasible = np.all(y[:, m:] >= 0, axis=1)
        beyond = feasible & np.all(y[:, :m] < problem.ref, axis=1)
        best = np.round(y[feasible, :m].min(axis=0), 4).tolist() if feasible.any() else None
        print(f"  seed {seed}: score {problem.score(rows):.3f}; feasible trials {np.flatnonzero(feasible).tolist()}; "
              f"beating the reference {np.flatnonzero(beyond).tolist()}; best feasible objectives {best}; "
              f"share violating each constraint {np.round((y[:, m:] < 0).mean(axis=0), 2).tolist()}", flush=True)


if __name__ == "__main__":
    main()
