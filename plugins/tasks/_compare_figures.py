"""The figures of a ``compare`` stage, drawn from its stored outputs: the scores and costs of every candidate,
and the best model's out-of-fold predictions against the truth (parity for numbers, confusion for labels)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from reflow.plotting import pyplot, save_figure

from ._crossval import class_order
from ._scoring import r2

if TYPE_CHECKING:
    import xarray as xr


def _colours(labels: list[str], best: str) -> list[str]:
    return ["#c44e52" if str(m) == best else "#4c72b0" for m in labels]


NAMES = {"r2": "R2", "accuracy": "accuracy", "macro_f1": "macro F1"}


def plot_scores(summary: xr.Dataset, panels: list[tuple[str, str]], best: str, path: Path) -> Path | None:
    """One panel per (target, metric): a bar per model, the mean over folds with the std as the error bar."""
    if not summary.sizes.get("model") or not panels:
        return None
    plt = pyplot()
    labels = [str(m) for m in summary["model"].values]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels) + 1, 0.45 * len(labels) + 1.8),
                             squeeze=False)
    folds, repeats = summary.attrs.get("folds", "k"), summary.attrs.get("repeats", 1)
    for ax, (t, metric) in zip(axes[0], panels, strict=True):
        mean, std = summary[f"{t}_{metric}_mean"].values, summary[f"{t}_{metric}_std"].values
        y = np.arange(len(labels))
        ax.barh(y, mean, xerr=np.nan_to_num(std), color=_colours(labels, best), capsize=3)
        failed = summary["folds_failed"].values
        for yi, m, f in zip(y, mean, failed, strict=True):
            note = (f"{m:.3f}" if np.isfinite(m) else "") + (f" (failed on {f} folds)" if f else "")
            ax.annotate(note, (m if np.isfinite(m) else 0.0, yi), xytext=(4, 6), textcoords="offset points",
                        fontsize=8, color="#c44e52" if f else "black")
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set_xlim(min(0.0, float(np.nanmin(mean - np.nan_to_num(std))) if np.isfinite(mean).any() else 0.0) - 0.05,
                    1.1)
        held = "held-out" if summary.attrs.get("splits") == "random" else "out-of-fold"
        ax.set_xlabel(f"{t}: {held} {NAMES.get(metric, metric)}")
        ax.grid(axis="x", alpha=0.3)
    what = " and ".join(dict.fromkeys(NAMES.get(m, m) for _, m in panels))
    where = (f"{repeats} random splits" if summary.attrs.get("splits") == "random"
             else f"{folds} folds x {repeats} repeats")
    fig.suptitle(f"{what} on held-out samples (mean +- std over {where}; red: best)", fontsize=10)
    return save_figure(fig, path)


def plot_times(summary: xr.Dataset, scores: xr.Dataset | None, best: str, folder: Path) -> Path | None:
    """Bars: the mean over folds; dots: each fold (a log axis shows spreads of orders of magnitude)."""
    if not summary.sizes.get("model"):
        return None
    plt = pyplot()
    labels = [str(m) for m in summary["model"].values]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * len(labels) + 1.8))
    y = np.arange(len(labels))
    for ax, name, xlabel in ((axes[0], "fit_seconds", "fit time per fold [s]"),
                             (axes[1], "predict_seconds_per_sample", "predict time per sample [s]")):
        mean = summary[f"{name}_mean"].values
        shown = np.isfinite(mean) & (mean > 0)
        ax.barh(y[shown], mean[shown], color=[c for c, s in zip(_colours(labels, best), shown, strict=True) if s])
        if scores is not None and name in scores:
            for i, label in enumerate(labels):
                each = np.asarray(scores[name].sel(model=label).values, dtype=float).ravel()
                each = each[np.isfinite(each) & (each > 0)]
                ax.plot(each, np.full(each.size, y[i]), "o", color="k", ms=3, alpha=0.6)
        for i in np.flatnonzero(~shown):
            ax.annotate("failed", (0, y[i]), xycoords=("axes fraction", "data"), xytext=(4, -3),
                        textcoords="offset points", fontsize=8, color="#c44e52")
        ax.set_xscale("log")
        ax.set_yticks(y, labels)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set_xlabel(xlabel + " (log scale)")
        ax.grid(axis="x", alpha=0.3, which="both")
    fig.suptitle("cost of each candidate (bars: mean over folds, dots: each fold; red: best)", fontsize=10)
    return save_figure(fig, folder / "compare_times.png")


def plot_parity(pred: xr.Dataset, t: str, best: str, folder: Path) -> Path | None:
    """The best model's out-of-fold predictions of a numeric target against the truth (first repeat), by fold."""
    y = np.asarray(pred[t].values, dtype=float)
    p = np.asarray(pred[f"{t}_mean"].sel(model=best, repeat=0).values, dtype=float)
    ok = np.isfinite(y) & np.isfinite(p)
    if ok.sum() < 2:
        return None
    plt = pyplot()
    fold = np.asarray(pred["fold"].sel(repeat=0).values)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    if fold.max() < 10:
        for k in np.unique(fold[ok]):
            sel = ok & (fold == k)
            ax.scatter(y[sel], p[sel], s=20, color=plt.cm.tab10(int(k)), label=f"fold {k}")
        ax.legend(fontsize=7, title="held out in", title_fontsize=7)
    else:
        fig.colorbar(ax.scatter(y[ok], p[ok], c=fold[ok], cmap="viridis", s=20), ax=ax, label="held-out fold")
    lo, hi = float(min(y[ok].min(), p[ok].min())), float(max(y[ok].max(), p[ok].max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    units = pred[t].attrs.get("units", "")
    ax.set_xlabel(f"{t} (truth){f' [{units}]' if units else ''}")
    ax.set_ylabel(f"{t} (predicted while held out)")
    ax.set_title(f"{best}: out-of-fold R2 = {r2(y[ok], p[ok]):.3f} (pooled, {int(ok.sum())} samples)", fontsize=10)
    return save_figure(fig, folder / f"compare_parity_{t}.png")


def plot_confusion(pred: xr.Dataset, t: str, best: str, folder: Path) -> Path | None:
    """The best model's out-of-fold predictions against the truth, pooled over every repeat."""
    from reflow.metrics import classification_metrics, confusion_matrix_figure

    truth = np.asarray(pred[t].values).astype(str)
    guess = np.asarray(pred[f"{t}_pred"].sel(model=best).values).astype(str)  # (repeat, sample)
    y = np.broadcast_to(truth, guess.shape).reshape(-1)
    p = guess.reshape(-1)
    held = p != ""
    if not held.any():
        return None
    seen = set(y[held].tolist()) | set(p[held].tolist())
    order = [c for c in class_order(pred[t]) if c in seen] + sorted(seen - set(class_order(pred[t])))
    m = classification_metrics(y[held], p[held], classes=order)
    fig = confusion_matrix_figure(m["confusion"], order, f"{best}: held-out {t}, {guess.shape[0]} repeat(s)\n"
                                                        f"accuracy {m['accuracy']:.3f}")
    return save_figure(fig, folder / f"compare_confusion_{t}.png")
