"""The box table of the detector: the ragged ``box_*`` variables (dim ``box``) read into per-image targets,
detections written back as one, and their COCO mAP.

A box is ``box_x0``, ``box_y0``, ``box_x1``, ``box_y1`` in pixels (x1, y1 exclusive) with its ``box_label``;
``box_sample`` names its image by the sample coordinate (as ``synthetic-wlp`` and ``coco`` number them).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import reflow
from reflow.imaging import image_array

if TYPE_CHECKING:
    import xarray as xr

log = logging.getLogger("reflow.vision")

BOX_COLUMNS = ("box_sample", "box_x0", "box_y0", "box_x1", "box_y1", "box_label")


def box_targets(data: xr.Dataset, required: bool = True) -> tuple[list[np.ndarray], list[list[str]]]:
    """Per image (in ``data``'s order): its boxes (k, 4) x0, y0, x1, y1 and their labels, from the box table.

    ``box_sample`` names the image by its sample coordinate (as ``synthetic-wlp`` and ``coco`` number them), so
    a subset of the images (a split) keeps its boxes; without a coordinate it is the position. Boxes of images not
    in ``data`` are ignored; boxes are clipped to the image, and empty or non-finite ones left out (warned).
    Without a box table: DataError when ``required``, else no boxes.
    """
    images = image_array(data)
    dim, n = images.dims[0], images.shape[0]
    height, width = images.shape[-2:]
    missing = [c for c in BOX_COLUMNS if c not in data]
    if missing:
        if required or len(missing) < len(BOX_COLUMNS):
            raise reflow.DataError(f"faster-rcnn needs the box table {', '.join(BOX_COLUMNS)} (dim 'box', pixels); "
                                   f"the data lacks {', '.join(missing)}")
        return [np.zeros((0, 4))] * n, [[] for _ in range(n)]
    ids = np.asarray(data[dim].values) if dim in data.coords else np.arange(n)
    position = {v.item() if isinstance(v, np.generic) else v: k for k, v in enumerate(ids)}
    owner = np.asarray(data["box_sample"].values)
    xyxy = np.column_stack([np.asarray(data[c].values, dtype=np.float64) for c in BOX_COLUMNS[1:5]]).reshape(-1, 4)
    names = np.asarray(data["box_label"].values).astype(str)
    xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, width)
    xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, height)
    boxes: list[list[np.ndarray]] = [[] for _ in range(n)]
    labels: list[list[str]] = [[] for _ in range(n)]
    dropped = 0
    for b in range(len(owner)):
        k = position.get(owner[b].item())
        if k is None:
            continue
        x0, y0, x1, y1 = xyxy[b]
        if not (np.isfinite(xyxy[b]).all() and x1 - x0 >= 1e-3 and y1 - y0 >= 1e-3):
            dropped += 1
            continue
        boxes[k].append(xyxy[b])
        labels[k].append(str(names[b]))
    if dropped:
        log.warning("faster-rcnn: %d empty or non-finite boxes left out", dropped)
    return [np.array(b, dtype=np.float64).reshape(-1, 4) for b in boxes], labels


def class_order(present: set[str], data: xr.Dataset, target: str) -> list[str]:
    """The box classes in the data's class order (``attrs["classes"]`` of ``box_label``, of the dataset or of
    the target label), then any others sorted."""
    order: list[str] = []
    for attrs in (data["box_label"].attrs, data.attrs, data[target].attrs if target in data else {}):
        value = attrs.get("classes")
        if isinstance(value, str):
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        if isinstance(value, (list, tuple, np.ndarray)) and len(value):
            order = [str(c) for c in value]
            break
    return [c for c in order if c in present] + sorted(present - set(order))


def detections_dataset(detections: list[dict[str, np.ndarray]], ids: np.ndarray, dim: str, target: str,
                       good_label: str, threshold: float) -> xr.Dataset:
    """Detections (per image: boxes, scores, labels) as the per-image label and the ragged box table."""
    import xarray as xr

    best = [d["labels"][0] if d["scores"].size and d["scores"][0] >= threshold else good_label for d in detections]
    top = [float(d["scores"][0]) if d["scores"].size else 0.0 for d in detections]
    counts = [int(d["scores"].size) for d in detections]
    owner = np.concatenate([np.repeat(ids[k:k + 1], c) for k, c in enumerate(counts)]) if counts else ids[:0]
    xyxy = np.concatenate([d["boxes"] for d in detections]).reshape(-1, 4) if detections else np.zeros((0, 4))
    labels = np.concatenate([np.asarray(d["labels"], dtype=str) for d in detections]) if detections else []
    scores = np.concatenate([d["scores"] for d in detections]) if detections else np.zeros(0)
    return xr.Dataset(
        {f"{target}_pred": (dim, np.asarray(best, dtype=str), {"description": "class of the best box, or "
                                                                              f"{good_label!r} without one"}),
         f"{target}_score": (dim, np.asarray(top, dtype=np.float64), {"description": "best box's score"}),
         "box_count": (dim, np.asarray(counts, dtype=np.int64), {"description": "boxes returned"}),
         "box_sample": ("box", np.asarray(owner), {"description": "the sample (coordinate) each box belongs to"}),
         "box_x0": ("box", xyxy[:, 0], {"units": "px", "description": "left edge"}),
         "box_y0": ("box", xyxy[:, 1], {"units": "px", "description": "top edge"}),
         "box_x1": ("box", xyxy[:, 2], {"units": "px", "description": "right edge, exclusive"}),
         "box_y1": ("box", xyxy[:, 3], {"units": "px", "description": "bottom edge, exclusive"}),
         "box_label": ("box", np.asarray(labels, dtype=str), {"description": "predicted class"}),
         "box_score": ("box", scores.astype(np.float64), {"description": "detection score in [0, 1]"})},
        coords={dim: ids, "box": np.arange(len(owner))})


def boxes_by_image(pred: xr.Dataset, ids: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """A predicted box table regrouped per image of ``ids``: (boxes (k, 4), scores (k,), labels (k,))."""
    owner = np.asarray(pred["box_sample"].values)
    xyxy = np.column_stack([np.asarray(pred[c].values, dtype=np.float64) for c in BOX_COLUMNS[1:5]]).reshape(-1, 4)
    scores = np.asarray(pred["box_score"].values, dtype=np.float64)
    labels = np.asarray(pred["box_label"].values).astype(str)
    return [(xyxy[owner == i], scores[owner == i], labels[owner == i]) for i in ids]


def mean_average_precision(predicted: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                           truth: list[tuple[np.ndarray, list[str]]]) -> dict[str, Any]:
    """COCO mAP of per-image predictions (boxes, scores, labels) against the truth (boxes, labels), by
    torchmetrics' MeanAveragePrecision (pycocotools underneath).

    Returns ``box_map_50``, ``box_map`` (mean over IoU 0.5:0.95), ``box_map_75``, ``box_mar_100``,
    ``box_ap50_<class>`` and ``box_ap_<class>`` for each class in the truth or the predictions (NaN where a class
    has no true box), ``box_true_boxes``, ``box_predicted_boxes`` and ``box_images``.
    """
    import torch
    from torchmetrics.detection import MeanAveragePrecision

    if len(predicted) != len(truth):
        raise ValueError(f"{len(predicted)} predicted images for {len(truth)} true ones")
    names = sorted({str(c) for _, _, labels in predicted for c in labels} | {c for _, labels in truth for c in labels})
    index = {c: k for k, c in enumerate(names)}
    metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True, extended_summary=True,
                                  backend="pycocotools")

    def ids(labels: Any) -> torch.Tensor:
        return torch.tensor([index[str(c)] for c in labels], dtype=torch.int64)

    metric.update([{"boxes": torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4),
                    "scores": torch.as_tensor(s, dtype=torch.float32), "labels": ids(lab)} for b, s, lab in predicted],
                  [{"boxes": torch.as_tensor(b, dtype=torch.float32).reshape(-1, 4), "labels": ids(lab)}
                   for b, lab in truth])
    n_true = int(sum(len(lab) for _, lab in truth))
    out: dict[str, Any] = {"box_images": len(truth), "box_true_boxes": n_true,
                           "box_predicted_boxes": int(sum(len(s) for _, s, _ in predicted))}
    if not names:
        return {**out, "box_map_50": math.nan, "box_map": math.nan, "box_map_75": math.nan, "box_mar_100": math.nan}
    result = metric.compute()

    def value(x: Any) -> float:
        v = float(x)
        return math.nan if v < 0 else v  # pycocotools' -1: undefined (no true box)

    out.update({"box_map_50": value(result["map_50"]), "box_map": value(result["map"]),
                "box_map_75": value(result["map_75"]), "box_mar_100": value(result["mar_100"])})
    precision = result["precision"]  # (IoU thresholds, recall points, classes, areas, max detections)
    order = [int(c) for c in torch.atleast_1d(result["classes"])]
    per_class = torch.atleast_1d(result["map_per_class"])
    for k, c in enumerate(order):
        curve = precision[0, :, k, 0, -1]
        curve = curve[curve > -1]
        out[f"box_ap50_{names[c]}"] = float(curve.mean()) if curve.numel() else math.nan
        out[f"box_ap_{names[c]}"] = value(per_class[k]) if per_class.numel() == len(order) else math.nan
    return out
