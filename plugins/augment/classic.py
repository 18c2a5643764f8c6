"""Model ``classic``: new images of a class from real ones by flips, rotations (seed 002: +-15 and +-30 degrees)
and optional brightness/contrast jitter.

A :class:`reflow.Generator` that learns nothing: ``fit`` records the classes and their counts, and ``save`` writes
the params and those classes only. It keeps no images, so ``generate`` takes the images to transform as its
``source`` argument (the ``augment`` task passes its training part); that keeps saved models small and makes plain
which images a synthetic one came from (``source_index``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import reflow
from pydantic import Field, model_validator

from .common import (
    LABEL,
    check_request,
    check_targets,
    class_order,
    generated_dataset,
    label_values,
    sample_dim,
    unit_images,
)

if TYPE_CHECKING:
    import xarray as xr
    from reflow.context import RunContext

STATE = "state.json"


class ClassicAugmenter(reflow.Generator):
    """Flips, rotations and brightness/contrast jitter of real images of each class (seed 002).

    Each synthetic image takes a random real image of its class, flips it left-right and up-down with probability
    1/2 each (when enabled), rotates it by one of ``angles`` (counter-clockwise, drawn uniformly), then shifts its
    brightness by up to +-``brightness`` and scales its contrast about its mean by up to +-``contrast``. Multiples
    of 90 degrees rotate exactly (square images); other angles interpolate bilinearly and fill the corners with the
    mean of the image's border pixels (or ``fill``).
    """

    class Params(reflow.Params):
        angles: list[float] = Field(default_factory=lambda: [-30.0, -15.0, 15.0, 30.0],
                                    description="rotation angles in degrees (counter-clockwise), one drawn per "
                                                "image; [] for no rotation")
        hflip: bool = Field(True, description="flip left-right with probability 1/2")
        vflip: bool = Field(False, description="flip up-down with probability 1/2")
        brightness: float = Field(0.0, ge=0.0, le=1.0, description="add a uniform shift in [-b, b] to the pixels")
        contrast: float = Field(0.0, ge=0.0, lt=1.0, description="scale about the image mean by a factor in "
                                                                 "[1 - c, 1 + c]")
        fill: float | None = Field(None, ge=0.0, le=1.0, description="value of the corners a rotation uncovers "
                                                                      "(null: the mean of the image's border)")
        label: str = Field(LABEL, description="the class variable of the images")

        @model_validator(mode="after")
        def _varies(self) -> ClassicAugmenter.Params:
            if not (self.angles or self.hflip or self.vflip or self.brightness or self.contrast):
                raise ValueError("classic would copy images unchanged: give angles, hflip, vflip, brightness or "
                                 "contrast")
            return self

    def fit(self, data: xr.Dataset, ctx: RunContext, validation: xr.Dataset | None = None) -> ClassicAugmenter:
        """Record the classes, their counts and the channel count (no learning; ``validation`` is unused)."""
        check_targets(self.targets, "classic")
        labels = label_values(data, self.params.label)
        self.classes_ = class_order(data, self.params.label)
        self.class_counts_ = {c: int((labels == c).sum()) for c in self.classes_}
        self.channels_ = int(unit_images(data.isel({sample_dim(data): slice(0, 1)})).shape[1])
        return self

    def transform(self, images: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Each image (n, C, H, W) transformed once with draws from ``rng``; also what was drawn per image."""
        p = self.params
        n = images.shape[0]
        angles = (np.asarray(p.angles, dtype=np.float64)[rng.integers(0, len(p.angles), n)] if p.angles
                  else np.zeros(n))
        hflip = rng.random(n) < 0.5 if p.hflip else np.zeros(n, dtype=bool)
        vflip = rng.random(n) < 0.5 if p.vflip else np.zeros(n, dtype=bool)
        shift = rng.uniform(-p.brightness, p.brightness, n) if p.brightness else np.zeros(n)
        scale = rng.uniform(1.0 - p.contrast, 1.0 + p.contrast, n) if p.contrast else np.ones(n)
        out = transform_images(images, angles, hflip, vflip, shift, scale, p.fill)
        return out, {"angle": angles, "hflip": hflip, "vflip": vflip}

    def generate(self, n_per_class: dict[str, int], seed: int = 0, source: xr.Dataset | None = None,
                 device: str = "cpu") -> xr.Dataset:
        """``n_per_class[c]`` new images of each class ``c``, each a transformed random image of class ``c`` in
        ``source`` (required: classic keeps no images). ``source_index`` is the position of that image in
        ``source``. The draws for one class depend only on (seed, class)."""
        self.require_fitted("classes_")
        if source is None:
            raise reflow.UserInputError("classic transforms real images and stores none: pass the images to "
                                        "transform as generate(..., source=dataset)")
        labels = label_values(source, self.params.label)
        classes = list(dict.fromkeys([*self.classes_, *class_order(source, self.params.label)]))
        request = check_request(n_per_class, classes, "classic")
        empty = [c for c, n in request.items() if n and not (labels == c).any()]
        if empty:
            raise reflow.UserInputError(f"classic: no source images of class(es) {', '.join(empty)} to transform")
        dim = sample_dim(source)
        parts, picked, drawn = [], [], []
        for c, n in request.items():
            if not n:
                continue
            rng = np.random.default_rng([int(seed), classes.index(c)])
            rows = rng.choice(np.flatnonzero(labels == c), size=n, replace=True)
            order = np.argsort(rows, kind="stable")  # read the source in order (lazy datasets), then put back
            images = np.empty((n,) + unit_images(source.isel({dim: rows[:1]})).shape[1:], np.float32)
            images[order] = unit_images(source.isel({dim: rows[order]}))
            out, info = self.transform(images, rng)
            parts.append(out)
            picked.append(rows)
            drawn.append(info)
        if parts:
            images = np.concatenate(parts)
            extra = {"source_index": np.concatenate(picked).astype(np.int64),
                     **{k: np.concatenate([d[k] for d in drawn]) for k in ("angle", "hflip", "vflip")}}
        else:
            _, c_, h, w = unit_images(source.isel({dim: slice(0, 1)})).shape
            images = np.zeros((0, c_, h, w), np.float32)
            extra = {"source_index": np.zeros(0, np.int64), "angle": np.zeros(0), "hflip": np.zeros(0, bool),
                     "vflip": np.zeros(0, bool)}
        labels_out = [c for c, n in request.items() for _ in range(n)]
        return generated_dataset(images, labels_out, classes, extra, attrs={"generator": "classic", "seed": int(seed)})

    def save_state(self, directory: Path) -> None:
        self.require_fitted("classes_")
        (directory / STATE).write_text(json.dumps({"classes": self.classes_, "class_counts": self.class_counts_,
                                                   "channels": self.channels_}, indent=2))

    def load_state(self, directory: Path) -> None:
        state = json.loads((directory / STATE).read_text())
        self.classes_ = list(state["classes"])
        self.class_counts_ = {str(k): int(v) for k, v in state["class_counts"].items()}
        self.channels_ = int(state["channels"])


