"""The torchvision Faster R-CNN networks behind ``faster-rcnn``: the backbones, anchors and float32 heads, local
weights, and the tricks the model needs of them (losses in eval mode, one image in for ONNX).

Everything is built from scratch (reflow never downloads weights); see reflow.plugins.vision.detector for the
backbones' strides and anchors.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import reflow

from .weights import read_state_dict

if TYPE_CHECKING:
    import torch

log = logging.getLogger("reflow.vision")

BACKBONES = ("small", "mobilenet-v3", "resnet50-fpn")
DEFAULT_ANCHORS = {"small": (8, 16, 32, 64), "mobilenet-v3": (16, 32, 64, 128, 256),
                   "resnet50-fpn": (8, 16, 32, 64, 128)}
LEVELS = {"small": 4, "resnet50-fpn": 5}
"""Feature maps of the per-level backbones: one anchor size each (mobilenet-v3 takes every size on each level)."""


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
def losses_in_eval(net: torch.nn.Module) -> Iterator[None]:
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


def single_image(net: torch.nn.Module) -> torch.nn.Module:
    """The detector as a module of one tensor: (1, C, H, W) pixels -> (boxes, scores, labels), for ONNX."""
    from torch import nn

    class SingleImage(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            found = self.net([three_channels(image[0])])[0]
            return found["boxes"], found["scores"], found["labels"]

    return SingleImage().eval()


def three_channels(image: torch.Tensor) -> torch.Tensor:
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image
