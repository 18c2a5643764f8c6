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

import contextlib
import difflib
import functools
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import reflow
from pydantic import Field, field_validator, model_validator
from reflow.imaging import image_array, image_shape
from reflow.training import TrainingConfig

from .weights import check_weights_suffix, read_state_dict

if TYPE_CHECKING:
    import torch
    import xarray as xr
    from reflow.context import RunContext

log = logging.getLogger("reflow.vision")

BACKBONES = ("small", "mobilenet-v3", "resnet50-fpn")
DEFAULT_ANCHORS = {"small": (8, 16, 32, 64), "mobilenet-v3": (16, 32, 64, 128, 256),
                   "resnet50-fpn": (8, 16, 32, 64, 128)}
LEVELS = {"small": 4, "resnet50-fpn": 5}
"""Feature maps of the per-level backbones: one anchor size each (mobilenet-v3 takes every size on each level)."""
BOX_COLUMNS = ("box_sample", "box_x0", "box_y0", "box_x1", "box_y1", "box_label")
WEIGHTS = "model.safetensors"
STATE = "state.json"
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
        return TrainingConfig(**{name: getattr(self.params, name) for name in TrainingConfig.model_fields})

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
        self.classes_ = _class_order(present, data, self._target())
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
        self.n_params_ = int(sum(p.numel() for p in self.module_.parameters()))
        n_train = len(boxes)
        device = ctx.device

        def loss_fn(model: Any, idx: torch.Tensor) -> torch.Tensor:
            net = getattr(model, "module", model)  # DistributedDataParallel wraps the detector
            images, targets = batches(idx.reshape(-1).tolist(), augment=net.training, device=device)
            if net.training:
                losses = model(images, targets)
            else:
                with _losses_in_eval(net):
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

    def _require_fitted(self) -> None:
        if getattr(self, "module_", None) is None:
            raise reflow.UserInputError("faster-rcnn is not fitted yet: call fit(data, ctx) first")

    def detect(self, data: xr.Dataset, ctx: RunContext) -> list[dict[str, np.ndarray]]:
        """Per image: ``boxes`` (k, 4) x0, y0, x1, y1 in pixels, ``scores`` (k,) and ``labels`` (k,) class
        names, best first (boxes scoring below ``min_score`` left out)."""
        import torch
        from reflow.imaging import ImageDataset
        from reflow.training import autocast

        self._require_fitted()
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
                images = [_three_channels(im).to(ctx.device) for im in pixels]
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
        self._require_fitted()
        pred = predictions if predictions is not None else self.predict(data, ctx)
        dim = image_array(data).dims[0]
        ids = np.asarray(data[dim].values) if dim in data.coords else np.arange(data.sizes[dim])
        truth_boxes, truth_labels = box_targets(data, required=False)
        found = boxes_by_image(pred, ids)
        metrics = mean_average_precision(found, list(zip(truth_boxes, truth_labels, strict=True)))
        folder = getattr(ctx, "folder", None)
        if folder is not None:
            draw_detections(data, found, truth_boxes, truth_labels, Path(folder) / FIGURE,
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

        self._require_fitted()
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
        return export_onnx(_single_image(net), checks[0], path, input_names=("image",),
                           output_names=("boxes", "scores", "labels"), opset=opset, dynamic_batch=False,
                           exporter="torchscript", atol=atol, rtol=rtol, check_inputs=checks, metadata=metadata,
                           seed=seed)

    def summary(self) -> dict[str, Any]:
        if getattr(self, "module_", None) is None:
            return {}
        last = self.history_[-1] if self.history_ else {}
        return {"params": self.n_params_, "best_epoch": self.best_epoch_, "epochs_run": len(self.history_),
                "train_seconds": round(self.train_seconds_, 3), "stopped_early": self.stopped_early_,
                "final_train_loss": last.get("train_loss", math.nan), "train_boxes": self.train_boxes_,
                "classes": len(self.classes_)}

    def plot(self, folder: str | Path) -> list[Path]:
        """The learning curve (train and validation loss per epoch) as ``learning_curve.png``."""
        from .base import _loss_plot

        self._require_fitted()
        return [_loss_plot(self.history_, Path(folder) / "learning_curve.png",
                           f"faster-rcnn ({self.params.backbone}): best epoch {self.best_epoch_}")]

    # --- persistence -------------------------------------------------------------------------------------------

    def save_state(self, directory: Path) -> None:
        from safetensors.torch import save_model

        self._require_fitted()
        state = {"classes": self.classes_, "in_chans": self.in_chans_, "img_size": self.img_size_,
                 "n_params": self.n_params_, "history": self.history_, "best_epoch": self.best_epoch_,
                 "train_seconds": self.train_seconds_, "stopped_early": self.stopped_early_,
                 "train_boxes": self.train_boxes_}
        module = self.module_
        device = next(module.parameters()).device
        save_model(module.cpu(), str(directory / WEIGHTS))
        module.to(device)
        (directory / STATE).write_text(json.dumps(state, indent=2))

    def load_state(self, directory: Path) -> None:
        from safetensors.torch import load_model

        state = json.loads((directory / STATE).read_text())
        self.classes_ = list(state["classes"])
        self.in_chans_, self.img_size_ = state["in_chans"], list(state["img_size"])
        self.n_params_, self.history_ = state["n_params"], state["history"]
        self.best_epoch_, self.train_seconds_ = state["best_epoch"], state["train_seconds"]
        self.stopped_early_, self.train_boxes_ = state["stopped_early"], state["train_boxes"]
        self.module_ = self.build_module(len(self.classes_), tuple(self.img_size_))
        load_model(self.module_, str(directory / WEIGHTS), strict=True, device="cpu")
        self.module_.eval()


# --- networks --------------------------------------------------------------------------------------------------


def build_faster_rcnn(backbone: str, num_classes: int, img_size: tuple[int, int], *,
                      anchor_sizes: tuple[int, ...] | None = None,
                      aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0), width: int = 16,
                      image_size: int | None = None, min_score: float = 0.05, max_boxes: int = 100
                      ) -> torch.nn.Module:
    """A torchvision FasterRCNN with ``num_classes`` outputs (background included) and random weights.

    Args:
        backbone: one of :data:`BACKBONES`.
        num_classes: classes including the background (index 0).
        img_size: (H, W) of the training images; the shorter side is kept (or resized to ``image_size``).
        anchor_sizes: anchor sides in pixels (default :data:`DEFAULT_ANCHORS`).
    """
    from torch import nn
    from torchvision.models.detection import FasterRCNN as TorchFasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    if backbone not in BACKBONES:
        raise reflow.UserInputError(f"unknown backbone {backbone!r}; allowed: {', '.join(BACKBONES)}")
    sizes = tuple(anchor_sizes or DEFAULT_ANCHORS[backbone])
    ratios = tuple(aspect_ratios)
    short, long = min(img_size), max(img_size)
    min_size = int(image_size or short)
    common = {"min_size": min_size, "max_size": int(math.ceil(min_size * long / short)),
              "box_score_thresh": min_score, "box_detections_per_img": max_boxes}
    if backbone == "small":
        from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
        from torchvision.ops import MultiScaleRoIAlign

        body = small_backbone(width)
        fpn = _with_fpn(body, width)
        levels = [str(k) for k in range(3)]
        generator = AnchorGenerator(tuple((s,) for s in sizes), (ratios,) * len(sizes))
        pooler = MultiScaleRoIAlign(featmap_names=levels, output_size=7, sampling_ratio=2)
        hidden = 128
        net = TorchFasterRCNN(
            fpn, num_classes=None, rpn_anchor_generator=generator, box_roi_pool=pooler,
            box_head=TwoMLPHead(fpn.out_channels * 7 * 7, hidden), box_predictor=FastRCNNPredictor(hidden, num_classes),
            rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500, rpn_pre_nms_top_n_test=500,
            rpn_post_nms_top_n_test=300, box_batch_size_per_image=64, **common)
        return _float32_heads(net)
    if backbone == "resnet50-fpn":
        from torchvision.models.detection import fasterrcnn_resnet50_fpn

        generator = AnchorGenerator(tuple((s,) for s in sizes), (ratios,) * len(sizes))
        return _float32_heads(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes,
                                                      rpn_anchor_generator=generator, **common))
    from torchvision.models.detection.backbone_utils import mobilenet_backbone

    body = mobilenet_backbone(backbone_name="mobilenet_v3_large", weights=None, fpn=True, norm_layer=nn.BatchNorm2d,
                              trainable_layers=6)
    generator = AnchorGenerator((sizes,) * 3, (ratios,) * 3)
    return _float32_heads(TorchFasterRCNN(body, num_classes=num_classes, rpn_anchor_generator=generator,
                                          rpn_score_thresh=0.05, **common))


