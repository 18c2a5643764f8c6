"""Where the time of one of reflow's Bayesian asks goes: GP fit, raw-sample screen, L-BFGS-B, the rest.

Runs reflow's default optimizer on a problem of ``benchmarks/optimizers.py`` through the study path (the same
harness, ``_opt_tools.run_reflow``), times the three parts of every ask by wrapping them, and prints per seed
the score at the budget, the mean seconds per step (every step, as the benchmark counts them) and the mean
seconds per step of each part. ``--init-batch-limit`` and ``--warm-fit-maxiter`` override the constants of
``plugins/optimize/bayes.py`` for an A/B on the same trials (the score says whether the asked points changed).

Run:  OMP_NUM_THREADS=1 python benchmarks/ask_breakdown.py zdt1 [--variant none] [--seeds 0]
                                                                [--budget 30] [--init-batch-limit 8]
On mixed spaces the screen and L-BFGS-B of ``optimize_mixed_at_once`` count under "screen" and "lbfgs" alike.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _timed(owner, name: str, key: str, totals: Counter):
    """Wrap ``owner.name`` so its time adds to ``totals[key]``; returns the function that unwraps it."""
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            totals[key] += time.perf_counter() - start

    setattr(owner, name, wrapper)
    return lambda: setattr(owner, name, inner)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("problem")
    ap.add_argument("--variant", default="none", choices=["none", "ref"])
    ap.add_argument("--seeds", default="0", help="comma-separated")
    ap.add_argument("--budget", type=int, default=30)
    ap.add_argument("--init-batch-limit", type=int, default=None)
    ap.add_argument("--warm-fit-maxiter", type=int, default=None)
    ap.add_argument("--params", type=json.loads, default=None, help='optimizer params as JSON ({"raw_samples": 1024})')
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    import _opt_tools
    import botorch.generation.gen as gen_module
    import botorch.optim.initializers as initializers_module
    import botorch.optim.optimize as optimize_module
    import reflow.plugins.optimize.bayes as bayes
    from _opt_problems import get_problem

    constants = bayes.INIT_BATCH_LIMIT, bayes.WARM_FIT_MAXITER
    if args.init_batch_limit is not None:
        bayes.INIT_BATCH_LIMIT = args.init_batch_limit
    if args.warm_fit_maxiter is not None:
        bayes.WARM_FIT_MAXITER = args.warm_fit_maxiter
    totals: Counter = Counter()
    unwrap = [_timed(optimize_module, "gen_batch_initial_conditions", "screen", totals),
              _timed(optimize_module, "gen_candidates_scipy", "lbfgs", totals),
              # the mixed search imports these two from their own modules at call time
              _timed(initializers_module, "gen_batch_initial_conditions", "screen", totals),
              _timed(gen_module, "gen_candidates_scipy", "lbfgs", totals),
              _timed(bayes._Bayes, "fit", "gp_fit", totals)]
    try:
        problem = get_problem(args.problem)
        ref = args.variant == "ref"
        _opt_tools.run_reflow(problem, 10, 99, ref)  # imports and first-use costs outside the timed runs
        print(f"{args.problem} {args.variant}: init_batch_limit {bayes.INIT_BATCH_LIMIT}, "
              f"warm_fit_maxiter {bayes.WARM_FIT_MAXITER}, params {args.params}")
        for seed in (int(s) for s in args.seeds.split(",")):
            totals.clear()
            record = _opt_tools.run_reflow(problem, args.budget, seed, ref, params=args.params)
            score = problem.score(np.array(record.rows)[:args.budget])
            steps = record.step_seconds()
            parts = {k: totals[k] / len(steps) for k in ("gp_fit", "screen", "lbfgs")}
            rest = np.mean(steps) - sum(parts.values())
            print(f"  seed {seed}: score {score:.4f}; s per step {np.mean(steps):.3f} = "
                  + " + ".join(f"{k} {v:.3f}" for k, v in parts.items()) + f" + rest {rest:.3f}", flush=True)
    finally:
        for undo in unwrap:
            undo()
        bayes.INIT_BATCH_LIMIT, bayes.WARM_FIT_MAXITER = constants

if __name__ == "__main__":
    main()
