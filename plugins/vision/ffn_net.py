"""The torch network of ``ffn-multiscale`` (imported only when the model is built, so torch loads late)."""

from __future__ import annotations

import torch
from torch import nn


def conv_stack(in_chans: int, width: int, depth: int, kernel: int, dilation: int) -> tuple[nn.Sequential, int]:
    """``depth`` blocks of conv (kernel x kernel, dilation, same padding) - BN - ReLU - 2x2 max-pool; channels
    ``width``, 2 ``width``, ... Returns the stack and its output channels."""
    layers: list[nn.Module] = []
    c = in_chans
    for k in range(depth):
        out = width * 2**k
        pad = dilation * (kernel - 1) // 2
        layers += [nn.Conv2d(c, out, kernel, padding=pad, dilation=dilation, bias=False), nn.BatchNorm2d(out),
                   nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        c = out
    return nn.Sequential(*layers), c


class Branch(nn.Module):
    """One scale: average-pool the input by ``scale``, then a conv stack with its own kernel and dilation."""

    def __init__(self, in_chans: int, width: int, depth: int, kernel: int, dilation: int, scale: int):
        super().__init__()
        self.pool = nn.AvgPool2d(scale) if scale > 1 else nn.Identity()
        self.features, self.channels = conv_stack(in_chans, width, depth, kernel, dilation)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(self.pool(images))


class FFNNet(nn.Module):
    """Parallel branches -> global average and max pooling of each -> concatenation -> MLP head.

    (B, C, H, W) -> (B, n_out).
    """

    def __init__(self, in_chans: int, n_out: int, kernels: list[int], dilations: list[int],
                 input_scales: list[int], width: int, depth: int, head_hidden: int, dropout: float):
        super().__init__()
        self.branches = nn.ModuleList(Branch(in_chans, width, depth, k, d, s)
                                      for k, d, s in zip(kernels, dilations, input_scales, strict=True))
        features = 2 * sum(b.channels for b in self.branches)  # average and max pooling per branch
        self.num_features = features
        if head_hidden > 0:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, head_hidden), nn.ReLU(inplace=True),
                                      nn.Dropout(dropout), nn.Linear(head_hidden, n_out))
        else:
            self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, n_out))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def branch_features(self, images: torch.Tensor) -> torch.Tensor:
        """The fused features (B, 2 x sum of the branches' channels): [avg_1, max_1, avg_2, max_2, ...]."""
        pooled = []
        for branch in self.branches:
            maps = branch(images)
            pooled += [maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))]
        return torch.cat(pooled, dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.branch_features(images))

    def cam_layer(self) -> nn.Module:
        """Grad-CAM's layer: the last ReLU of the full-resolution (first) branch, before its last pooling."""
        return self.branches[0].features[-2]
