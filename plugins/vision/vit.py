"""``vit``: a Vision Transformer for small images (ViT-Ti/S/B widths), trained supervised from scratch.

Seed 003 (Röhrich et al., MAE self pre-training for SAM images of LED solder joints) uses 64x64 grayscale images,
patch size 8 and an MLP head with a hidden width of 2048; these are the defaults here. The network is built from
timm's ``PatchEmbed`` and transformer ``Block`` (plugins/vision/networks.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from .base import VisionModel, VisionParams

if TYPE_CHECKING:
    import torch

VIT_SIZES = {"tiny": (192, 3), "small": (384, 6), "base": (768, 12)}
"""ViT-Ti/S/B: (embedding width, attention heads), as in seed 003's Table 2."""


class ViTParams(VisionParams):
    size: Literal["tiny", "small", "base"] = Field(
        "tiny", description="ViT width: tiny (192 wide, 3 heads), small (384, 6), base (768, 12)")
    width: int | None = Field(None, ge=8, description="override the embedding width of `size` (e.g. 64 for quick "
                                                       "CPU runs); a multiple of 4 and of the heads")
    heads: int | None = Field(None, ge=1, description="override the attention heads of `size`")
    depth: int = Field(12, ge=1, le=48, description="transformer blocks (12 in ViT-Ti/S/B; fewer for quick runs)")
    patch: int = Field(8, ge=1, description="patch side in pixels; must divide the image side after the transforms "
                                            "(8 was best for 64x64 SAM images in seed 003)")
    head_hidden: int = Field(2048, ge=0, description="hidden width of the MLP head (0: one linear layer)")
    head_dropout: float = Field(0.0, ge=0, lt=1, description="dropout before the head's output layer")
    drop_path: float = Field(0.1, ge=0, lt=1, description="stochastic depth rate of the last block (linear in depth)")


    @model_validator(mode="after")
    def _width_fits_heads(self) -> ViTParams:
        width, heads = self.embedding()
        if width % 4 or width % heads:
            raise ValueError(f"the embedding width {width} must be a multiple of 4 (2-D sin-cos position embedding) "
                             f"and of the heads ({heads})")
        return self

    def embedding(self) -> tuple[int, int]:
        """(width, heads) after the overrides."""
        width, heads = VIT_SIZES[self.size]
        return self.width or width, self.heads or heads


class ViT(VisionModel):
    """A ViT regressor or classifier on the ``image`` variable, trained from scratch (supervised baseline)."""

    Params = ViTParams

    def patch_multiple(self) -> int:
        return self.params.patch

    def build_encoder(self, in_chans: int, img_size: tuple[int, int]) -> Any:
        from .networks import ViTEncoder

        width, heads = self.params.embedding()
        return ViTEncoder(img_size, self.params.patch, in_chans, width, self.params.depth, heads,
                          drop_path=self.params.drop_path)

    def build_module(self, in_chans: int, img_size: tuple[int, int], n_out: int) -> torch.nn.Module:
        from .networks import ViTNet

        return ViTNet(self.build_encoder(in_chans, img_size), self.params.head_hidden, n_out,
                      self.params.head_dropout)

    def cam_reshape(self) -> Any:
        return self.module_.cam_reshape

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        if out:
            out["patches"] = int(self.img_size_[0] // self.params.patch) * int(self.img_size_[1] // self.params.patch)
        return out
