"""Fill in a CSV from ``reflow ask`` with a simulated lab, to try the ask/tell loop without a lab.

    python examples/lab_stand_in.py next.csv [--evaluator epoxy-lab] [--param noise=1]

Every row whose outputs are empty is "measured" with the evaluator (by default reflow's ``epoxy-lab``,
which adds measurement noise); the file is rewritten in place, ready for ``reflow tell``. A real lab
writes its measurements into the same columns by hand or from its instruments.
"""

from __future__ import annotations

import argparse
import csv
import re
from pathlib import Path

HEADER = re.compile(r"^\s*([^\[\]]*?)\s*(?:\[\s*([^\]]*?)\s*\])?\s*$")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("--evaluator", default="epoxy-lab")
    ap.add_argument("--param", action="append", default=[], help="evaluator param as key=value (numbers only)")
    args = ap.parse_args()
    from reflow.evaluation import run_step
    from reflow.registry import get_registry

    params = {k: float(v) for k, v in (p.split("=", 1) for p in args.param)}
    evaluator = get_registry().get(args.evaluator, "evaluator").cls(params)
    inputs = {v.name for v in evaluator.input_variables()}
    rows = list(csv.reader(args.csv.open(encoding="utf-8")))
    names = [HEADER.match(h).group(1) for h in rows[0]]
    outputs = [i for i, n in enumerate(names) if n in {v.name for v in evaluator.output_variables()}]
    filled = 0
    for row in rows[1:]:
        if any(row[i].strip() for i in outputs) or row[names.index("error")].strip():
            continue
        values = {n: float(row[i]) for i, n in enumerate(names) if n in inputs}
        measured = run_step(evaluator, values)  # inputs the CSV lacks take the evaluator's defaults
        for i in outputs:
            row[i] = f"{measured[names[i]]:.4g}"
        filled += 1
    with args.csv.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    print(f"{args.csv}: measured {filled} experiment(s) with {args.evaluator}")


if __name__ == "__main__":
    main()
