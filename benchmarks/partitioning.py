"""Box decompositions of qLogNEHVI: BoTorch's FastNondominatedPartitioning against reflow's NumPy version.

qLogNEHVI builds one exact partition of the non-dominated space per MC sample of the baseline's outcomes (128
samples by default on spaces of more than 3 parameters). This times building ``--samples`` partitions of random
fronts of ``--points`` points with each class, checks that the cells are equal, and prints the seconds.
Fronts are standard normal points (about a third of them on the front in 3-D) and points on the positive unit
sphere (all of them on it).

Run:  OMP_NUM_THREADS=1 python benchmarks/partitioning.py [--objectives 3,4] [--points 25] [--samples 128]
"""

from __future__ import annotations

import argparse
import time
import warnings


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objectives", default="3,4", help="comma-separated numbers of objectives")
    ap.add_argument("--points", type=int, default=25)
    ap.add_argument("--samples", type=int, default=128)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    import torch
    from botorch.utils.multi_objective.box_decompositions.non_dominated import FastNondominatedPartitioning
    from reflow.plugins.optimize.partitioning import NumpyNondominatedPartitioning

    print(f"{args.samples} partitions of {args.points}-point fronts, seconds (torch threads "
          f"{torch.get_num_threads()})")
    print("| objectives | fronts | cells (mean) | BoTorch | NumPy | speed-up |")
    print("|---|---|---|---|---|---|")
    for m in (int(v) for v in args.objectives.split(",")):
        torch.manual_seed(m)
        ref = torch.full((m,), -2.0, dtype=torch.double)
        normal = [torch.randn(args.points, m, dtype=torch.double) for _ in range(args.samples)]
        sphere = [y.abs() / y.abs().norm(dim=1, keepdim=True) for y in normal]
        for name, fronts in (("normal", normal), ("sphere", sphere)):
            seconds, built = [], []
            for cls in (FastNondominatedPartitioning, NumpyNondominatedPartitioning):
                start = time.perf_counter()
                built.append([cls(ref, y) for y in fronts])
                seconds.append(time.perf_counter() - start)
            for a, b in zip(*built, strict=True):
                if not torch.equal(a.hypercell_bounds, b.hypercell_bounds):
                    raise SystemExit("the NumPy partition differs from BoTorch's")
            cells = sum(p.hypercell_bounds.shape[1] for p in built[0]) / len(fronts)
            print(f"| {m} | {name} | {cells:.0f} | {seconds[0]:.3f} | {seconds[1]:.3f} | "
                  f"{seconds[0] / seconds[1]:.1f}x |")


if __name__ == "__main__":
    main()
