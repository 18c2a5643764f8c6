"""Scores of predictions against the truth, shared by the tasks that test models (train, compare, optimize's
verify step) as ``<target>_<metric>`` keys; the numbers themselves come from :mod:`reflow.metrics`, so every
stage reports the same R2, RMSE and MAE."""

from __future__ import annotations

from typing import Any

import numpy as np
import reflow

REGRESSION_METRICS = ("r2", "rmse", "mae")
"""Per-target scores of a regression, as ``<target>_<metric>``; R2 is larger-is-better, the others smaller."""


def r2(y: Any, p: Any) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot (NaN when the truth is constant): reflow.metrics.r2."""
    from reflow.metrics import r2 as _r2

    return _r2(y, p)


def regression_scores(t: str, y: Any, p: Any) -> dict[str, float]:
    """``<t>_r2``, ``<t>_rmse`` and ``<t>_mae`` of predictions ``p`` against the truth ``y`` (reflow.metrics)."""
    from reflow.metrics import regression_metrics

    values = regression_metrics(y, p)
    return {f"{t}_{m}": float(values[m]) for m in REGRESSION_METRICS}


def scores(t: str, y: Any, p: Any, family: str) -> dict[str, float]:
    """Accuracy for classifiers and text labels, R2/RMSE/MAE for numbers."""
    if family == "classifier" or np.asarray(y).dtype.kind in "USb":
        return {f"{t}_accuracy": float(np.mean(np.asarray(y) == np.asarray(p)))}
    return regression_scores(t, y, p)


def prediction_mean(pred: Any, t: str) -> np.ndarray:
    """The predicted value of target ``t`` in a model's output (``<t>_mean``, else ``<t>`` or ``<t>_pred``)."""
    for name in (f"{t}_mean", t, f"{t}_pred"):
        if name in pred:
            return pred[name].values
    raise reflow.DataError(f"the model's predictions have no {t}_mean (has: {', '.join(map(str, pred.data_vars))})")


def declared_classes(value: Any) -> list | None:
    """The class order a data source put in a variable's attrs: a list, or the JSON text a stored run keeps
    (attrs are written to netCDF as JSON); None when there is none or it cannot be read."""
    import json

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    return list(value) if isinstance(value, (list, tuple, np.ndarray)) else None


def class_probabilities(pred: Any, t: str) -> dict[str, np.ndarray]:
    """Class probabilities a classifier predicted as ``<t>_prob_<class>``, by the class part of the name."""
    head = f"{t}_prob_"
    return {str(n)[len(head):]: np.asarray(pred[n].values, dtype=float) for n in pred.data_vars
            if str(n).startswith(head)}


def class_score_matrix(probabilities: dict[str, np.ndarray], names: list[str]) -> np.ndarray | None:
    """(n, classes) probabilities in ``names`` order, or None without probabilities for at least two classes.

    Models name the columns by the class (``chip-crack``) or by its identifier form (``chip_crack``); a class the
    model never saw in training has no column and gets probability 0 (it cannot predict it)."""
    import re

    def key(name: str) -> str:
        return re.sub(r"[^0-9A-Za-z_]+", "_", name).strip("_") or "class"

    found = {**{key(k): v for k, v in probabilities.items()}, **probabilities}
    columns = [found.get(n, found.get(key(n))) for n in names]
    present = [c for c in columns if c is not None]
    if len(present) < 2:
        return None
    return np.column_stack([c if c is not None else np.zeros_like(present[0]) for c in columns])
