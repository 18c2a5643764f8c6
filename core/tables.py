"""Tabular datasets as stages pass them on: which dimension holds the rows and which variables are bookkeeping.

A data source gives rows on dim ``sample``; an evaluation or optimization gives them on dim ``trial`` with the
bookkeeping of each trial next to its inputs and outputs. Every task that reads a table asks these helpers, so
that a trials table is read the same way by ``train``, ``compare``, ``predict`` and the life-data models.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

TRIAL_COLUMNS = ("status", "error", "batch", "started", "finished", "suggest_seconds")
"""Bookkeeping variables of a trials dataset (who ran when, how it ended): never features, never outcomes."""


def row_dim(data: Any, prefer: tuple[str, ...] = ("sample", "trial")) -> str:
    """The row dimension of a tabular dataset: the first of ``prefer`` it has, else its first dimension."""
    for dim in prefer:
        if dim in data.dims:
            return dim
    return next(iter(data.dims))


def row_variables(data: Any, dim: str | None = None, numeric: bool = False, exclude: Any = ()) -> list[str]:
    """Variables with one value per row (``dim``), without the bookkeeping columns and ``exclude``;
    ``numeric``: only numbers (what a model may take as features)."""
    dim = dim or row_dim(data)
    skip = set(TRIAL_COLUMNS) | set(exclude)
    return [str(n) for n in data.data_vars if data[n].dims == (dim,) and n not in skip
            and (not numeric or data[n].dtype.kind in "fiub")]


def successful_rows(data: Any, dim: str | None = None) -> Any:
    """A trials dataset's ``ok`` rows only (failed evaluations have no outputs to learn); other tables as is."""
    dim = dim or row_dim(data)
    if "status" in data:
        return data.isel({dim: np.flatnonzero(data["status"].values == "ok")})
    return data


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value (for JSON, journals and messages: 'Z', not np.str_('Z'))."""
    return value.item() if isinstance(value, np.generic) else value


def safe_name(value: Any, empty: str = "class") -> str:
    """A value (a class label) usable in a metric key or a file name: ``"ball void"`` -> ``ball_void``."""
    return re.sub(r"[^0-9A-Za-z_]+", "_", str(value)).strip("_") or empty