def _float32_heads(net: torch.nn.Module) -> torch.nn.Module:
    """Run the RPN and the box heads in float32 even inside a bf16 autocast region; only the backbone (most of
    the work) runs in bf16. bf16 box coordinates have steps of 0.25 px at 32-64 px and 1 px at 128-256 px: too
    coarse for small defects. The classes change, the parameter names do not."""
    rpn_class, heads_class = _float32_head_classes()
    net.rpn.__class__ = rpn_class
    net.roi_heads.__class__ = heads_class
    return net


@functools.cache
def _float32_head_classes() -> tuple[type, type]:
    import torch
    from torchvision.models.detection.roi_heads import RoIHeads
    from torchvision.models.detection.rpn import RegionProposalNetwork

    def as_float(features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.float() for k, v in features.items()}

    def no_autocast(features: dict[str, torch.Tensor]) -> Any:
        return torch.autocast(device_type=next(iter(features.values())).device.type, enabled=False)

    class Float32RPN(RegionProposalNetwork):
        def forward(self, images: Any, features: dict[str, torch.Tensor], targets: Any = None) -> Any:
            with no_autocast(features):
                return super().forward(images, as_float(features), targets)

    class Float32RoIHeads(RoIHeads):
        def forward(self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor], image_shapes: Any,
                    targets: Any = None) -> Any:
            with no_autocast(features):
                return super().forward(as_float(features), [p.float() for p in proposals], image_shapes, targets)

    return Float32RPN, Float32RoIHeads