def transform_images(images: np.ndarray, angles: np.ndarray, hflip: np.ndarray, vflip: np.ndarray,
                     shift: np.ndarray, scale: np.ndarray, fill: float | None = None) -> np.ndarray:
    """Flip, rotate (degrees, counter-clockwise), then jitter contrast and brightness, one setting per image.

    Args:
        images: (n, C, H, W) in [0, 1].
        angles, hflip, vflip, shift, scale: (n,) per-image settings.
        fill: the value of uncovered corners; None: the mean of each image's border pixels.
    """
    import torch

    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).clone()
    if hflip.any():
        x[torch.from_numpy(hflip)] = x[torch.from_numpy(hflip)].flip(-1)
    if vflip.any():
        x[torch.from_numpy(vflip)] = x[torch.from_numpy(vflip)].flip(-2)
    square = x.shape[-1] == x.shape[-2]
    for angle in np.unique(angles):
        rows = torch.from_numpy(np.flatnonzero(angles == angle))
        if angle % 360 == 0:
            continue
        batch = x[rows]
        if square and angle % 90 == 0:
            x[rows] = torch.rot90(batch, int(angle // 90) % 4, dims=(-2, -1))
            continue
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as tvf

        # rotate (image - f) with zero fill, then add f back: the same as filling the corners with f, per image
        f = (torch.full((batch.shape[0], 1, 1, 1), float(fill)) if fill is not None
             else _border_mean(batch).view(-1, 1, 1, 1))
        x[rows] = tvf.rotate(batch - f, float(angle), interpolation=InterpolationMode.BILINEAR, fill=0.0) + f
    if not np.all(scale == 1.0):
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * torch.from_numpy(scale.astype(np.float32)).view(-1, 1, 1, 1) + mean
    if np.any(shift != 0.0):
        x = x + torch.from_numpy(shift.astype(np.float32)).view(-1, 1, 1, 1)
    return x.clamp(0.0, 1.0).numpy()


def _border_mean(batch: Any) -> Any:
    """Mean of the outermost rows and columns of each image (n,): the background a rotation should reveal."""
    import torch

    edges = torch.cat([batch[..., 0, :], batch[..., -1, :], batch[..., :, 0], batch[..., :, -1]], dim=-1)
    return edges.mean(dim=(1, 2))
