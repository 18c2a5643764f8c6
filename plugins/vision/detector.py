"""``faster-rcnn``: a torchvision Faster R-CNN defect detector (Ren et al. 2017; seed 000, section "ML-based
defect detection": the two-stage detector for small defects on complex backgrounds).

It learns the boxes of the data's ragged box table (dim ``box``: ``box_sample``, ``box_x0``, ``box_y0``,
``box_x1``, ``box_y1`` in pixels, ``box_label``; as ``synthetic-wlp`` and ``coco`` give it) and predicts boxes in
the same form plus ``box_score``, and a per-image ``<target>_pred``: the class of its best box, or ``good_label``
when no box reaches ``label_threshold`` (so the ``train`` task scores image classification too). Images without
boxes are negatives.

Backbones (``backbone``), all built from scratch (reflow never downloads weights; ``weights`` may name a local
state dict, read with ``weights_only=True``):

- ``small``: four conv stages (strides 2, 4, 8, 16) under a feature pyramid (``0``..``2`` plus ``pool``), anchors
  8, 16, 32, 64 px: small defects, trains on a CPU;
- ``mobilenet-v3``: torchvision's fasterrcnn_mobilenet_v3_large_fpn layout (strides 32, 32 and 64: coarse for
  tiny defects), every anchor size on each level;
- ``resnet50-fpn``: torchvision's fasterrcnn_resnet50_fpn (strides 4 to 64), anchors 8 to 128 px.

Grey images are repeated to 3 channels. Images are not resized (``image_size`` asks for it), unlike torchvision's
default of 800 px. Training goes through reflow.training's loop (AdamW, warm-up and cosine, early stopping on the
validation loss, ``epochs.csv``, bf16 autocast on CUDA, deterministic on CPU for a seed): its batches are image
indices from which the ragged targets are built. The validation loss is taken with the backbone in eval mode.
Under bf16 autocast only the backbone runs in bf16; the RPN and box heads stay in float32 (box coordinates).
"""

from __future__ import annotations

import difflib
import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import reflow
from pydantic import Field, field_validator, model_validator
from reflow.imaging import image_array, image_shape
from reflow.training import TrainingConfig, count_parameters

from .base import STATE, WEIGHTS, training_config, training_summary
from .boxes import BOX_COLUMNS, box_targets, boxes_by_image, class_order, detections_dataset, mean_average_precision
from .detector_net import (
    BACKBONES,
    DEFAULT_ANCHORS,
    LEVELS,
    build_faster_rcnn,
    load_weights,
    losses_in_eval,
    single_image,
    three_channels,
)
from .figures import draw_detections, loss_plot
from .weights import check_weights_suffix, load_module, save_module

if TYPE_CHECKING:
    import torch
    import xarray as xr
    from reflow.context import RunContext

log = logging.getLogger("reflow.vision")

FIGURE = "detections.png"


