"""Scores of predictions against held-out truth, and the figures that show them (scikit-learn underneath).

- :func:`regression_metrics`: MSE, RMSE, MAE, R2 of a continuous prediction;
- :func:`threshold_metrics`: a continuous target judged at a threshold (``delta_bmax > 0.2`` is defective):
  precision, recall, F1, accuracy and the confusion matrix of the thresholded prediction, and ROC AUC of the
  continuous prediction used as a score;
- :func:`classification_metrics`: class labels: accuracy, macro F1, per-class precision / recall / F1 and the
  confusion matrix (plus one-vs-rest ROC AUC when class scores are given);
- :func:`flatten`: ``{"per_class": {"ok": {"f1": ..}}}`` -> ``{"<prefix>_f1_ok": ..}`` for metrics.json;
- :func:`confusion_matrix_figure`, :func:`roc_curve_figure`: matplotlib figures (headless, through
  :mod:`reflow.plotting`; save them with :func:`reflow.plotting.save_figure`).

Undefined values are NaN: R2 of a constant truth, ROC AUC when the truth holds one class only. Precision of a
prediction with no positives is 0 (scikit-learn's ``zero_division=0``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from reflow.plotting import pyplot
from reflow.tables import plain

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """``mse``, ``rmse``, ``mae``, ``r2`` of predictions ``y_pred`` (n,) against ``y_true`` (n,)."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    y, p = _pair(y_true, y_pred, float)
    if y.size == 0:
        return {"mse": math.nan, "rmse": math.nan, "mae": math.nan, "r2": math.nan}
    mse = float(mean_squared_error(y, p))
    return {"mse": mse, "rmse": math.sqrt(mse), "mae": float(mean_absolute_error(y, p)), "r2": r2(y, p)}


def r2(y_true: Any, y_pred: Any) -> float:
    """Coefficient of determination 1 - SS_res / SS_tot; NaN when the truth is constant (or has < 2 values)."""
    from sklearn.metrics import r2_score

    y, p = _pair(y_true, y_pred, float)
    if y.size < 2 or float(np.sum((y - y.mean()) ** 2)) == 0.0:
        return math.nan
    return float(r2_score(y, p))


def threshold_metrics(y_true: Any, y_score: Any, threshold: float) -> dict[str, Any]:
    """A continuous target judged at ``threshold``: positive means value > threshold, for truth and prediction.

    Returns ``threshold``, ``precision``, ``recall``, ``f1``, ``accuracy``, ``roc_auc`` (of the continuous
    ``y_score`` as a ranking of the thresholded truth), ``positives`` (true ones), ``predicted_positives`` and
    ``confusion`` [[TN, FP], [FN, TP]].
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    y, s = _pair(y_true, y_score, float)
    truth, pred = y > threshold, s > threshold
    precision, recall, f1, _ = precision_recall_fscore_support(truth, pred, average="binary", pos_label=True,
                                                               zero_division=0)
    cm = confusion_matrix(truth, pred, labels=[False, True])
    return {"threshold": float(threshold), "precision": float(precision), "recall": float(recall), "f1": float(f1),
            "accuracy": float(accuracy_score(truth, pred)) if y.size else math.nan,
            "roc_auc": roc_auc(truth, s), "positives": int(truth.sum()), "predicted_positives": int(pred.sum()),
            "confusion": cm.astype(int).tolist()}


def roc_auc(y_true: Any, y_score: Any) -> float:
    """Area under the ROC curve of scores ``y_score`` for binary truth ``y_true``; NaN with one class only."""
    from sklearn.metrics import roc_auc_score

    y, s = _pair(y_true, y_score, None)
    y = y.astype(bool)
    if y.all() or not y.any():
        return math.nan
    return float(roc_auc_score(y, s.astype(float)))


def classification_metrics(y_true: Any, y_pred: Any, classes: list[Any] | None = None,
                           scores: Any = None) -> dict[str, Any]:
    """Class labels: ``accuracy``, ``macro_f1``, ``classes`` (the order used), ``per_class`` {class: {precision,
    recall, f1, support}} and ``confusion`` (rows truth, columns prediction, in ``classes`` order).

    Args:
        y_true, y_pred: (n,) labels (text, integers or bools).
        classes: the label order; default: the sorted union of both.
        scores: optional (n, n_classes) class probabilities in ``classes`` order: adds ``roc_auc_ovr``
            (macro one-vs-rest).
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    y, p = _pair(y_true, y_pred, None)
    labels = list(classes) if classes is not None else sorted(set(y.tolist()) | set(p.tolist()), key=str)
    precision, recall, f1, support = precision_recall_fscore_support(y, p, labels=labels, zero_division=0)
    out: dict[str, Any] = {
        "accuracy": float(accuracy_score(y, p)) if y.size else math.nan,
        "macro_f1": float(f1_score(y, p, labels=labels, average="macro", zero_division=0)),
        "classes": [plain(c) for c in labels],
        "per_class": {str(plain(c)): {"precision": float(pr), "recall": float(rc), "f1": float(f),
                                       "support": int(n)}
                      for c, pr, rc, f, n in zip(labels, precision, recall, f1, support, strict=True)},
        "confusion": confusion_matrix(y, p, labels=labels).astype(int).tolist(),
    }
    if scores is not None:
        out["roc_auc_ovr"] = _roc_auc_ovr(y, np.asarray(scores, dtype=float), labels)
    return out


