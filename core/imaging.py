"""Images for vision models: a lazy dataset over an xarray image dataset and batch transforms from a list spec.

Every vision model shares this module, so they read images and augment them the same way. An image dataset
has a variable ``image`` with dims (sample, channel, y, x), float in [0, 1] (integer images are divided by
their type's maximum, e.g. 255 for uint8), and labels as variables on ``sample``.

Transforms are given in a study as a list (the spec type :data:`Transforms` validates it)::

    transforms: [hflip, vflip, {crop: 56}, {rotate: [0, 90, 180, 270]}, {normalize: {mean: 0.5, std: 0.25}}]

- ``hflip`` / ``vflip``: flip left-right / up-down with probability 1/2 (training only).
- ``{crop: SIZE}``: a SIZE x SIZE window: random in training, the centre one in evaluation.
- ``{rotate: [angles]}``: rotate by one of the angles (degrees, counter-clockwise), drawn per image (training
  only). Multiples of 90 rotate exactly (square images); other angles interpolate bilinearly, corners filled
  with 0.
- ``{normalize: {mean, std}}``: ``(x - mean) / std`` per channel (one number for all channels, or one each).

Random draws come from a generator seeded by the caller, so a seed gives the same augmented batches.
torch is imported inside functions only: importing this module (for the spec type) stays cheap.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer, WithJsonSchema
from reflow.errors import DataError, UserInputError

if TYPE_CHECKING:
    import torch
    import xarray as xr

IMAGE = "image"
TRANSFORM_NAMES = ("hflip", "vflip", "crop", "rotate", "normalize")
_EXAMPLES = "hflip, vflip, {crop: 56}, {rotate: [0, 90, 180, 270]}, {normalize: {mean: 0.5, std: 0.25}}"


class TransformStep(BaseModel):
    """One validated transform. Build it from the study form with :func:`parse_transform`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    op: Literal["hflip", "vflip", "crop", "rotate", "normalize"]
    size: int | None = None
    angles: tuple[float, ...] = ()
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()

    def to_spec(self) -> Any:
        """The study form of this step (what :func:`parse_transform` reads back)."""
        if self.op in ("hflip", "vflip"):
            return self.op
        if self.op == "crop":
            return {"crop": self.size}
        if self.op == "rotate":
            return {"rotate": list(self.angles)}

        def one(v: tuple[float, ...]) -> float | list[float]:
            return v[0] if len(v) == 1 else list(v)

        return {"normalize": {"mean": one(self.mean), "std": one(self.std)}}