class DetectorParams(TrainingConfig):
    """The training loop's params (epochs, batch_size, lr, ...) and the detector's."""

    epochs: int = Field(30, ge=1, description="passes over the training images")
    batch_size: int = Field(8, ge=1, description="images per step")
    lr: float = Field(1e-3, gt=0, description="peak learning rate of AdamW")
    weight_decay: float = Field(1e-4, ge=0, description="AdamW weight decay")
    backbone: str = Field("small", description="small (a compact CNN + FPN that trains on a CPU), mobilenet-v3 "
                                               "(fasterrcnn_mobilenet_v3_large_fpn) or resnet50-fpn "
                                               "(fasterrcnn_resnet50_fpn); all from scratch")
    width: int = Field(16, ge=4, le=256, description="small backbone: channels of its first stage (doubling per "
                                                     "stage; the pyramid has 4x width)")
    anchor_sizes: list[int] | None = Field(
        None, description="anchor sides in pixels: one per feature map for small (4) and resnet50-fpn (5), any "
                          "number for mobilenet-v3; default: small 8-64, resnet50-fpn 8-128, mobilenet-v3 16-256")
    aspect_ratios: list[float] = Field([0.5, 1.0, 2.0], min_length=1, description="anchor height/width ratios")
    image_size: int | None = Field(None, ge=32, le=4096, description="resize the shorter image side to this "
                                                                     "(null: keep the training images' size)")
    flips: bool = Field(True, description="random horizontal and vertical flips of images and boxes in training")
    min_score: float = Field(0.05, ge=0.0, lt=1.0, description="boxes scoring below this are not returned")
    label_threshold: float = Field(0.5, ge=0.0, le=1.0, description="an image is labelled with its best box's "
                                                                    "class when that box scores at least this")
    max_boxes: int = Field(100, ge=1, le=1000, description="at most this many boxes per image")
    good_label: str = Field("good", min_length=1, description="<target>_pred of an image without a box")
    weights: str | None = Field(None, description="optional local state dict to start from (.safetensors, .pt, "
                                                  ".pth; a detector's or a backbone's; never downloaded)")
    eval_batch_size: int = Field(16, ge=1, description="images per batch when predicting")

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, value: str) -> str:
        if value in BACKBONES:
            return value
        close = difflib.get_close_matches(value, BACKBONES, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown backbone {value!r}{hint}; allowed: {', '.join(BACKBONES)}")

    @field_validator("anchor_sizes")
    @classmethod
    def _positive_sizes(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or any(s < 1 for s in value)):
            raise ValueError(f"anchor_sizes must be a non-empty list of sides >= 1 px, got {value}")
        return value

    @field_validator("aspect_ratios")
    @classmethod
    def _positive_ratios(cls, value: list[float]) -> list[float]:
        if any(not (r > 0 and math.isfinite(r)) for r in value):
            raise ValueError(f"aspect_ratios must be positive numbers, got {value}")
        return value

    @field_validator("weights")
    @classmethod
    def _weights_suffix(cls, value: str | None) -> str | None:
        return check_weights_suffix(value)

    @model_validator(mode="after")
    def _anchors_fit_backbone(self) -> DetectorParams:
        levels = LEVELS.get(self.backbone)
        if self.anchor_sizes is not None and levels is not None and len(self.anchor_sizes) != levels:
            raise ValueError(f"anchor_sizes: backbone {self.backbone!r} has {levels} feature maps and takes one "
                             f"anchor size per map ({levels} numbers, e.g. {list(DEFAULT_ANCHORS[self.backbone])}), "
                             f"got {len(self.anchor_sizes)}: {self.anchor_sizes}")
        return self


class FasterRCNN(reflow.Model):
    """Faster R-CNN on the ``image`` variable, trained on the ``box_*`` table; see the module docstring.

    ``configure``'s one target names the per-image label it predicts (``<target>_pred``); the boxes are read from
    the box table whatever the target is.
    """

    family: ClassVar[str] = "detector"
    uses_images: ClassVar[bool] = True
    Params = DetectorParams

    # --- network -----------------------------------------------------------------------------------------------

    def anchors(self) -> tuple[int, ...]:
        return tuple(self.params.anchor_sizes or DEFAULT_ANCHORS[self.params.backbone])

    def build_module(self, n_classes: int, img_size: tuple[int, int]) -> torch.nn.Module:
        """The detector for ``n_classes`` defect classes (plus background) on images of ``img_size`` (H, W)."""
        return build_faster_rcnn(self.params.backbone, n_classes + 1, img_size, anchor_sizes=self.anchors(),
                                 aspect_ratios=tuple(self.params.aspect_ratios), width=self.params.width,
                                 image_size=self.params.image_size, min_score=self.params.min_score,
                                 max_boxes=self.params.max_boxes)

    def training_config(self) -> TrainingConfig:
        return training_config(self.params)

    # --- fit -----------------------------------------------------------------------------------------------------

    def _target(self) -> str:
        if len(self.targets) != 1:
            raise reflow.UserInputError(f"faster-rcnn predicts one per-image label (e.g. target: label); got "
                                        f"targets {self.targets or 'none'}")
        return self.targets[0]

    def fit(self, data: xr.Dataset, ctx: RunContext, validation: xr.Dataset | None = None) -> FasterRCNN:
        import torch
        from reflow.training import fit_module

        self._target()
        channels, height, width = image_shape(data)
        if channels not in (1, 3):
            raise reflow.DataError(f"faster-rcnn takes grey (1-channel) or RGB (3-channel) images, these have "
                                   f"{channels} channels")
        boxes, labels = box_targets(data)
        present = {c for names in labels for c in names}
        if not present:
            raise reflow.DataError("faster-rcnn: the training images have no boxes; a detector learns from the box "
                                   f"table ({', '.join(BOX_COLUMNS)}) with at least one box")
        self.classes_ = class_order(present, data, self._target())
        self.in_chans_ = channels
        self.img_size_ = [height, width]
        index = {c: k + 1 for k, c in enumerate(self.classes_)}  # 0 is the background
        parts = [(data, boxes, [[index[c] for c in names] for names in labels])]
        val = validation
        n_val = 0
        if val is not None and "image" in val and image_array(val).shape[0] > 0:
            if image_shape(val) != (channels, height, width):
                raise reflow.DataError(f"faster-rcnn: validation images are {image_shape(val)}, the training images "
                                       f"{(channels, height, width)} (channels, height, width)")
            vboxes, vlabels = box_targets(val, required=False)
            keep = [[k for k, c in enumerate(names) if c in index] for names in vlabels]
            parts.append((val, [b[k] for b, k in zip(vboxes, keep, strict=True)],
                          [[index[names[j]] for j in k] for names, k in zip(vlabels, keep, strict=True)]))
            n_val = len(vboxes)
        batches = _BoxBatches(parts, flips=self.params.flips, seed=ctx.seed)

        torch.manual_seed(ctx.seed)
        self.module_ = self.build_module(len(self.classes_), (height, width))
        if self.params.weights is not None:
            load_weights(self.module_, ctx.resolve_path(self.params.weights))
        self.n_params_ = count_parameters(self.module_)
        n_train = len(boxes)
        device = ctx.device

        def loss_fn(model: Any, idx: torch.Tensor) -> torch.Tensor:
            net = getattr(model, "module", model)  # DistributedDataParallel wraps the detector
            images, targets = batches(idx.reshape(-1).tolist(), augment=net.training, device=device)
            if net.training:
                losses = model(images, targets)
            else:
                with losses_in_eval(net):
                    losses = net(images, targets)
            return sum(losses.values())

        history = fit_module(self.module_, loss_fn, torch.arange(n_train),
                             val=torch.arange(n_train, n_train + n_val) if n_val else None,
                             config=self.training_config(), device=device, seed=ctx.seed, folder=ctx.folder,
                             quiet=ctx.quiet, description="faster-rcnn training")
        self.history_ = [dict(row) for row in history.epochs]
        self.best_epoch_ = int(history.best_epoch)
        self.train_seconds_ = float(history.seconds)
        self.stopped_early_ = bool(history.stopped_early)
        self.train_boxes_ = int(sum(len(b) for b in boxes))
        return self

    # --- predict -------------------------------------------------------------------------------------------------

    def detect(self, data: xr.Dataset, ctx: RunContext) -> list[dict[str, np.ndarray]]:
        """Per image: ``boxes`` (k, 4) x0, y0, x1, y1 in pixels, ``scores`` (k,) and ``labels`` (k,) class
        names, best first (boxes scoring below ``min_score`` left out)."""
        import torch
        from reflow.imaging import ImageDataset
        from reflow.training import autocast

        self.require_fitted("module_")
        channels = image_shape(data)[0]
        if channels != self.in_chans_:
            raise reflow.DataError(f"faster-rcnn was trained on {self.in_chans_}-channel images; these have "
                                   f"{channels}")
        reader = ImageDataset(data)
        module = self.module_.to(ctx.device).eval()
        classes = np.asarray(self.classes_, dtype=str)
        out: list[dict[str, np.ndarray]] = []
        step = self.params.eval_batch_size
        with torch.inference_mode():
            for start in range(0, len(reader), step):
                pixels = torch.from_numpy(reader.read(range(start, min(start + step, len(reader)))))
                images = [three_channels(im).to(ctx.device) for im in pixels]
                with autocast(ctx.device, self.params.precision):
                    found = module(images)
                for d in found:
                    labels = d["labels"].cpu().numpy().astype(np.int64)
                    out.append({"boxes": d["boxes"].float().cpu().numpy().astype(np.float64).reshape(-1, 4),
                                "scores": d["scores"].float().cpu().numpy().astype(np.float64),
                                "labels": classes[labels - 1] if labels.size else np.zeros(0, dtype=str)})
        return out

    def predict(self, data: xr.Dataset, ctx: RunContext) -> xr.Dataset:
        """``<target>_pred`` (best box's class or ``good_label``), ``<target>_score`` (best box's score, 0 without
        a box) and ``box_count`` on the sample dim; the boxes as ``box_sample`` (the image's sample coordinate),
        ``box_x0``, ``box_y0``, ``box_x1``, ``box_y1``, ``box_label``, ``box_score`` on dim ``box``."""
        target = self._target()
        dim = image_array(data).dims[0]
        detections = self.detect(data, ctx)
        ids = np.asarray(data[dim].values) if dim in data.coords else np.arange(len(detections))
        return detections_dataset(detections, ids, dim, target, self.params.good_label,
                                  self.params.label_threshold)

    # --- scores --------------------------------------------------------------------------------------------------

    def score(self, data: xr.Dataset, ctx: RunContext, predictions: xr.Dataset | None = None) -> dict[str, Any]:
        """mAP of the predicted boxes against ``data``'s box table (torchmetrics' MeanAveragePrecision, COCO
        rules): ``box_map_50`` (IoU 0.5), ``box_map`` (IoU 0.5:0.95), ``box_map_75``, ``box_mar_100``, per class
        ``box_ap50_<class>`` and ``box_ap_<class>``, and the box counts. Draws ``detections.png`` (a few images,
        truth dashed, predictions solid, coloured by class) into ``ctx.folder``."""
        self.require_fitted("module_")
        pred = predictions if predictions is not None else self.predict(data, ctx)
        dim = image_array(data).dims[0]
        ids = np.asarray(data[dim].values) if dim in data.coords else np.arange(data.sizes[dim])
        truth_boxes, truth_labels = box_targets(data, required=False)
        found = boxes_by_image(pred, ids)
        metrics = mean_average_precision(found, list(zip(truth_boxes, truth_labels, strict=True)))
        draw_detections(data, found, truth_boxes, truth_labels, Path(ctx.folder) / FIGURE,
                        classes=list(self.classes_), threshold=self.params.label_threshold,
                        title=f"faster-rcnn ({self.params.backbone}): mAP@0.5 {metrics['box_map_50']:.3f}")
        return metrics

    # --- export ------------------------------------------------------------------------------------------------

    def export_onnx(self, path: str | Path, data: xr.Dataset | None = None, *, samples: int = 4, opset: int = 17,
                    min_score: float | None = None, atol: float = 1e-4, rtol: float = 1e-3,
                    seed: int = 0) -> dict[str, Any]:
        """Write the detector as ONNX with reflow.plugins.vision.onnx.export_onnx (TorchScript exporter, which
        torchvision's detectors support) and check it against torch with onnxruntime.

        The graph takes ``image`` (1, C, H, W): one image of the training size, pixels in [0, 1]; it returns
        ``boxes`` (k, 4) x0, y0, x1, y1 in pixels, ``scores`` (k,) and ``labels`` (k,) class indices (1 is
        ``classes[0]``; the ``classes`` metadata lists them), best first, as :meth:`detect`, for the boxes scoring
        at least ``min_score`` (default: ``label_threshold``). Low-scoring boxes are left out because onnxruntime's
        non-maximum suppression sometimes keeps another of two near-tied weak boxes than torchvision's (3 of 40
        test images differed at 0.05, none at 0.3). The parity check runs on the first ``samples`` images of
        ``data`` (random pixels without data); outputs must agree within ``atol + rtol * |torch|`` and in their
        number of boxes. Needs the ``export`` extra (onnx, onnxruntime).

        Returns:
            export_onnx's metrics (``onnx_max_abs_diff``, ``onnx_bytes``, ...).
        """
        import copy

        import torch

        from .onnx import export_onnx

        self.require_fitted("module_")
        threshold = self.params.label_threshold if min_score is None else float(min_score)
        net = copy.deepcopy(self.module_).cpu().eval()
        net.roi_heads.score_thresh = threshold
        height, width = self.img_size_
        if data is not None:
            from reflow.imaging import ImageDataset

            if image_shape(data) != (self.in_chans_, height, width):
                raise reflow.DataError(f"faster-rcnn export: the check images are {image_shape(data)}; the detector "
                                       f"was trained on {(self.in_chans_, height, width)} (channels, height, width)")
            reader = ImageDataset(data)
            checks = [torch.from_numpy(reader.read([k])) for k in range(min(samples, len(reader)))]
        else:
            generator = torch.Generator().manual_seed(seed)
            checks = [torch.rand((1, self.in_chans_, height, width), generator=generator) for _ in range(samples)]
        metadata = {"reflow_model": "faster-rcnn", "backbone": self.params.backbone, "target": ",".join(self.targets),
                    "classes": json.dumps(list(self.classes_)),
                    "input": f"image: (1, {self.in_chans_}, {height}, {width}) pixels in [0, 1]",
                    "outputs": "boxes (k, 4) x0, y0, x1, y1 px; scores (k,); labels (k,): 1 = classes[0]",
                    "min_score": str(threshold), "label_threshold": str(self.params.label_threshold),
                    "good_label": self.params.good_label}
        return export_onnx(single_image(net), checks[0], path, input_names=("image",),
                           output_names=("boxes", "scores", "labels"), opset=opset, dynamic_batch=False,
                           exporter="torchscript", atol=atol, rtol=rtol, check_inputs=checks, metadata=metadata,
                           seed=seed)

    def summary(self) -> dict[str, Any]:
        if not self.is_fitted("module_"):
            return {}
        return {**training_summary(self.n_params_, self.history_, self.best_epoch_, self.train_seconds_,
                                   self.stopped_early_),
                "train_boxes": self.train_boxes_, "classes": len(self.classes_)}

    def plot(self, folder: str | Path) -> list[Path]:
        """The learning curve (train and validation loss per epoch) as ``learning_curve.png``."""
        self.require_fitted("module_")
        return [loss_plot(self.history_, Path(folder) / "learning_curve.png",
                           f"faster-rcnn ({self.params.backbone}): best epoch {self.best_epoch_}")]

    # --- persistence -------------------------------------------------------------------------------------------

    def save_state(self, directory: Path) -> None:
        self.require_fitted("module_")
        state = {"classes": self.classes_, "in_chans": self.in_chans_, "img_size": self.img_size_,
                 "n_params": self.n_params_, "history": self.history_, "best_epoch": self.best_epoch_,
                 "train_seconds": self.train_seconds_, "stopped_early": self.stopped_early_,
                 "train_boxes": self.train_boxes_}
        save_module(self.module_, directory / WEIGHTS)
        (directory / STATE).write_text(json.dumps(state, indent=2))

    def load_state(self, directory: Path) -> None:
        state = json.loads((directory / STATE).read_text())
        self.classes_ = list(state["classes"])
        self.in_chans_, self.img_size_ = state["in_chans"], list(state["img_size"])
        self.n_params_, self.history_ = state["n_params"], state["history"]
        self.best_epoch_, self.train_seconds_ = state["best_epoch"], state["train_seconds"]
        self.stopped_early_, self.train_boxes_ = state["stopped_early"], state["train_boxes"]
        self.module_ = self.build_module(len(self.classes_), tuple(self.img_size_))
        load_module(self.module_, directory / WEIGHTS)


class _BoxBatches:
    """Images and targets by one running index over several parts (training first, then validation): what the
    shared training loop's index batches turn into. Flips (training only) come from a seeded generator."""

    def __init__(self, parts: list[tuple[Any, list[np.ndarray], list[list[int]]]], flips: bool, seed: int):
        from reflow.imaging import ImageDataset

        self.readers = [ImageDataset(data) for data, _, _ in parts]
        self.boxes = [b for _, boxes, _ in parts for b in boxes]
        self.labels = [lab for _, _, labels in parts for lab in labels]
        self.offsets = np.cumsum([0] + [len(r) for r in self.readers])
        self.flips = flips
        self.seed = seed
        self._generator = None

    def __call__(self, indices: list[int], augment: bool, device: str) -> tuple[list[Any], list[dict[str, Any]]]:
        import torch

        if self._generator is None:
            self._generator = torch.Generator().manual_seed(int(self.seed))
        parts = [int(np.searchsorted(self.offsets, i, side="right") - 1) for i in indices]
        pixels: dict[int, Any] = {}
        for part in sorted(set(parts)):  # one read per part: lazy (dask) images load only this batch
            local = [i - int(self.offsets[part]) for i, p in zip(indices, parts, strict=True) if p == part]
            block = self.readers[part].read(local)
            pixels.update({i: block[j] for j, i in enumerate(k for k, p in zip(indices, parts, strict=True)
                                                             if p == part)})
        images, targets = [], []
        for i in indices:
            image = torch.from_numpy(pixels[i])
            boxes = torch.as_tensor(self.boxes[i], dtype=torch.float32).reshape(-1, 4)
            if augment and self.flips:
                h, w = image.shape[-2:]
                hflip, vflip = (torch.rand(2, generator=self._generator) < 0.5).tolist()
                if hflip:
                    image = image.flip(-1)
                    boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
                if vflip:
                    image = image.flip(-2)
                    boxes = torch.stack([boxes[:, 0], h - boxes[:, 3], boxes[:, 2], h - boxes[:, 1]], dim=1)
            images.append(three_channels(image).to(device))
            targets.append({"boxes": boxes.to(device),
                            "labels": torch.as_tensor(self.labels[i], dtype=torch.int64).reshape(-1).to(device)})
        return images, targets
