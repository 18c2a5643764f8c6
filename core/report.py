"""report.html: one self-contained page per run, written for the engineer who reads the results.

The page starts with a summary (study, description, seed, device, start, total time, and every stage's
status with its key numbers), then one section per stage: its key numbers, the links to the stages it
reads from and that read from it, its error if it failed, every figure (PNG, embedded as base64), and
the full metrics table (collapsed). Everything is inline (CSS and images): the file can be mailed or
archived on its own, and it loads nothing from anywhere.

This module gathers what the page shows from the run folder and writes it; the pieces live apart:
:mod:`reflow.report_summary` (which numbers a stage shows first, units, number formats),
:mod:`reflow.report_links` (which stage reads which), :mod:`reflow.report_figures` (the figures, their size
and captions) and :mod:`reflow.report_html` (the style sheet and the page).
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

from reflow.errors import RunError
from reflow.report_figures import caption, png_size, stage_figures
from reflow.report_html import RunView, StageView, page
from reflow.report_links import Link, stage_links
from reflow.report_summary import (
    MAX_KEY_NUMBERS,
    SUMMARY_KEY_NUMBERS,
    KeyNumber,
    flat_metrics,
    format_number,
    format_value,
    key_numbers,
    units_of,
)
from reflow.stagevalues import read_used
from reflow.store import RESOLVED, StageStore, atomic_write_text, read_manifest
from reflow.units import variable_units

__all__ = [
    "MAX_KEY_NUMBERS", "REPORT", "SUMMARY_KEY_NUMBERS", "KeyNumber", "Link", "caption", "declared_units",
    "failure_notes", "flat_metrics", "format_number", "format_value", "key_numbers", "png_size", "render",
    "stage_figures", "stage_links", "stage_traceback", "units_of", "variable_units", "write_report",
]

log = logging.getLogger("reflow")

REPORT = "report.html"

_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


# ---- what a stage left behind -------------------------------------------------------------------------


def stage_traceback(run_dir: Path, stage: str) -> str:
    """The last traceback that ``run.log`` holds for ``stage``, or ``""``."""
    path = Path(run_dir) / "run.log"
    if not path.exists():
        return ""
    lines = path.read_text(errors="replace").splitlines()
    marker = f"stage {stage} failed:"
    found = ""
    for i, line in enumerate(lines):
        if _TIMESTAMP.match(line) and line.rstrip().endswith(marker):
            body = []
            for following in lines[i + 1:]:
                if _TIMESTAMP.match(following):
                    break
                body.append(following)
            found = "\n".join(body).strip()
    return found


def failure_notes(folder: Path, status: str = "done") -> list[dict[str, Any]]:
    """The warnings a stage gave about its failed evaluations (``failures.json``), to show on the page.

    A note whose verdict is ``failed`` is the stage's own error, shown as such when the stage failed.
    """
    from reflow.evaluation import read_failures

    notes = [n for n in read_failures(folder).values() if isinstance(n, dict) and n.get("message")]
    return [n for n in notes if n.get("verdict") == "warning" or status != "failed"]


def declared_units(store: StageStore, info: dict[str, Any], outputs: list[str]) -> dict[str, str]:
    """The units the stage's output variables declare: recorded in the manifest by the runner (``units``), or,
    for a stage recorded without them, read from the headers of its ``outputs`` (not their data)."""
    recorded = info.get("units")
    if isinstance(recorded, dict):
        return {str(k): str(v) for k, v in recorded.items()}
    return store.output_units(outputs)


def _metrics(store: StageStore) -> tuple[dict[str, Any], str]:
    """The stage's metrics and, when its metrics.json is damaged, what is wrong with it (shown on the page)."""
    try:
        return store.read_metrics(), ""
    except RunError as exc:
        return {}, str(exc)


def _stage_view(run_dir: Path, name: str, info: dict[str, Any]) -> StageView:
    store = StageStore(run_dir / name)
    status = str(info.get("status", ""))
    metrics, problem = _metrics(store)
    outputs = store.output_names()
    units = declared_units(store, info, outputs) if metrics else {}
    return StageView(
        name=name, info=info, metrics=metrics, metrics_problem=problem,
        numbers=key_numbers(metrics, declared=units), declared_units=units,
        notes=failure_notes(store.folder, status),
        traceback=stage_traceback(run_dir, name) if status == "failed" else "",
        used_values=read_used(store.folder), figures=stage_figures(store.folder, info.get("plots")),
        files=sorted(store.output_path(o).name for o in outputs), has_model=store.model_dir.is_dir(),
    )


def _resolved_header(run_dir: Path) -> dict[str, Any]:
    import yaml

    path = run_dir / RESOLVED
    try:
        raw = yaml.safe_load(path.read_text()) if path.exists() else {}
    except (OSError, yaml.YAMLError):
        return {}
    return raw if isinstance(raw, dict) else {}


def render(run_dir: Path) -> str:
    """The report's HTML for ``run_dir``: summary, then one section per stage, figures embedded."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    header = _resolved_header(run_dir)
    stages: dict[str, dict[str, Any]] = manifest.get("stages", {})
    return page(RunView(
        run_dir=run_dir, manifest=manifest, study=manifest.get("study") or header.get("study", ""),
        description=header.get("description", ""),
        stages=[_stage_view(run_dir, name, info) for name, info in stages.items()],
        links=stage_links(run_dir, manifest), written=time.strftime("%Y-%m-%d %H:%M:%S"),
    ))


def write_report(run_dir: Path, replot: bool = False) -> Path:
    """(Re)build ``report.html``; with ``replot`` redraw every finished stage's figures first."""
    run_dir = Path(run_dir)
    if replot:
        from reflow.runner import load_result, open_run

        run = open_run(run_dir, quiet=True)
        for name, stage in run.study.stages.items():
            if run.manifest["stages"].get(name, {}).get("status") != "done":
                continue
            stage.create_task().plot(load_result(run_dir, name, run.study), run_dir / name)
    path = run_dir / REPORT
    atomic_write_text(path, render(run_dir))
    return path
