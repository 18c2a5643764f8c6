"""reflow.metrics against values worked out by hand, and its figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
from reflow.metrics import (
    classification_metrics,
    confusion_matrix_figure,
    flatten,
    r2,
    regression_metrics,
    roc_auc,
    roc_curve_figure,
    threshold_metrics,
)


def test_regression_by_hand():
    # errors 0.5, 0, -1, 1: MSE 2.25/4, MAE 2.5/4; SS_tot about the mean 2.5 is 5, so R2 = 1 - 2.25/5
    m = regression_metrics([1, 2, 3, 4], [1.5, 2, 2, 5])
    assert m == pytest.approx({"mse": 0.5625, "rmse": 0.75, "mae": 0.625, "r2": 0.55})


def test_r2_undefined_for_constant_truth_and_perfect_fit():
    assert math.isnan(r2([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]))
    assert math.isnan(r2([1.0], [1.0]))
    assert r2([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0
    assert r2([1.0, 2.0, 3.0], [2.0, 2.0, 2.0]) == 0.0  # predicting the mean
    assert all(math.isnan(v) for v in regression_metrics([], []).values())


def test_threshold_by_hand():
    truth = [0.10, 0.30, 0.25, 0.05, 0.50, 0.15]  # above 0.2: F T T F T F
    score = [0.22, 0.35, 0.10, 0.02, 0.40, 0.18]  # above 0.2: T T F F T F
    m = threshold_metrics(truth, score, 0.2)
    # TP = 2 (#1, #4), FP = 1 (#0), FN = 1 (#2), TN = 2 (#3, #5)
    assert m["confusion"] == [[2, 1], [1, 2]]
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # positives score 0.35, 0.10, 0.40; negatives 0.22, 0.02, 0.18: 3 + 1 + 3 of 9 pairs ranked right
    assert m["roc_auc"] == pytest.approx(7 / 9)
    assert (m["threshold"], m["positives"], m["predicted_positives"]) == (0.2, 3, 3)


def test_threshold_edge_cases():
    nothing_flagged = threshold_metrics([0.1, 0.3], [0.1, 0.1], 0.2)
    assert nothing_flagged["precision"] == 0.0 and nothing_flagged["recall"] == 0.0
    assert nothing_flagged["roc_auc"] == 0.5  # tied scores
    one_class = threshold_metrics([0.1, 0.15], [0.1, 0.3], 0.2)
    assert math.isnan(one_class["roc_auc"]) and one_class["confusion"] == [[1, 1], [0, 0]]
    assert roc_auc([False, True, True], [0.9, 0.1, 0.2]) == 0.0


def test_multiclass_by_hand():
    y = ["a", "a", "a", "b", "b", "c"]
    p = ["a", "a", "b", "b", "c", "c"]
    m = classification_metrics(y, p)
    assert m["classes"] == ["a", "b", "c"]
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    a, b, c = m["per_class"]["a"], m["per_class"]["b"], m["per_class"]["c"]
    assert (a["precision"], a["recall"], a["f1"], a["support"]) == pytest.approx((1.0, 2 / 3, 0.8, 3))
    assert (b["precision"], b["recall"], b["f1"], b["support"]) == pytest.approx((0.5, 0.5, 0.5, 2))
    assert (c["precision"], c["recall"], c["f1"], c["support"]) == pytest.approx((0.5, 1.0, 2 / 3, 1))
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)


def test_multiclass_fixed_order_absent_class_and_scores():
    y = np.array(["ok", "void", "ok", "void"])
    p = np.array(["ok", "ok", "ok", "void"])
    m = classification_metrics(y, p, classes=["void", "ok", "crack"])
    assert m["classes"] == ["void", "ok", "crack"]
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    assert m["per_class"]["crack"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    scores = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1], [0.9, 0.05, 0.05]])
    ranked = classification_metrics(y, p, classes=["void", "ok", "crack"], scores=scores)
    assert ranked["roc_auc_ovr"] == 1.0  # both present classes ranked perfectly; crack (absent) left out
    with pytest.raises(ValueError, match="shape"):
        classification_metrics(y, p, classes=["void", "ok"], scores=scores)


def test_bool_labels_and_json_friendly_values():
    m = classification_metrics(np.array([True, False, True]), np.array([True, True, True]))
    assert m["classes"] == [False, True] and type(m["classes"][0]) is bool
    assert m["per_class"]["True"]["precision"] == pytest.approx(2 / 3)
    assert m["confusion"] == [[0, 1], [0, 2]]


def test_flatten_names():
    flat = flatten("kind", {"accuracy": 0.5, "per_class": {"ok": {"f1": 0.25}}, "confusion": [[1]]})
    assert flat == {"kind_accuracy": 0.5, "kind_f1_ok": 0.25, "kind_confusion": [[1]]}


def test_figures(tmp_path):
    fig = confusion_matrix_figure([[5, 1], [2, 7]], ["good", "defective"], "test")
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == ["1", "2", "5", "7"]
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["good", "defective"]
    roc = roc_curve_figure([False, True, True, False], [0.1, 0.8, 0.4, 0.5])
    labels = [line.get_label() for line in roc.axes[0].get_lines()]
    assert "AUC = 0.750" in labels
    flat = roc_curve_figure([True, True], [0.1, 0.2])  # undefined: says so instead of failing
    assert "one class" in flat.axes[0].texts[0].get_text()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from reflow.plotting import save_figure

    assert all(isinstance(f.canvas, FigureCanvasAgg) for f in (fig, roc, flat))  # headless, from reflow.plotting
    for f, name in ((fig, "confusion.png"), (roc, "roc.png"), (flat, "flat.png")):
        assert save_figure(f, tmp_path / name).stat().st_size > 0
