"""The figures of the vision models and tasks: learning curves, Grad-CAM and MAE grids, detections.

Each function draws from plain arrays or a stored dataset (never from a live network), so a stage's figures can be
drawn again by ``reflow report``; every figure goes through :mod:`reflow.plotting`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from reflow.plotting import pyplot, save_figure

if TYPE_CHECKING:
    import xarray as xr


def loss_plot(history: list[dict[str, Any]], path: Path, title: str,
              extra: list[tuple[str, list[dict[str, Any]]]] | None = None) -> Path:
    """Train/validation loss per epoch (log scale when positive); ``extra`` adds panels (e.g. MAE pre-training)."""
    plt = pyplot()
    panels = [(title, history)] + list(extra or [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (name, rows) in zip(axes[0], panels, strict=True):
        epochs = [r["epoch"] for r in rows]
        for key, label in (("train_loss", "train"), ("val_loss", "validation")):
            values = [float(r.get(key, math.nan)) for r in rows]
            if any(math.isfinite(v) for v in values):
                ax.plot(epochs, values, marker="o", ms=3, label=label)
        finite = [float(r.get(k, math.nan)) for r in rows for k in ("train_loss", "val_loss")]
        if finite and all(v > 0 for v in finite if math.isfinite(v)):
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.set_title(name, fontsize=10)
        ax.legend()
    return save_figure(fig, path)


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3g}"
    return str(value)


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(n, max_cols)
    return (n + cols - 1) // cols, cols


def cam_grid(ds: xr.Dataset, path: Path) -> Path:
    """Each image in gray with its Grad-CAM as a translucent heat map; truth and prediction in the title."""
    plt = pyplot()
    n = ds.sizes["sample"]
    rows, cols = _grid(n)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.8 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(ds["image"].values[k], cmap="gray", vmin=0, vmax=1)
        ax.imshow(ds["cam"].values[k], cmap="jet", alpha=0.4, vmin=0, vmax=1)
        title = []
        if "truth" in ds:
            title.append(f"true {_fmt(ds['truth'].values[k])}")
        if "prediction" in ds:
            title.append(f"pred {_fmt(ds['prediction'].values[k])}")
        ax.set_title(", ".join(title), fontsize=9)
    target = ds.attrs.get("target") or "output"
    fig.suptitle(f"Grad-CAM of {target} (stage {ds.attrs.get('model_stage', '?')})", fontsize=11)
    return save_figure(fig, path)


def reconstruction_grid(ds: xr.Dataset, path: Path) -> Path:
    """One row per image: original, masked input, MAE reconstruction (visible patches pasted back)."""
    plt = pyplot()
    n = ds.sizes["sample"]
    fig, axes = plt.subplots(n, 3, figsize=(7.0, 2.3 * n), squeeze=False)
    for k in range(n):
        for j, (name, label) in enumerate((("image", "original"), ("mae_masked", "masked"),
                                           ("mae_reconstruction", "reconstruction"))):
            ax = axes[k, j]
            ax.imshow(np.clip(ds[name].values[k], 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.axis("off")
            if k == 0:
                ax.set_title(label, fontsize=10)
    return save_figure(fig, path)


def draw_detections(data: xr.Dataset, found: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                    truth_boxes: list[np.ndarray], truth_labels: list[list[str]], path: Path, classes: list[str],
                    threshold: float = 0.5, n: int = 8, title: str = "") -> Path:
    """Up to ``n`` images (those with true boxes first) with the true boxes dashed and the predicted ones
    (scoring at least ``threshold``) solid, coloured by class, with their scores."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle
    from reflow.imaging import ImageDataset

    plt = pyplot()
    order = [k for k in range(len(truth_boxes)) if len(truth_boxes[k])]
    order += [k for k in range(len(truth_boxes)) if not len(truth_boxes[k])]
    chosen = order[:n]
    names = list(classes) + sorted({c for labels in truth_labels for c in labels} - set(classes))
    colours = {c: plt.get_cmap("tab10")(k % 10) for k, c in enumerate(names)}
    cols = min(4, max(1, len(chosen)))
    rows = max(1, math.ceil(len(chosen) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.0 * rows + 0.6), squeeze=False)
    images = ImageDataset(data).read(chosen) if chosen else np.zeros((0, 1, 1, 1))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")
    for ax, k, img in zip(axes.flat, chosen, images, strict=False):
        ax.axis("on")
        ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0.0, vmax=1.0)
        for (x0, y0, x1, y1), c in zip(truth_boxes[k], truth_labels[k], strict=True):
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, linestyle="--",
                                   edgecolor=colours.get(c, "white"), linewidth=1.2))
        boxes, scores, labels = found[k]
        for (x0, y0, x1, y1), s, c in zip(boxes, scores, labels, strict=True):
            if s < threshold:
                continue
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                   edgecolor=colours.get(str(c), "white"), linewidth=1.4))
            ax.text(x0 - 0.5, y0 - 1.5, f"{c} {s:.2f}", color=colours.get(str(c), "white"), fontsize=6,
                    va="bottom")
        ax.set_title(f"image {k}: {len(truth_boxes[k])} true, {int((scores >= threshold).sum())} found", fontsize=7)
    handles = [Line2D([], [], color=colours[c], label=c) for c in names]
    handles += [Line2D([], [], color="grey", linestyle="--", label="truth"),
                Line2D([], [], color="grey", label=f"prediction (score >= {threshold:g})")]
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))  # room for the legend below the images
    return save_figure(fig, path, tight=False)
