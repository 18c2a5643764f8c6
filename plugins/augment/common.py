"""What both augmenters and the ``augment`` task share: the class list of an image dataset, its images as
float32 arrays in [0, 1], requests of images per class, and the dataset format of generated images.

A generated dataset has the same form as a real one (``image`` (sample, channel, y, x) float32 in [0, 1],
``label`` text, ``label_index`` int, the class order in ``attrs["classes"]`` and ``label.attrs["classes"]``) plus
``synthetic`` (bool, True), so it can be concatenated with real images and fed to any vision model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import reflow

if TYPE_CHECKING:
    import xarray as xr

LABEL = "label"
SYNTHETIC = "synthetic"


def _as_list(value: Any) -> list[str] | None:
    """A ``classes`` attribute as a list: stored datasets keep lists as JSON text (reflow.store)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return None


def label_values(data: xr.Dataset, label: str = LABEL) -> np.ndarray:
    """The class label of every sample as text; DataError naming the variable when it is missing."""
    if label not in data:
        raise reflow.DataError(f"the image data has no class variable {label!r} (it has: "
                               f"{', '.join(map(str, data.data_vars))}); name it with the 'label' param")
    values = np.asarray(data[label].values)
    if values.ndim != 1:
        raise reflow.DataError(f"class variable {label!r} must be one label per sample, got dims {data[label].dims}")
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object).astype(str)


def class_order(data: xr.Dataset, label: str = LABEL) -> list[str]:
    """The classes in their declared order (``data[label].attrs["classes"]``, else ``data.attrs["classes"]``),
    with any class present in the data but not declared appended in sorted order."""
    present = sorted(set(label_values(data, label).tolist()))
    declared = _as_list(data[label].attrs.get("classes")) or _as_list(data.attrs.get("classes")) or []
    return list(dict.fromkeys([*declared, *present]))


def unit_images(data: xr.Dataset) -> np.ndarray:
    """The images as a float32 array (n, C, H, W) in [0, 1] (integer pixels are scaled by their type's maximum)."""
    from reflow.imaging import image_array, to_unit_float

    return to_unit_float(np.asarray(image_array(data).values))


def sample_dim(data: xr.Dataset) -> str:
    """The name of the sample dimension of an image dataset (the first dim of ``image``)."""
    from reflow.imaging import image_array

    return str(image_array(data).dims[0])


def check_request(n_per_class: Mapping[str, int], classes: Sequence[str], where: str) -> dict[str, int]:
    """Validate ``{class: n}``: every class known, every count a non-negative integer."""
    if not isinstance(n_per_class, Mapping):
        raise reflow.UserInputError(f"{where}: n_per_class must be a mapping {{class: count}}, got {n_per_class!r}")
    unknown = [c for c in n_per_class if str(c) not in classes]
    if unknown:
        raise reflow.UserInputError(f"{where}: unknown class(es) {', '.join(map(repr, unknown))} in per_class; "
                                    f"the classes are: {', '.join(classes)}")
    out: dict[str, int] = {}
    for c, n in n_per_class.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise reflow.UserInputError(f"{where}: the count for class {c!r} must be an integer >= 0, got {n!r}")
        out[str(c)] = int(n)
    return out


def generated_dataset(images: np.ndarray, labels: Sequence[str], classes: Sequence[str],
                      extra: Mapping[str, np.ndarray] | None = None, attrs: Mapping[str, Any] | None = None
                      ) -> xr.Dataset:
    """Generated images in the image-dataset format: ``image``, ``label``, ``label_index``, ``synthetic``."""
    import xarray as xr

    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    labels = np.asarray(list(labels), dtype=str)
    n = images.shape[0]
    ds = xr.Dataset(
        {"image": (("sample", "channel", "y", "x"), np.clip(images, 0.0, 1.0).astype(np.float32)),
         LABEL: ("sample", labels),
         "label_index": ("sample", np.array([index[c] for c in labels], dtype=np.int64)),
         SYNTHETIC: ("sample", np.ones(n, dtype=bool))},
        coords={"sample": np.arange(n)},
    )
    for name, values in (extra or {}).items():
        ds[name] = ("sample", np.asarray(values))
    ds[LABEL].attrs["classes"] = classes
    ds.attrs["classes"] = classes
    ds.attrs.update(attrs or {})
    return ds


def resize_images(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Images (n, C, H, W) resized to (height, width): area averaging when shrinking, bilinear when growing."""
    import torch
    import torch.nn.functional as F

    if images.shape[-2:] == (height, width):
        return images
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    if height <= images.shape[-2] and width <= images.shape[-1]:
        out = F.interpolate(x, size=(height, width), mode="area")
    else:
        out = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return out.clamp(0.0, 1.0).numpy()


def check_targets(targets: Sequence[str], name: str) -> None:
    """A generator's only output is the image: a ``train`` stage that names another target gets a clear error
    before any training, instead of a meaningless score of the label it was told to generate."""
    other = [t for t in targets if t != "image"]
    if other:
        raise reflow.UserInputError(f"{name} is a generator: it makes images and predicts no {', '.join(other)}; "
                                    f"train it in an augment stage (task: augment, augmenter: {name}), which also "
                                    "checks the generated images")
