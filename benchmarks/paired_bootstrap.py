"""How sure is a test-MSE ranking of train stages that share one test set? A paired, grouped bootstrap.

One split gives one test MSE per model; whether model A is really better than model B on such a small test set
(led_sam_mae: 48 LEDs) is a question of how much the ranking moves when other LEDs had been drawn. This script
reads the ``predictions.nc`` of each named train stage of one run folder, checks that they hold the same test
samples, and resamples the test *groups* (all images of one LED together, as the split kept them) with
replacement: each draw gives every stage's MSE on the same resampled LEDs, so the differences are paired.
Printed: each stage's MSE with a 95 % percentile interval, and for every pair the MSE ratio with its interval and
the share of draws in which the first stage has the lower MSE. This measures the test-set sampling noise only, not
the spread over training seeds or splits.

Run:  .venv/bin/python benchmarks/paired_bootstrap.py runs/led-sam-mae/<stamp>-<id> \\
          [--stages supervised mae cnn] [--target delta_bmax] [--group led_id] [--draws 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import NoReturn

import numpy as np
import xarray as xr
from reflow.errors import ReflowError
from reflow.runner import Run, open_run


def fail(message: str) -> NoReturn:
    """Bad input: say what is wrong and exit with 2, as the CLI does."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def load_stage(run: Run, stage: str, target: str, group: str) -> xr.Dataset:
    """A finished train stage's test predictions, through the run folder's own reader."""
    try:
        data = run.output(f"{stage}.predictions")
    except (ReflowError, OSError) as exc:
        fail(f"{run.dir}: stage '{stage}' has no predictions ({exc})")
    missing = [name for name in (target, f"{target}_mean", group) if name not in data]
    if missing:
        fail(f"{run.dir / stage}: predictions lack variable(s) {missing}")
    return data[[target, f"{target}_mean", group]].load()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder")
    parser.add_argument("--stages", nargs="+", default=["supervised", "mae", "cnn"])
    parser.add_argument("--target", default="delta_bmax")
    parser.add_argument("--group", default="led_id", help="variable whose groups are resampled together")
    parser.add_argument("--draws", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    try:
        run = open_run(args.run, quiet=True)
    except ReflowError as exc:
        fail(str(exc))
    stages = {name: load_stage(run, name, args.target, args.group) for name in args.stages}
    first = next(iter(stages.values()))
    for name, data in stages.items():
        if not np.array_equal(data["sample"].values, first["sample"].values):
            fail(f"stage '{name}' was tested on other samples than '{args.stages[0]}': not paired")

    groups, group_index = np.unique(first[args.group].values, return_inverse=True)
    squared = {name: (data[f"{args.target}_mean"].values - data[args.target].values) ** 2
               for name, data in stages.items()}
    # Per group: the sum of squared errors and the count, so a draw of groups gives the MSE over its samples.
    sums = {name: np.bincount(group_index, weights=err, minlength=len(groups)) for name, err in squared.items()}
    counts = np.bincount(group_index, minlength=len(groups))

    rng = np.random.default_rng(args.seed)
    draws = rng.integers(0, len(groups), size=(args.draws, len(groups)))
    drawn_counts = counts[draws].sum(axis=1)
    mse = {name: s[draws].sum(axis=1) / drawn_counts for name, s in sums.items()}

    print(f"{args.run}: {len(first['sample'])} test samples in {len(groups)} groups of '{args.group}', "
          f"{args.draws} draws\n")
    print(f"| stage | test MSE of {args.target} | 95 % interval |")
    print("|---|---|---|")
    for name, err in squared.items():
        low, high = np.percentile(mse[name], [2.5, 97.5])
        print(f"| {name} | {err.mean():.5f} | {low:.5f} - {high:.5f} |")
    print("\n| A vs B | MSE(A) / MSE(B) | 95 % interval | draws with A lower |")
    print("|---|---|---|---|")
    for a, b in itertools.combinations(args.stages, 2):
        ratio = mse[a] / mse[b]
        low, high = np.percentile(ratio, [2.5, 97.5])
        point = squared[a].mean() / squared[b].mean()
        print(f"| {a} vs {b} | {point:.2f} | {low:.2f} - {high:.2f} | {np.mean(mse[a] < mse[b]):.1%} |")


if __name__ == "__main__":
    main()
