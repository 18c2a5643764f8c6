"""Figures of the augmenters and the ``augment`` task: image grids, GAN loss curves, quality bars (drawn and saved
through :mod:`reflow.plotting`, like every stage figure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from reflow.plotting import pyplot, save_figure


def show(ax: Any, image: np.ndarray) -> None:
    """One (C, H, W) image in [0, 1]: gray for one channel, RGB for three, the first channel otherwise."""
    ax.axis("off")
    if image.shape[0] == 3:
        ax.imshow(np.clip(np.transpose(image, (1, 2, 0)), 0, 1))
    else:
        ax.imshow(image[0], cmap="gray", vmin=0.0, vmax=1.0)


def image_rows(rows: Sequence[tuple[str, np.ndarray]], path: Path, title: str, columns: int = 8) -> Path:
    """One row per (name, images (n, C, H, W)), up to ``columns`` images each, the name on the left."""
    plt = pyplot()
    n_rows = max(1, len(rows))
    fig, axes = plt.subplots(n_rows, columns, figsize=(1.3 * columns + 1.0, 1.35 * n_rows + 0.6), squeeze=False)
    for r, (name, images) in enumerate(rows):
        for k in range(columns):
            ax = axes[r, k]
            ax.axis("off")
            if k < len(images):
                show(ax, images[k])
        axes[r, 0].text(-0.1, 0.5, str(name), transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=9)
    for ax in axes[len(rows):].flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


def real_vs_generated(rows: Sequence[tuple[str, np.ndarray, np.ndarray]], path: Path, title: str,
                      per_side: int = 6) -> Path:
    """One row per class: ``per_side`` real training images, a gap, ``per_side`` generated ones."""
    plt = pyplot()
    n_rows = max(1, len(rows))
    cols = 2 * per_side + 1
    fig, axes = plt.subplots(n_rows, cols, figsize=(1.15 * cols + 1.2, 1.3 * n_rows + 0.8), squeeze=False)
    for r, (name, real, fake) in enumerate(rows):
        for k in range(cols):
            axes[r, k].axis("off")
        for k in range(min(per_side, len(real))):
            show(axes[r, k], real[k])
        for k in range(min(per_side, len(fake))):
            show(axes[r, per_side + 1 + k], fake[k])
        axes[r, 0].text(-0.1, 0.5, str(name), transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=9)
    axes[0, per_side // 2].set_title("real (training)", fontsize=10)
    axes[0, per_side + 1 + per_side // 2].set_title("generated", fontsize=10)
    fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)


def loss_curves(history: Sequence[dict[str, Any]], path: Path) -> Path:
    """WGAN-GP losses per epoch: critic and generator loss, the Wasserstein estimate, penalty and feature matching."""
    plt = pyplot()
    epochs = [r["epoch"] for r in history]
    panels = ((("critic_loss", "critic"), ("generator_loss", "generator")),
              (("wasserstein", "E[D(real)] - E[D(fake)]"),),
              (("gradient_penalty", "gradient penalty"), ("feature_matching", "feature matching")))
    titles = ("losses", "Wasserstein estimate", "penalty terms")
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 3.6))
    for ax, panel, name in zip(axes, panels, titles, strict=True):
        for key, label in panel:
            values = [float(r.get(key, math.nan)) for r in history]
            ax.plot(epochs, values, marker="o" if len(epochs) < 30 else None, ms=3, label=label)
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("wgan-gp training", fontsize=11)
    return save_figure(fig, path)


def quality_bars(classes: Sequence[str], accuracy: Sequence[float], real_accuracy: Sequence[float],
                 in_distribution: Sequence[float], fd_generated: Sequence[float], fd_real: Sequence[float],
                 chance: float, path: Path) -> Path:
    """Per class: the probe's accuracy on generated images (with chance and its accuracy on held-out real images),
    the in-distribution share, and the Frechet distances of generated and of real training images to the
    held-out real images."""
    plt = pyplot()
    x = np.arange(len(classes))
    fig, axes = plt.subplots(1, 3, figsize=(max(13.0, 2.0 * len(classes) + 7.0), 4.0))
    axes[0].bar(x, accuracy, color="tab:blue", label="generated")
    axes[0].scatter(x, real_accuracy, color="tab:orange", marker="_", s=900, linewidths=3,
                    label="held-out real", zorder=3)
    axes[0].axhline(chance, color="k", ls="--", lw=1, label=f"chance ({chance:.2f})")
    axes[0].set_ylim(0, 1.05)
    axes[0].set_title("probe: share classified as their class", fontsize=10)
    axes[0].legend(fontsize=8, loc="lower right")
    axes[1].bar(x, in_distribution, color="tab:green")
    axes[1].axhline(0.95, color="k", ls="--", lw=1, label="real images (0.95)")
    axes[1].set_ylim(0, 1.05)
    axes[1].set_title("probe: share inside the real images' range", fontsize=10)
    axes[1].legend(fontsize=8, loc="lower right")
    w = 0.38
    axes[2].bar(x - w / 2, fd_generated, w, label="generated vs held-out")
    axes[2].bar(x + w / 2, fd_real, w, label="real training vs held-out (floor)")
    axes[2].set_title("Frechet distance, probe features (lower: closer)", fontsize=10)
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.set_xticks(x)
        ax.set_xticklabels(classes, rotation=30, ha="right", fontsize=8)
    return save_figure(fig, path)
