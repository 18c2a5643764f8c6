"""``cti``: the CNN-transformer interaction classifier of seed 002 (IC packaging material recognition).

The paper's model (section 2): a convolutional stem (3x3, 1x1, 3x3 convolutions, 3 -> C1 channels), five stages of
{2, 2, 6, 14, 2} CTI blocks with widths {64, 96, 192, 384, 768} and a 2x2 stride-2 convolution between stages
(downsampling rates 1, 2, 4, 8, 16), and a head (projection to 1280 channels, activation, FC) on 224x224 images.
``size: paper`` builds that (50.9 M parameters and 26 GFLOPs, i.e. 13 G multiply-adds, per 224x224 image for 3
classes; the paper reports 44 M and 23 G); ``size: small`` (2 stages of 1 block, widths 32 and 64, head 128,
0.1 M parameters) trains on a CPU in seconds. ``depths``/``widths`` override either.

Each CTI block has a CNN branch (channel attention from average, max and mixed pooling of Q, K, V; spatial
attention from a 7x7 convolution) and a transformer branch (masked global attention plus 7x7 local-window
attention) that exchange information both ways (C-to-T: the channel attention weights the values of the global
attention; T-to-C: a one-channel map from the transformer output enters the spatial attention), and a learned
softmax-weighted sum of the two branches. The network is in ``cti_net.py``; where it departs from the paper:

- the paper's token Z (eq. 6), computed once per stage and carried in place of Q through its blocks, is not
  carried: every block forms its own Q, K, V (eqs. 6-8 collapse into one masked attention with V * v);
- the three channel-attention sigmoids are averaged, not summed, so ``v`` stays a probability;
- the masking function of eq. 4 is read as ``clamp(H + (1 - H) d / e, 0, 1)`` (rising with the distance d,
  H = 0.5, e learned per head); keys and values are average-pooled to at most ``global_grid`` squared cells on
  large maps (the paper does not say how global attention over 112 x 112 tokens is afforded);
- blocks are pre-norm residual (LayerNorm) and end with a 1x1-convolution MLP, as transformer blocks do; the head's
  "Sigmoid layer" is SiLU (x sigmoid(x), EfficientNet's head, which the paper cites as its inspiration);
- the convolutional parts normalize with GroupNorm(1, C) (the paper does not name its normalization): unlike batch
  norm it behaves the same in training and evaluation, so short CPU runs with small batches do not suffer from
  running statistics that lag behind the weights;
- convolutions start He-normal, linear layers truncated-normal with std 0.02 (the paper: Gaussian with variance
  0.01 for all), trained with AdamW.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import reflow
from pydantic import Field, model_validator

from .base import VisionModel, VisionParams

if TYPE_CHECKING:
    import torch

SIZES = {
    "paper": {"depths": [2, 2, 6, 14, 2], "widths": [64, 96, 192, 384, 768], "head_width": 1280},
    "small": {"depths": [1, 1], "widths": [32, 64], "head_width": 128},
}
"""The paper's configuration (section 2.1) and a CPU-sized one."""


class CTIParams(VisionParams):
    size: Literal["paper", "small"] = Field(
        "paper", description="paper: 5 stages of {2, 2, 6, 14, 2} blocks, widths {64, 96, 192, 384, 768}, head "
                             "1280 (seed 002); small: 2 stages of 1 block, widths {32, 64}, head 128 (CPU)")
    depths: list[int] | None = Field(None, min_length=1, max_length=8,
                                     description="override the size's CTI blocks per stage, e.g. [1, 1]")
    widths: list[int] | None = Field(None, min_length=1, max_length=8,
                                     description="override the size's channels per stage (multiples of head_dim "
                                                 "when wider than it), e.g. [32, 64]")
    head_width: int | None = Field(None, ge=1, description="override the size's projection width of the head "
                                                           "(1280 in the paper)")
    stem_stride: int = Field(2, ge=1, le=4, description="stride of the stem's first convolution (2: 224 px "
                                                        "images give 112 x 112 maps in the first stage)")
    head_dim: int = Field(32, ge=4, description="channels per attention head (heads = width // head_dim)")
    window: int = Field(7, ge=1, description="side of the local attention windows (7 in the paper)")
    global_grid: int = Field(14, ge=1, description="global attention pools keys and values to at most this many "
                                                   "cells per side (exact global attention on smaller maps)")
    mask_floor: float = Field(0.5, ge=0, le=1, description="H of the attention mask: the weight of the nearest "
                                                           "keys (0.5 in the paper; 1 turns the mask off)")
    mlp_ratio: float = Field(4.0, gt=0, le=8, description="hidden width of each block's MLP over its width")
    drop_path: float = Field(0.0, ge=0, lt=1, description="stochastic depth of the last block (linear in depth)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout before the head's FC layer")

    @model_validator(mode="after")
    def _stages_agree(self) -> CTIParams:
        depths, widths, _ = self.layout()
        if len(depths) != len(widths):
            raise ValueError(f"depths ({depths}) and widths ({widths}) need one value per stage each")
        if any(d < 1 for d in depths) or any(w < 1 for w in widths):
            raise ValueError(f"depths and widths must be >= 1, got {depths} and {widths}")
        bad = [w for w in widths if w > self.head_dim and w % self.head_dim]
        if bad:
            raise ValueError(f"widths {bad} are not multiples of head_dim {self.head_dim} (heads = width // "
                             "head_dim must divide the width)")
        return self

    def layout(self) -> tuple[list[int], list[int], int]:
        """(depths, widths, head_width) after the overrides."""
        base = SIZES[self.size]
        return (list(self.depths or base["depths"]), list(self.widths or base["widths"]),
                int(self.head_width or base["head_width"]))


class CTI(VisionModel):
    """CNN-transformer interaction network (seed 002): a classifier for text/int labels (a regressor for float
    targets) on the ``image`` variable, trained from scratch."""

    Params = CTIParams

    def build_module(self, in_chans: int, img_size: tuple[int, int], n_out: int) -> torch.nn.Module:
        from .cti_net import CTINet, stage_grids

        p = self.params
        depths, widths, head_width = p.layout()
        grids = stage_grids(img_size, p.stem_stride, len(depths))
        if min(grids[-1]) < 1:
            raise reflow.UserInputError(
                f"cti: {img_size[0]}x{img_size[1]} images are too small for {len(depths)} stages with stem_stride "
                f"{p.stem_stride} (each stage after the first halves the map; the stage sizes would be {grids}); "
                "use fewer stages, a smaller stem_stride or larger images")
        return CTINet(in_chans, n_out, img_size, depths, widths, stem_stride=p.stem_stride, head_width=head_width,
                      head_dim=p.head_dim, window=p.window, global_grid=p.global_grid, mask_floor=p.mask_floor,
                      mlp_ratio=p.mlp_ratio, drop_path=p.drop_path, dropout=p.dropout)

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        if out:
            weights = [b.fusion_weights().detach().cpu().tolist() for b in self.module_.blocks()]
            out["fusion_weight_transformer_mean"] = round(sum(w[0] for w in weights) / len(weights), 4)
            out["stage_grids"] = [f"{h}x{w}" for h, w in self.module_.grids]
        return out