def small_backbone(width: int) -> torch.nn.Module:
    """Four conv stages (conv-BN-ReLU, the first of each with stride 2): strides 2, 4, 8, 16 and widths
    w, 2w, 4w, 8w. Named children so torchvision's IntermediateLayerGetter can tap them."""
    from collections import OrderedDict

    from torch import nn

    def stage(c_in: int, c_out: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out),
                             nn.ReLU(inplace=True), nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
                             nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))

    widths = [width, 2 * width, 4 * width, 8 * width]
    names = ("stem", "layer1", "layer2", "layer3")
    return nn.Sequential(OrderedDict((name, stage(c_in, c_out))
                                     for name, c_in, c_out in zip(names, [3, *widths[:3]], widths, strict=True)))


def _with_fpn(body: torch.nn.Module, width: int) -> torch.nn.Module:
    """Feature pyramid over layer1..layer3 (strides 4, 8, 16) plus a max-pooled level (stride 32)."""
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    return BackboneWithFPN(body, return_layers={"layer1": "0", "layer2": "1", "layer3": "2"},
                           in_channels_list=[2 * width, 4 * width, 8 * width], out_channels=4 * width,
                           extra_blocks=LastLevelMaxPool())


def load_weights(module: torch.nn.Module, path: Path) -> list[str]:
    """Copy the tensors of a local state dict that fit ``module`` (by name and shape); a backbone's state dict
    (``conv1.weight``, ...) is matched under ``backbone.body.``. Returns the names skipped."""
    state = read_state_dict(path)
    own = module.state_dict()

    def fitting(prefix: str) -> dict[str, Any]:
        return {prefix + k: v for k, v in state.items()
                if prefix + k in own and tuple(v.shape) == tuple(own[prefix + k].shape)}

    prefix, chosen = max(((p, fitting(p)) for p in ("", "backbone.body.", "backbone.")), key=lambda pc: len(pc[1]))
    if not chosen:
        raise reflow.DataError(f"weights: no tensor in {path} fits the detector (names or shapes differ)")
    module.load_state_dict(chosen, strict=False)
    skipped = sorted(k for k in state if prefix + k not in chosen)
    log.info("weights %s: %d tensors loaded, %d skipped", path, len(chosen), len(skipped))
    return skipped


@contextlib.contextmanager
def _losses_in_eval(net: torch.nn.Module) -> Iterator[None]:
    """Let a torchvision detector in eval mode return its losses: the RPN and box heads (no BatchNorm or dropout)
    run in training mode, the backbone and the transform stay in eval mode (running BN statistics untouched)."""
    parts = [net, net.rpn, net.roi_heads]
    before = [m.training for m in parts]
    net.training = True
    net.rpn.train()
    net.roi_heads.train()
    try:
        yield
    finally:
        net.training = before[0]
        net.rpn.train(before[1])
        net.roi_heads.train(before[2])


def _single_image(net: torch.nn.Module) -> torch.nn.Module:
    """The detector as a module of one tensor: (1, C, H, W) pixels -> (boxes, scores, labels), for ONNX."""
    from torch import nn

    class SingleImage(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            found = self.net([_three_channels(image[0])])[0]
            return found["boxes"], found["scores"], found["labels"]

    return SingleImage().eval()


def _three_channels(image: torch.Tensor) -> torch.Tensor:
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


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
            images.append(_three_channels(image).to(device))
            targets.append({"boxes": boxes.to(device),
                            "labels": torch.as_tensor(self.labels[i], dtype=torch.int64).reshape(-1).to(device)})
        return images, targets


# --- the box table ---------------------------------------------------------------------------------------------


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


def _class_order(present: set[str], data: xr.Dataset, target: str) -> list[str]:
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


# --- metrics and figures ---------------------------------------------------------------------------------------


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


def draw_detections(data: xr.Dataset, found: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                    truth_boxes: list[np.ndarray], truth_labels: list[list[str]], path: Path, classes: list[str],
                    threshold: float = 0.5, n: int = 8, title: str = "") -> Path:
    """Up to ``n`` images (those with true boxes first) with the true boxes dashed and the predicted ones
    (scoring at least ``threshold``) solid, coloured by class, with their scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle
    from reflow.imaging import ImageDataset

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
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
