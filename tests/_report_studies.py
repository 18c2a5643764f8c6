"""A study whose middle stage fails, and a runner that keeps the failed run: shared by the report tests."""

from __future__ import annotations

from pathlib import Path

FAILING_STUDY = """
study: report-failure
description: A DOE, then a life model that asks for a factor the DOE does not have.
seed: 3
stages:
  warpage:
    task: doe
    design: {lhs: {samples: 8}}
    space:
      die_thickness_mm: {low: 0.1, high: 0.8, units: mm}
      substrate_thickness_mm: {low: 0.4, high: 1.6, units: mm}
      delta_t_k: {value: -200, units: K}
    evaluate: bilayer-warpage
    plot: [warpage_um]
  fit:
    task: train
    model: {weibull: {time: warpage_um}}
    data: warpage
    features: [no_such_factor_mm]
  field:
    task: doe
    design: {lhs: {samples: 4}}
    space:
      die_thickness_mm: {low: 0.1, high: 0.8, units: mm}
    evaluate: [{stage: fit}]
"""


def run_keeping_failures(study_path: Path, out: Path, overrides: list[str] | None = None) -> Path:
    """Run a study and return its folder, also when a stage fails (its report is written all the same)."""
    from reflow.errors import ReflowError
    from reflow.runner import execute, start_run
    from reflow.study import load_study

    run = start_run(load_study(study_path, overrides or []), out, quiet=True)
    try:
        execute(run)
    except ReflowError:
        pass  # the failing study is meant to fail
    return run.dir
