"""The box table the image sources give (``synthetic-wlp``, ``coco``): one home for its variables and their units.

A dataset's boxes are a ragged side table on dim ``box``: ``box_sample`` (the sample each box belongs to),
``box_x0``, ``box_y0``, ``box_x1``, ``box_y1`` in pixels (pixel column c spans [c, c + 1), so a box covers
``[x0, x1) x [y0, y1)``, as in COCO) and ``box_label``. The ``faster-rcnn`` detector reads exactly this form.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EDGES = (("box_x0", "left edge (pixel columns [x0, x1))"), ("box_y0", "top edge (pixel rows [y0, y1))"),
         ("box_x1", "right edge, exclusive"), ("box_y1", "bottom edge, exclusive"))


def box_variables(table: np.ndarray, labels: np.ndarray, label_description: str) -> dict[str, tuple[Any, ...]]:
    """The box table's variables, as ``(dims, values, attrs)`` for an xarray Dataset, from ``table`` (boxes, 5):
    sample index, x0, y0, x1, y1 per row, and each box's label; give the dataset the ``box`` coordinate."""
    table = np.asarray(table, dtype=np.float64).reshape(-1, 5)
    out: dict[str, tuple[Any, ...]] = {
        "box_sample": ("box", table[:, 0].astype(np.int64), {"description": "the sample each box belongs to"})}
    for k, (name, description) in enumerate(EDGES, start=1):
        out[name] = ("box", table[:, k], {"units": "px", "description": description})
    out["box_label"] = ("box", labels, {"description": label_description})
    return out
