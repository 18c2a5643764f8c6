"""How the time per suggestion of reflow's Bayesian optimizers grows with the number of evaluations.

A cheap problem (the evaluation costs nothing), sequential asks (one point each) up to ``--evaluations``
evaluations after an 8-point Sobol design; each ask is timed as a whole and split into the GP fit and the
acquisition search. Prints, at 25/50/100/150/200 evaluations, the mean seconds of the 5 asks around that
point, and the growth exponent ``k`` of ``t ~ n^k`` between 50 and the last evaluation (``k < 1``: the cost
grows under linearly in the number of evaluations).

Problems: ``branincurrin`` (2-D, 2 objectives, ``qnehvi``) and ``hartmann6`` (6-D, 1 objective, ``qlognei``).

Run:  nice -n 10 python benchmarks/optimizer_cost.py [--problems branincurrin,hartmann6] [--evaluations 200]
                                                     [--impl path/to/bayes.py] [--json out.json]
``--impl`` loads the optimizer classes from another copy of ``plugins/optimize/bayes.py`` (e.g. an older
revision: ``git show REV:plugins/optimize/bayes.py > /tmp/bayes_old.py``) to compare before and after.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

MARKS = (25, 50, 100, 150, 200)
PROBLEMS = ("branincurrin", "hartmann6")


def problem_of(name: str):
    """(OptimizationProblem, vectorized function unit -> outputs dict, optimizer name)."""
    import torch
    from reflow.problem import Objective, OptimizationProblem
    from reflow.space import ParameterSpec, Space

    if name == "branincurrin":
        from botorch.test_functions.multi_objective import BraninCurrin

        f = BraninCurrin()
        space = Space.from_specs({f"x{i}": ParameterSpec(low=0.0, high=1.0) for i in range(2)})
        problem = OptimizationProblem(space, [Objective("branin", "min"), Objective("currin", "min")])

        def evaluate(x):
            y = f(torch.as_tensor(x, dtype=torch.double)).numpy()
            return {"branin": y[:, 0], "currin": y[:, 1]}

        return problem, evaluate, "qnehvi"
    if name == "hartmann6":
        from botorch.test_functions.synthetic import Hartmann

        f = Hartmann(dim=6)
        space = Space.from_specs({f"x{i}": ParameterSpec(low=0.0, high=1.0) for i in range(6)})
        problem = OptimizationProblem(space, [Objective("h", "min")])

        def evaluate(x):
            return {"h": f(torch.as_tensor(x, dtype=torch.double)).numpy()}

        return problem, evaluate, "qlognei"
    raise ValueError(f"unknown problem {name!r} (known: {', '.join(PROBLEMS)})")


def optimizer_classes(impl: str | None) -> dict:
    if impl is None:
        from reflow.plugins.optimize import bayes
    else:
        path = Path(impl)
        if not path.is_file():
            raise FileNotFoundError(f"--impl {impl}: no such file")
        spec = importlib.util.spec_from_file_location("bayes_impl", path)
        bayes = importlib.util.module_from_spec(spec)
        sys.modules["bayes_impl"] = bayes
        spec.loader.exec_module(bayes)
    return {"qnehvi": bayes.QNEHVI, "qlognei": bayes.QLogNEI}


def run(name: str, evaluations: int, impl: str | None, seed: int = 0) -> dict:
    """Seconds of every ask (and its fit / search parts) of one sequential run."""
    import xarray as xr
    from reflow.sampling import space_filling

    problem, evaluate, opt_name = problem_of(name)
    opt = optimizer_classes(impl)[opt_name]()
    opt.setup(problem, seed)
    timing = {"fit": 0.0, "search": 0.0}
    fit, search = opt.fit, opt.optimize

    def timed(part, fn):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                timing[part] += time.perf_counter() - t0
        return wrapper

    opt.fit, opt.optimize = timed("fit", fit), timed("search", search)

    def tell(unit, trial0):
        values = problem.decode(unit)
        out = evaluate(unit)
        n = len(unit)
        ds = xr.Dataset({**{k: ("trial", np.asarray(v, dtype=float)) for k, v in values.items()},
                         **{k: ("trial", np.asarray(v, dtype=float)) for k, v in out.items()},
                         "status": ("trial", np.array(["ok"] * n))},
                        coords={"trial": np.arange(trial0, trial0 + n)})
        opt.tell(ds)

    tell(space_filling(problem, 8, seed), 0)
    rows = []
    ctx = SimpleNamespace(device="cpu")
    for n in range(8, evaluations):
        timing.update(fit=0.0, search=0.0)
        t0 = time.perf_counter()
        ds = opt.ask(1, ctx)
        total = time.perf_counter() - t0
        unit = problem.encode({k: ds[k].values for k in problem.space.names})
        tell(unit, n)
        rows.append({"n": n, "seconds": total, "fit": timing["fit"], "search": timing["search"]})
        if (n + 1) % 25 == 0:
            print(f"  {name}: {n + 1} evaluations, last ask {total:.2f} s", file=sys.stderr, flush=True)
    return {"problem": name, "optimizer": opt_name, "impl": impl or "current", "asks": rows}


def summarize(result: dict) -> list[str]:
    asks = result["asks"]
    n = np.array([a["n"] for a in asks])
    lines = [f"{result['problem']} ({result['optimizer']}, {result['impl']}): mean seconds of the 5 asks around n "
             "(total = GP fit + acquisition search + rest)"]
    for mark in MARKS:
        sel = np.abs(n - mark) <= 2
        if not sel.any():
            continue
        pick = [asks[i] for i in np.flatnonzero(sel)]
        total, fit, search = (np.mean([a[k] for a in pick]) for k in ("seconds", "fit", "search"))
        lines.append(f"  n={mark:4d}: total {total:6.2f} s   fit {fit:6.2f} s   search {search:6.2f} s")
    lines.append(f"  max {max(a['seconds'] for a in asks):.2f} s, mean {np.mean([a['seconds'] for a in asks]):.2f} s "
                 f"over {len(asks)} asks")
    lo = np.abs(n - 50) <= 2
    hi = n >= n.max() - 4
    if lo.any() and hi.any() and n.max() > 60:
        t_lo = np.mean([asks[i]["seconds"] for i in np.flatnonzero(lo)])
        t_hi = np.mean([asks[i]["seconds"] for i in np.flatnonzero(hi)])
        k = np.log(t_hi / t_lo) / np.log((n.max() - 2) / 50)
        lines.append(f"  growth exponent k (t ~ n^k, n = 50 to {n.max() + 1}): {k:.2f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default="branincurrin,hartmann6")
    ap.add_argument("--evaluations", type=int, default=200)
    ap.add_argument("--impl", default=None, help="another bayes.py to load the optimizers from")
    ap.add_argument("--json", default=None, help="write every ask's timing here")
    args = ap.parse_args(argv)
    if args.evaluations < 10:
        print("--evaluations must be at least 10", file=sys.stderr)
        return 2
    if args.impl is not None and not Path(args.impl).is_file():
        print(f"--impl {args.impl}: no such file", file=sys.stderr)
        return 2
    logging.getLogger("reflow").setLevel(logging.ERROR)
    import torch

    torch.set_num_threads(1)
    results = []
    names = [n.strip() for n in args.problems.split(",")]
    unknown = [n for n in names if n not in PROBLEMS]
    if unknown:
        print(f"unknown problem(s) {', '.join(unknown)} (known: {', '.join(PROBLEMS)})", file=sys.stderr)
        return 2
    for name in names:
        result = run(name, args.evaluations, args.impl)
        results.append(result)
        print("\n".join(summarize(result)), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