def _roc_auc_ovr(y: np.ndarray, scores: np.ndarray, labels: list[Any]) -> float:
    """Macro one-vs-rest ROC AUC over the classes present in ``y`` (at least two)."""
    if scores.shape != (y.size, len(labels)):
        raise ValueError(f"scores must have shape (n, n_classes) = ({y.size}, {len(labels)}), got {scores.shape}")
    aucs = [roc_auc(y == c, scores[:, j]) for j, c in enumerate(labels)]
    aucs = [a for a in aucs if not math.isnan(a)]
    return float(np.mean(aucs)) if len(aucs) >= 2 else math.nan


def flatten(prefix: str, metrics: dict[str, Any]) -> dict[str, Any]:
    """Flat metrics.json keys: ``{"f1": .3}`` -> ``{"<prefix>_f1": .3}``; per-class dicts become
    ``<prefix>_<metric>_<class>``; lists (confusion matrices, class lists) stay as they are."""
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        if key == "per_class":
            for cls, values in value.items():
                for name, v in values.items():
                    flat[f"{prefix}_{name}_{cls}"] = v
        else:
            flat[f"{prefix}_{key}"] = value
    return flat


def confusion_matrix_figure(confusion: Any, classes: list[Any], title: str = "") -> Figure:
    """A confusion matrix (rows truth, columns prediction) with counts in the cells and row shares in colour."""
    plt = pyplot()
    cm = np.asarray(confusion, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    side = 2.2 + 0.55 * len(classes)
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=9,
                    color="white" if share[i, j] > 0.5 else "black")
    names = [str(c) for c in classes]
    ax.set_xticks(range(len(names)), names, rotation=45 if max(map(len, names)) > 4 else 0, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, label="share of the true class", fraction=0.046, pad=0.04)
    ax.set_title(title or f"confusion matrix ({int(cm.sum())} samples)", fontsize=10)
    fig.tight_layout()
    return fig


def roc_curve_figure(y_true: Any, y_score: Any, title: str = "") -> Figure:
    """The ROC curve of scores ``y_score`` for binary truth ``y_true``, with its AUC and the chance diagonal."""
    from sklearn.metrics import roc_curve

    plt = pyplot()
    y, s = _pair(y_true, y_score, None)
    y = y.astype(bool)
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    if y.any() and not y.all():
        fpr, tpr, _ = roc_curve(y, s.astype(float))
        ax.plot(fpr, tpr, lw=2, label=f"AUC = {roc_auc(y, s):.3f}")
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "undefined: the truth holds one class only", ha="center", va="center", fontsize=9)
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title or f"ROC ({int(y.sum())} positive of {y.size})", fontsize=10)
    fig.tight_layout()
    return fig


def _pair(a: Any, b: Any, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=dtype).reshape(-1)
    b = np.asarray(b, dtype=dtype).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"truth and prediction differ in length: {a.size} vs {b.size}")
    return a, b
