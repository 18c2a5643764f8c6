"""Which stage reads which other stage's data, model or values: the links between the report's sections.

The runner records what each stage reads in the manifest (``stages[name]["reads"]``, from
:func:`reflow.study.stage_reads`); the report takes the links from there. A run folder from before that was
recorded gets them from the same function, on its resolved study validated again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reflow.store import read_manifest
from reflow.study import StageRead, stage_reads

log = logging.getLogger("reflow")


@dataclass(frozen=True)
class Link:
    """Stage ``target`` reads ``what`` (``data``, ``model`` or ``value``) of stage ``source``; ``output`` names
    the output read (data) or the ``${...}`` reference (value)."""

    source: str
    target: str
    what: str
    output: str | None = None


def stage_links(run_dir: Path, manifest: dict[str, Any] | None = None) -> list[Link]:
    """Every link between the stages of the run in ``run_dir`` (its ``manifest``, when already read)."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir) if manifest is None else manifest
    reads = _recorded_reads(manifest)
    if reads is None:
        reads = _reads_of_resolved_study(run_dir)
    links = [Link(read.stage, target, read.what, read.output) for target, found in reads.items() for read in found]
    return list(dict.fromkeys(links))


def _recorded_reads(manifest: dict[str, Any]) -> dict[str, list[StageRead]] | None:
    """The reads the runner recorded, or None when the manifest predates them (or they are damaged)."""
    stages = manifest.get("stages")
    if not isinstance(stages, dict) or not stages:
        return None
    try:
        return {name: [StageRead.from_json(r) for r in info["reads"]] for name, info in stages.items()}
    except (KeyError, TypeError, AttributeError):
        return None


def _reads_of_resolved_study(run_dir: Path) -> dict[str, list[StageRead]]:
    """The reads of the run's stored study (validated again); none when it no longer validates."""
    from reflow.runner import open_run

    try:
        study = open_run(run_dir, quiet=True).study
    except Exception as exc:  # the report must still come out, without links
        log.info("report: no links between the stages (the manifest has none and the study does not validate "
                 "now: %s)", exc)
        return {}
    return stage_reads(study)
