"""The predictions datasets of ``train`` and ``predict``: a model's outputs in the units of its training data.

A model predicts numbers; the units they are in are those of the variables it was trained on. ``train`` keeps
the units of the features and targets with the saved model (``units`` in its component info), so that
``predict`` labels its predictions the same way on new data that carries no truth to copy them from.
"""

from __future__ import annotations

from typing import Any

PREDICTION_COLUMNS = ("", "_mean", "_std", "_pred")
"""Suffixes of the columns that hold a target's value (``<t>``, ``<t>_mean``, ...): they share its units."""


def variable_units(data: Any, names: list[str]) -> dict[str, str]:
    """The ``units`` attr of each variable of ``names`` in ``data`` that has one."""
    return {n: str(data[n].attrs["units"]) for n in names if n in data and data[n].attrs.get("units")}


def carry_units(predictions: Any, units: dict[str, str], targets: list[str], predicted: Any = None) -> None:
    """Give every column of a target's value in ``predictions`` the target's units (in place); ``predicted``:
    the names the model produced, so that a truth copied from the data keeps the units the data gave it."""
    for t in targets:
        if not units.get(t):
            continue
        for name in (f"{t}{suffix}" for suffix in PREDICTION_COLUMNS):
            if name in predictions and (predicted is None or name in predicted):
                predictions[name].attrs["units"] = units[t]
