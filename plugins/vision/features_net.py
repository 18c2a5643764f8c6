"""The torch network of ``timm-features`` (imported only when the model is built, so torch loads late)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LUMA = (0.299, 0.587, 0.114)
"""ITU-R BT.601 weights of R, G, B in the grayscale conversion."""


class InputAdapter(nn.Module):
    """Pixels in [0, 1] (B, 1 or 3, H, W) -> what the backbone expects: RGB -> gray (``grayscale``), one channel ->
    three, resize to ``input_size`` (bilinear), normalization with the backbone's mean and std."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], grayscale: bool, input_size: int | None):
        super().__init__()
        self.grayscale = grayscale
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("luma", torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] == 3 and self.grayscale:
            images = (images * self.luma.to(images.dtype)).sum(dim=1, keepdim=True)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if self.input_size is not None and tuple(images.shape[-2:]) != (self.input_size, self.input_size):
            images = F.interpolate(images, size=(self.input_size, self.input_size), mode="bilinear",
                                   align_corners=False, antialias=False)
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)


def mlp_head(in_features: int, hidden: list[int], n_out: int, dropout: float) -> nn.Sequential:
    """Seed 004's head: hidden layers of Linear - BatchNorm - ReLU - Dropout, then a linear output layer."""
    layers: list[nn.Module] = []
    c = in_features
    for width in hidden:
        layers += [nn.Linear(c, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        c = width
    layers.append(nn.Linear(c, n_out))
    return nn.Sequential(*layers)


class FeatureClassifier(nn.Module):
    """Input adapter + frozen backbone (timm, classifier removed) + MLP head: (B, C, s, s) in [0, 1] -> (B, n_out)."""

    def __init__(self, backbone: nn.Module, n_out: int, hidden: list[int], dropout: float, *, grayscale: bool,
                 input_size: int | None):
        super().__init__()
        cfg = getattr(backbone, "pretrained_cfg", None) or {}
        mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))  # ImageNet's unless the backbone says otherwise
        std = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
        self.adapter = InputAdapter(mean, std, grayscale, input_size)
        self.backbone = backbone
        features = getattr(backbone, "head_hidden_size", None) or backbone.num_features  # the pooled output's width
        self.head = mlp_head(int(features), hidden, n_out, dropout)

    def train(self, mode: bool = True) -> FeatureClassifier:
        """The backbone stays in eval mode (frozen: no batch-norm statistics updates, no dropout)."""
        super().train(mode)
        self.backbone.eval()
        return self

    def backbone_input_and_features(self, images: torch.Tensor) -> torch.Tensor:
        """The pooled backbone features (B, D) of pixel images."""
        return self.backbone(self.adapter(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone_input_and_features(images))
