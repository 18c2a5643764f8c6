"""``ffn-multiscale``: the Feature Fusion Network of seed 001 (ADRCS, wafer-level-packaging defect classification).

The paper's FFN is "three parallel CNN branches that extract features at different scales (using tailored pooling
operations); features from each branch are concatenated and fed into a fully connected layer". It gives no layer
sizes, so here each branch is a small VGG-style stack (``depth`` blocks of conv-BN-ReLU + 2x2 max-pool, channels
doubling from ``width``) that sees the image at its own scale: branch i first average-pools the input by
``input_scales[i]`` and convolves with ``kernels[i]`` x ``kernels[i]`` kernels of dilation ``dilations[i]``. The
defaults (full, 1/2 and 1/4 resolution with 3x3, 5x5 and 7x7 kernels) let one branch resolve hairline cracks and
another whole-die shifts. Each branch ends in global average and max pooling (the "tailored pooling"); the pooled
features of the branches are concatenated and classified by an MLP head (one hidden layer, dropout).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import reflow
from pydantic import Field, model_validator

from .base import VisionModel, VisionParams

if TYPE_CHECKING:
    import torch


class FFNParams(VisionParams):
    kernels: list[int] = Field([3, 5, 7], min_length=1, max_length=6,
                               description="kernel side of each branch's convolutions (odd), one per branch")
    dilations: list[int] = Field([1, 1, 1], min_length=1, max_length=6,
                                 description="dilation of each branch's convolutions, one per branch")
    input_scales: list[int] = Field([1, 2, 4], min_length=1, max_length=6,
                                    description="each branch average-pools the input by this factor first (1: full "
                                                "resolution), one per branch")
    width: int = Field(16, ge=2, le=512, description="channels of each branch's first block (doubling per block)")
    depth: int = Field(3, ge=1, le=8, description="conv blocks per branch (each halves the feature map)")
    head_hidden: int = Field(128, ge=0, description="hidden width of the MLP head (0: one linear layer)")
    dropout: float = Field(0.3, ge=0, lt=1, description="dropout before the head's layers")

    @model_validator(mode="after")
    def _branches_agree(self) -> FFNParams:
        n = {len(self.kernels), len(self.dilations), len(self.input_scales)}
        if len(n) != 1:
            raise ValueError(f"kernels ({len(self.kernels)}), dilations ({len(self.dilations)}) and input_scales "
                             f"({len(self.input_scales)}) need one value per branch each")
        if any(k < 1 or k % 2 == 0 for k in self.kernels):
            raise ValueError(f"kernels must be odd and >= 1 (so a convolution keeps the map size), got {self.kernels}")
        if any(d < 1 for d in self.dilations) or any(s < 1 for s in self.input_scales):
            raise ValueError(f"dilations and input_scales must be >= 1, got {self.dilations} and "
                             f"{self.input_scales}")
        return self


class FFNMultiscale(VisionModel):
    """Multi-scale Feature Fusion Network (seed 001): parallel CNN branches at different scales, their pooled
    features concatenated, an MLP head. A classifier for text/int labels, a regressor for float targets."""

    Params = FFNParams

    def build_module(self, in_chans: int, img_size: tuple[int, int], n_out: int) -> torch.nn.Module:
        p = self.params
        smallest = min(img_size)
        for scale in p.input_scales:
            if smallest // scale < 2 ** p.depth:
                raise reflow.UserInputError(
                    f"ffn-multiscale: a {img_size[0]}x{img_size[1]} image pooled by input_scales {scale} is too "
                    f"small for depth {p.depth} (each block halves it); lower depth or input_scales, or use larger "
                    "images")
        from .ffn_net import FFNNet

        return FFNNet(in_chans, n_out, p.kernels, p.dilations, p.input_scales, p.width, p.depth, p.head_hidden,
                      p.dropout)