def _unknown(name: Any) -> str:
    close = difflib.get_close_matches(str(name), TRANSFORM_NAMES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown transform {name!r}{hint}; allowed: {', '.join(TRANSFORM_NAMES)}"


def _numbers(value: Any, what: str) -> tuple[float, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    if not items or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
        raise ValueError(f"{what} must be a number or a list of numbers, got {value!r}")
    try:
        return tuple(float(v) for v in items)
    except OverflowError:  # a 400-digit integer from YAML does not fit a float
        raise ValueError(f"{what} is too large a number, got {str(value)[:60]}...") from None


def parse_transform(value: Any) -> TransformStep:
    """Turn one study item (``"hflip"``, ``{crop: 56}``, ...) into a :class:`TransformStep`, or say what is wrong."""
    if isinstance(value, TransformStep):
        return value
    if isinstance(value, str):
        if value in ("hflip", "vflip"):
            return TransformStep(op=value)
        if value in TRANSFORM_NAMES:
            raise ValueError(f"transform {value!r} needs a value, e.g. {_EXAMPLES}")
        raise ValueError(_unknown(value))
    if not (isinstance(value, dict) and len(value) == 1):
        raise ValueError(f"a transform is a name or a one-key mapping ({_EXAMPLES}), got {value!r}")
    ((name, arg),) = value.items()
    if name in ("hflip", "vflip"):
        if arg not in (None, {}, True):
            raise ValueError(f"{name} takes no value, got {arg!r}")
        return TransformStep(op=name)
    if name == "crop":
        if isinstance(arg, bool) or not isinstance(arg, int) or arg < 1:
            raise ValueError(f"crop takes the side of the square window in pixels (an integer >= 1), got {arg!r}")
        return TransformStep(op="crop", size=arg)
    if name == "rotate":
        if not isinstance(arg, (list, tuple)) or not arg:
            raise ValueError(f"rotate takes a non-empty list of angles in degrees, e.g. [0, 90, 180, 270], got {arg!r}")
        return TransformStep(op="rotate", angles=_numbers(arg, "rotate angles"))
    if name == "normalize":
        if not isinstance(arg, dict) or set(arg) != {"mean", "std"}:
            raise ValueError(f"normalize takes {{mean: ..., std: ...}}, got {arg!r}")
        mean, std = _numbers(arg["mean"], "normalize mean"), _numbers(arg["std"], "normalize std")
        if any(s <= 0 for s in std):
            raise ValueError(f"normalize std must be > 0, got {arg['std']!r}")
        if len(mean) != len(std) and 1 not in (len(mean), len(std)):
            raise ValueError(f"normalize mean and std need one value each per channel (or one for all), "
                             f"got {len(mean)} and {len(std)}")
        return TransformStep(op="normalize", mean=mean, std=std)
    raise ValueError(_unknown(name))


Transform = Annotated[
    TransformStep,
    BeforeValidator(parse_transform),
    PlainSerializer(lambda step: step.to_spec()),
    WithJsonSchema({"anyOf": [{"type": "string", "enum": ["hflip", "vflip"]}, {"type": "object"}]}),
]
"""One transform in a component's Params (study form in, study form out)."""

Transforms = list[Transform]
"""A list of transforms in a component's Params, e.g. ``transforms: Transforms = Field(default_factory=...)``."""


class BatchTransform:
    """Applies a transform list to a batch of images (B, C, H, W); random steps only when ``train``."""

    def __init__(self, steps: Sequence[TransformStep], train: bool):
        self.steps = list(steps)
        self.train = train

    def check(self, channels: int, height: int, width: int, field: str = "transforms") -> None:
        """Raise UserInputError if a step cannot apply to images of this shape (names the step and the shape)."""
        h, w = height, width
        for i, step in enumerate(self.steps):
            where = f"{field}[{i}] ({step.to_spec()})"
            if step.op == "crop" and (step.size > h or step.size > w):
                raise UserInputError(f"{where}: crop size {step.size} is larger than the {h}x{w} images")
            if step.op == "crop":
                h = w = step.size
            if step.op == "rotate" and h != w and any(a % 180 != 0 for a in step.angles if a % 90 == 0):
                raise UserInputError(f"{where}: rotating by 90 or 270 degrees needs square images, these are {h}x{w}")
            if step.op == "normalize" and max(len(step.mean), len(step.std)) not in (1, channels):
                raise UserInputError(f"{where}: give one mean/std for all channels or one per channel "
                                     f"(the images have {channels})")

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Image size after the transforms (crops make it smaller)."""
        for step in self.steps:
            if step.op == "crop":
                height = width = step.size
        return height, width

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        import torch

        for step in self.steps:
            if step.op in ("hflip", "vflip"):
                if self.train:
                    flip = torch.rand(images.shape[0], generator=generator) < 0.5
                    flipped = images.flip(-1 if step.op == "hflip" else -2)
                    images = torch.where(flip.to(images.device)[:, None, None, None], flipped, images)
            elif step.op == "crop":
                images = _crop(images, step.size, generator if self.train else None)
            elif step.op == "rotate":
                if self.train:
                    images = _rotate(images, step.angles, generator)
            elif step.op == "normalize":
                mean = torch.tensor(step.mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
                std = torch.tensor(step.std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
                images = (images - mean) / std
        return images


def _crop(images: torch.Tensor, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """Random crops (a generator given) or the centre crop (none) of side ``size``."""
    import torch

    n, _, h, w = images.shape
    if generator is None:
        top, left = (h - size) // 2, (w - size) // 2
        return images[:, :, top:top + size, left:left + size]
    tops = torch.randint(0, h - size + 1, (n,), generator=generator).tolist()
    lefts = torch.randint(0, w - size + 1, (n,), generator=generator).tolist()
    return torch.stack([img[:, t:t + size, s:s + size] for img, t, s in zip(images, tops, lefts, strict=True)])


def _rotate(images: torch.Tensor, angles: tuple[float, ...], generator: torch.Generator | None) -> torch.Tensor:
    """Rotate each image by one of ``angles`` (degrees, counter-clockwise), drawn uniformly."""
    import torch

    choice = torch.randint(0, len(angles), (images.shape[0],), generator=generator)
    out = images.clone()
    for j, angle in enumerate(angles):
        rows = torch.nonzero(choice == j).flatten()
        if rows.numel() == 0 or angle % 360 == 0:
            continue
        batch = images[rows.to(images.device)]
        if angle % 90 == 0:
            rotated = torch.rot90(batch, int(angle // 90) % 4, dims=(-2, -1))
        else:
            from torchvision.transforms.v2 import InterpolationMode
            from torchvision.transforms.v2 import functional as tvf

            rotated = tvf.rotate(batch, angle, interpolation=InterpolationMode.BILINEAR, fill=0.0)
        out[rows.to(images.device)] = rotated
    return out


def image_array(data: xr.Dataset, variable: str = IMAGE) -> xr.DataArray:
    """The image variable as (sample, channel, y, x); (sample, y, x) gets a channel axis. DataError if absent."""
    if variable not in data:
        raise DataError(f"the data has no {variable!r} variable (an image dataset has {variable!r} with dims "
                        f"(sample, channel, y, x)); it has: {', '.join(map(str, data.data_vars)) or 'nothing'}")
    images = data[variable]
    if images.ndim == 3:
        images = images.expand_dims("channel", axis=1)
    if images.ndim != 4:
        raise DataError(f"{variable!r} must have dims (sample, channel, y, x), got {images.dims}")
    if images.dtype.kind not in "fuib":
        raise DataError(f"{variable!r} must be numeric (float in [0, 1] or integer pixels), got {images.dtype}")
    return images


def image_shape(data: xr.Dataset, variable: str = IMAGE) -> tuple[int, int, int]:
    """(channels, height, width) of the dataset's images."""
    _, c, h, w = image_array(data, variable).shape
    return int(c), int(h), int(w)


def to_unit_float(array: np.ndarray) -> np.ndarray:
    """Pixels as float32 in [0, 1]: integers are divided by their type's maximum, floats kept."""
    if array.dtype == bool:
        return array.astype(np.float32)
    if array.dtype.kind in "ui":
        return (array.astype(np.float32) / np.float32(np.iinfo(array.dtype).max)).astype(np.float32)
    return np.asarray(array, dtype=np.float32)


class _ImageDataset:
    """A map-style torch dataset over an xarray image dataset that reads images lazily, one batch at a time.

    Items are an image tensor (C, H, W), or ``(image, target)`` when ``targets`` is given. ``DataLoader``
    calls :meth:`__getitems__` with a batch of indices: the images are read with one ``isel`` (so dask- or
    file-backed arrays load only that batch) and transformed as a batch, with draws from a generator seeded
    by ``seed`` (same seed, same order of batches: same augmentations).

    Args:
        data: a Dataset with an ``image`` variable (sample, channel, y, x).
        targets: optional per-sample targets, already encoded (float32 for regression, int64 class indices).
        transform: applied to each batch (None: images as read).
        seed: seeds the transform's random draws.
    """

    def __init__(self, data: xr.Dataset, targets: np.ndarray | None = None, transform: BatchTransform | None = None,
                 seed: int = 0, variable: str = IMAGE):
        self.images = image_array(data, variable)
        self.dim = self.images.dims[0]
        self.targets = None if targets is None else np.asarray(targets)
        if self.targets is not None and len(self.targets) != self.images.shape[0]:
            raise ValueError(f"{len(self.targets)} targets for {self.images.shape[0]} images")
        self.transform = transform
        self.seed = seed
        self._generator = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def generator(self) -> torch.Generator:
        import torch

        if self._generator is None:
            self._generator = torch.Generator().manual_seed(int(self.seed))
        return self._generator

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """The images at ``indices`` as float32 (n, C, H, W) in [0, 1], read in one sorted ``isel``."""
        idx = np.asarray(indices, dtype=np.int64)
        order = np.argsort(idx, kind="stable")
        block = np.asarray(self.images.isel({self.dim: idx[order]}).values)
        return to_unit_float(block[np.argsort(order, kind="stable")])

    def batch(self, indices: Sequence[int]) -> torch.Tensor:
        """The transformed images at ``indices`` as one tensor (n, C, H', W')."""
        import torch

        images = torch.from_numpy(np.ascontiguousarray(self.read(indices)))
        return self.transform(images, self.generator) if self.transform is not None else images

    def unlabelled(self) -> Any:
        """The same images and transform without targets (items are image tensors), with a fresh generator."""
        twin = copy.copy(self)
        twin.targets = None
        twin._generator = None
        return twin

    def __getitems__(self, indices: Sequence[int]) -> list[Any]:
        import torch

        images = self.batch(indices)
        if self.targets is None:
            return list(images.unbind(0))
        targets = torch.from_numpy(np.ascontiguousarray(self.targets[np.asarray(indices, dtype=np.int64)]))
        return list(zip(images.unbind(0), targets.unbind(0), strict=True))

    def __getitem__(self, index: int) -> Any:
        return self.__getitems__([int(index)])[0]


def __getattr__(name: str) -> Any:
    """``ImageDataset`` subclasses ``torch.utils.data.Dataset``: built on first use so importing this module
    (for the spec types in Params) does not import torch."""
    if name == "ImageDataset":
        from torch.utils.data import Dataset

        cls = type("ImageDataset", (_ImageDataset, Dataset), {"__module__": __name__, "__doc__": _ImageDataset.__doc__})
        globals()["ImageDataset"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
