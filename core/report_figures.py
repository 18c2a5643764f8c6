"""A stage's figures for the report: which PNGs, in what order, their size and a caption from the file name.

The report embeds every PNG of a stage folder. It reads each image's size from the PNG header (no image
library), so the page reserves the space before the image decodes and a wide figure can span the row.
"""

from __future__ import annotations

import struct
from pathlib import Path

WIDE_FIGURE = 1.7
"""Figures at least this much wider than high span the whole row of the figure grid."""

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_CAPTION_WORDS = {
    "factors": "against each factor",
    "parity": "predicted against held-out truth",
    "probability": "probability plot",
    "convergence": "convergence",
}
"""Endings of figure names (``<variable>_<ending>.png``) and what such a figure shows."""


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's header, or None when ``data`` is not a PNG."""
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def is_wide(size: tuple[int, int]) -> bool:
    """Whether a figure of this (width, height) spans the whole row."""
    return size[0] >= WIDE_FIGURE * size[1]


def caption(path: Path) -> str:
    """A caption from a figure's file name: ``tj_c_vs_ic_a_by_age`` -> ``tj_c vs ic_a, coloured by age``."""
    stem = path.stem
    by = ""
    if "_by_" in stem:
        stem, by = stem.split("_by_", 1)
    if "_vs_" in stem:
        y, x = stem.split("_vs_", 1)
        text = f"{y} vs {x}"
    else:
        head, _, tail = stem.rpartition("_")
        if head and tail in _CAPTION_WORDS:
            text = f"{head}: {_CAPTION_WORDS[tail]}"
        else:
            text = stem.replace("_", " ")
            text = text[:1].upper() + text[1:]
    return text + (f", coloured by {by}" if by else "")


def stage_figures(folder: Path, planned: list[str] | None = None) -> list[Path]:
    """Every PNG in a stage's folder: the task's own order first (the manifest's ``plots``), then by name."""
    found = {p.name: p for p in sorted(Path(folder).glob("*.png"))}
    ordered = [found.pop(n) for n in (planned or []) if n in found]
    return ordered + list(found.values())
