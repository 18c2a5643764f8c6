"""The torch network of ``cti`` (seed 002: CNN-transformer interaction); imported only when the model is built.

Layout (section 2.1 of the paper): a convolutional stem (3x3, 1x1, 3x3 convolutions), stages of CTI blocks with a
2x2 stride-2 convolution between stages, and a head (1x1 projection to ``head_width`` channels, activation, global
pooling, a fully connected layer). Convolutional parts normalize with GroupNorm(1, C) (batch-independent).
One CTI block (section 2.2, figures 2 and 3)::

    y = norm(x);  Q, K, V = three parallel 1x1 convolutions of y
    v      = CNN-1 channel attention from avg-pool(Q), max-pool(K), mix-pool(V)              (eq. 10)  (B, C, 1, 1)
    X_glob = masked global attention(Q, K, V * v)      C-to-T: v weights the value channels (eqs. 5, 7, 8)
    X_loc  = 7x7 local-window self-attention(Q, K, V)
    X_att  = proj(X_glob + X_loc)                                                             (eq. 9)
    F      = local conv features of V (depthwise 3x3, BN, GELU, 1x1);  F^ = F * v             (eq. 11, F_scale)
    x_att  = sigmoid(mixpool_c(relu(1x1 conv(X_att))))   T-to-C: a one-channel map           (eq. 12)
    X_cnn  = F^ * sigmoid(conv7x7([mean_c(F^); max_c(F^); x_att]))     CNN-2 spatial attention (eq. 11)
    x      = x + w_att X_att + w_cnn X_cnn,  (w_att, w_cnn) = softmax(learned logits)   weighted fusion
    x      = x + MLP(norm(x))                          (1x1-conv MLP, as after every transformer attention)

The masked global attention is the "adaptive attention span" of eq. 4/5: the attention weight of a key at grid
distance d is multiplied by ``M(d) = clamp(H + (1 - H) d / e, 0, 1)`` with ``H`` = ``mask_floor`` (0.5 in the
paper) and a learnable span ``e`` per head, so that near patches count less and far ones fully ("each patch
focuses more on distant patches"). It is applied as the additive bias ``log M(d)`` inside
``torch.nn.functional.scaled_dot_product_attention``. Keys and values are average-pooled to at most
``global_grid`` x ``global_grid`` cells on large maps (spatial-reduction attention, as in PVT) so that global
attention stays affordable at 112 x 112 tokens; on maps of at most that size it is exact.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import DropPath, LayerNorm2d, Mlp, trunc_normal_
from timm.models.swin_transformer import window_partition, window_reverse
from torch import nn


def conv_out(size: int, stride: int) -> int:
    """Output side of a 3x3 convolution with padding 1 and ``stride``."""
    return (size - 1) // stride + 1


def to_heads(maps: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, heads, H*W, C // heads)."""
    b, c, h, w = maps.shape
    return maps.reshape(b, heads, c // heads, h * w).transpose(-1, -2)


def from_heads(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, heads, H*W, d) -> (B, heads*d, H, W)."""
    b, heads, _, d = tokens.shape
    return tokens.transpose(-1, -2).reshape(b, heads * d, h, w)


def mix_pool(maps: torch.Tensor, weight_logit: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Mixed pooling (Yu et al. 2014): ``a max + (1 - a) mean`` over ``dims``, ``a = sigmoid(weight_logit)`` learned
    (the paper's MixPool, "an adaptive selection of max pooling or average pooling")."""
    a = torch.sigmoid(weight_logit)
    return a * maps.amax(dim=dims, keepdim=True) + (1 - a) * maps.mean(dim=dims, keepdim=True)


def span_mask(distance: torch.Tensor, span: torch.Tensor, floor: float) -> torch.Tensor:
    """The masking function of eq. 4: ``clamp(floor + (1 - floor) d / span, 0, 1)``.

    Args:
        distance: (Nq, Nk) grid distances between query and key positions.
        span: (heads,) positive learnable spans ``e``.
        floor: ``H``, the weight of a key at distance 0.

    Returns:
        (heads, Nq, Nk) weights in [floor, 1], rising with the distance.
    """
    return torch.clamp(floor + (1.0 - floor) * distance.unsqueeze(0) / span.view(-1, 1, 1), 0.0, 1.0)


def local_window_mask(h: int, w: int, window: int) -> torch.Tensor:
    """Which tokens of an ``h`` x ``w`` grid may attend to which in non-overlapping ``window`` x ``window`` windows
    (the grid padded at the bottom/right to whole windows): (h*w, h*w) bool, True where query and key share a window.

    :class:`LocalWindowAttention` computes exactly the attention this mask allows (the tests check it)."""
    wh, ww = min(window, h), min(window, w)
    rows = torch.arange(h).repeat_interleave(w) // wh
    cols = torch.arange(w).repeat(h) // ww
    cell = rows * ((w + ww - 1) // ww) + cols
    return cell[:, None] == cell[None, :]


class ChannelAttention(nn.Module):
    """CNN-1 (eq. 10): ``v = mean_i sigmoid(W2 relu(W1 z_i))`` with z = avg-pool(Q), max-pool(K), mix-pool(V).

    The paper sums the three sigmoids; their mean keeps ``v`` a probability in [0, 1]. W1, W2 act on pooled
    (B, C, 1, 1) maps, where the paper's 3x3 convolutions equal 1x1 ones (the padding is all that a 3x3 kernel
    sees besides its centre)."""

    def __init__(self, dim: int, reduction: int = 4):
        super().__init__()
        hidden = max(dim // reduction, 4)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.mix = nn.Parameter(torch.zeros(1))

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([q.mean(dim=(2, 3), keepdim=True), k.amax(dim=(2, 3), keepdim=True),
                            mix_pool(v, self.mix, (2, 3))], dim=0)
        weights = torch.sigmoid(self.fc2(F.relu(self.fc1(pooled))))
        return weights.reshape(3, q.shape[0], q.shape[1], 1, 1).mean(dim=0)


class MaskedGlobalAttention(nn.Module):
    """Global attention over the whole map with the adaptive-span mask (eq. 5), keys/values pooled on large maps."""

    def __init__(self, grid: tuple[int, int], heads: int, global_grid: int, mask_floor: float):
        super().__init__()
        h, w = grid
        self.heads = heads
        self.floor = mask_floor
        self.reduce = max(1, math.ceil(max(h, w) / global_grid))
        r = self.reduce
        self.pad = ((-w) % r, (-h) % r)
        qy, qx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
        ky = torch.tensor([(a * r + min((a + 1) * r, h)) / 2 for a in range(math.ceil(h / r))])
        kx = torch.tensor([(a * r + min((a + 1) * r, w)) / 2 for a in range(math.ceil(w / r))])
        ky, kx = torch.meshgrid(ky, kx, indexing="ij")
        queries = torch.stack([qy.flatten(), qx.flatten()], dim=1)
        keys = torch.stack([ky.flatten(), kx.flatten()], dim=1)
        self.register_buffer("distance", torch.cdist(queries, keys), persistent=False)
        start = max(h, w) / 2.0  # the span starts at half the grid side, learned from there
        self.span_param = nn.Parameter(torch.full((heads,), math.log(math.expm1(start))))

    @property
    def keys(self) -> int:
        return int(self.distance.shape[1])

    def span(self) -> torch.Tensor:
        """The learned spans ``e`` (heads,), in grid cells."""
        return F.softplus(self.span_param) + 1e-3

    def mask(self) -> torch.Tensor:
        """M(d) (heads, queries, keys), the multiplicative mask of the attention weights."""
        return span_mask(self.distance, self.span(), self.floor)

    def pool(self, maps: torch.Tensor) -> torch.Tensor:
        if self.reduce == 1:
            return maps
        if any(self.pad):
            maps = F.pad(maps, (0, self.pad[0], 0, self.pad[1]), mode="replicate")
        return F.avg_pool2d(maps, self.reduce)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        h, w = q.shape[-2:]
        bias = torch.log(self.mask().clamp(min=1e-6)).to(q.dtype)
        out = F.scaled_dot_product_attention(to_heads(q, self.heads), to_heads(self.pool(k), self.heads),
                                             to_heads(self.pool(v), self.heads), attn_mask=bias)
        return from_heads(out, h, w)


class LocalWindowAttention(nn.Module):
    """Self-attention inside non-overlapping ``window`` x ``window`` windows (Swin's partition, timm's
    ``window_partition``); the map is zero-padded to whole windows and padded keys are masked out."""

    def __init__(self, grid: tuple[int, int], heads: int, window: int):
        super().__init__()
        h, w = grid
        self.heads = heads
        self.window = (min(window, h), min(window, w))
        wh, ww = self.window
        self.pad = ((-h) % wh, (-w) % ww)
        self.grid = (h, w)
        if any(self.pad):
            real = torch.zeros(1, h + self.pad[0], w + self.pad[1], 1)
            real[:, :h, :w] = 1.0
            keep = window_partition(real, self.window).reshape(-1, 1, wh * ww) > 0.5  # (windows, 1, keys)
            keep = keep.repeat_interleave(heads, dim=0).unsqueeze(0)  # (1, windows * heads, 1, keys)
            self.register_buffer("key_mask", keep, persistent=False)
        else:
            self.key_mask = None

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, c, h, w = q.shape
        wh, ww = self.window
        hp, wp = h + self.pad[0], w + self.pad[1]
        n_windows = (hp // wh) * (wp // ww)

        def windows(maps: torch.Tensor) -> torch.Tensor:
            if any(self.pad):
                maps = F.pad(maps, (0, self.pad[1], 0, self.pad[0]))
            tokens = window_partition(maps.permute(0, 2, 3, 1), self.window)  # (B*nW, wh, ww, C)
            tokens = tokens.reshape(b, n_windows, wh * ww, self.heads, c // self.heads).permute(0, 1, 3, 2, 4)
            return tokens.reshape(b, n_windows * self.heads, wh * ww, c // self.heads)  # windows x heads as heads

        out = F.scaled_dot_product_attention(windows(q), windows(k), windows(v), attn_mask=self.key_mask)
        out = out.reshape(b, n_windows, self.heads, wh * ww, c // self.heads).permute(0, 1, 3, 2, 4)
        out = out.reshape(b * n_windows, wh, ww, c)
        out = window_reverse(out, self.window, hp, wp)  # (B, Hp, Wp, C)
        return out[:, :h, :w].permute(0, 3, 1, 2)


class CTIBlock(nn.Module):
    """One CNN-transformer interaction block on a fixed ``grid`` (the feature map's height and width)."""

    def __init__(self, dim: int, grid: tuple[int, int], head_dim: int = 32, window: int = 7, global_grid: int = 14,
                 mask_floor: float = 0.5, mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        heads = max(1, dim // head_dim)
        if dim % heads:
            raise ValueError(f"width {dim} is not a multiple of the {heads} attention heads")
        self.norm1 = LayerNorm2d(dim)
        self.q, self.k, self.v = nn.Conv2d(dim, dim, 1), nn.Conv2d(dim, dim, 1), nn.Conv2d(dim, dim, 1)
        self.channel_attention = ChannelAttention(dim)
        self.global_attention = MaskedGlobalAttention(grid, heads, global_grid, mask_floor)
        self.local_attention = LocalWindowAttention(grid, heads, window)
        self.proj = nn.Conv2d(dim, dim, 1)
        self.local_conv = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False),
                                        nn.GroupNorm(1, dim), nn.GELU(), nn.Conv2d(dim, dim, 1))
        self.t2c = nn.Conv2d(dim, max(dim // 4, 1), 1)
        self.t2c_mix = nn.Parameter(torch.zeros(1))
        self.spatial = nn.Conv2d(3, 1, 7, padding=3)
        self.fusion = nn.Parameter(torch.zeros(2))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = LayerNorm2d(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), use_conv=True)

    def fusion_weights(self) -> torch.Tensor:
        """(w_att, w_cnn): the softmax of the learned fusion logits (they sum to 1)."""
        return torch.softmax(self.fusion, dim=0)

    def branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformer and CNN branch outputs (X_att, X_cnn) for the block input ``x``, both (B, C, H, W)."""
        y = self.norm1(x)
        q, k, v = self.q(y), self.k(y), self.v(y)
        channel = self.channel_attention(q, k, v)  # CNN-1
        att = self.proj(self.global_attention(q, k, v * channel) + self.local_attention(q, k, v))
        features = self.local_conv(v) * channel
        t2c = torch.sigmoid(mix_pool(F.relu(self.t2c(att)), self.t2c_mix, (1,)))  # T-to-C: (B, 1, H, W)
        spatial = torch.cat([features.mean(dim=1, keepdim=True), features.amax(dim=1, keepdim=True), t2c], dim=1)
        return att, features * torch.sigmoid(self.spatial(spatial))  # CNN-2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        att, cnn = self.branches(x)
        w = self.fusion_weights().to(x.dtype)
        x = x + self.drop_path(w[0] * att + w[1] * cnn)
        return x + self.drop_path(self.mlp(self.norm2(x)))


def stage_grids(img_size: tuple[int, int], stem_stride: int, stages: int) -> list[tuple[int, int]]:
    """The feature-map size of each stage: the stem's output, then halved by each 2x2 stride-2 convolution."""
    h, w = conv_out(img_size[0], stem_stride), conv_out(img_size[1], stem_stride)
    grids = [(h, w)]
    for _ in range(stages - 1):
        h, w = h // 2, w // 2
        grids.append((h, w))
    return grids


class CTINet(nn.Module):
    """Stem -> stages of CTI blocks (2x2 stride-2 convolutions between stages) -> head. (B, C, H, W) -> (B, n_out)."""

    def __init__(self, in_chans: int, n_out: int, img_size: tuple[int, int], depths: list[int], widths: list[int],
                 stem_stride: int = 2, head_width: int = 1280, head_dim: int = 32, window: int = 7,
                 global_grid: int = 14, mask_floor: float = 0.5, mlp_ratio: float = 4.0, drop_path: float = 0.0,
                 dropout: float = 0.0):
        super().__init__()
        grids = stage_grids(img_size, stem_stride, len(depths))
        c1 = widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, c1, 3, stride=stem_stride, padding=1, bias=False), nn.GroupNorm(1, c1), nn.GELU(),
            nn.Conv2d(c1, c1, 1, bias=False), nn.GroupNorm(1, c1), nn.GELU(),
            nn.Conv2d(c1, c1, 3, padding=1, bias=False), nn.GroupNorm(1, c1))
        total = sum(depths)
        rates = [drop_path * i / max(total - 1, 1) for i in range(total)]  # stochastic depth, linear in depth
        self.stages = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        k = 0
        for i, (depth, width, grid) in enumerate(zip(depths, widths, grids, strict=True)):
            if i > 0:
                self.downsamples.append(nn.Sequential(nn.Conv2d(widths[i - 1], width, 2, stride=2),
                                                      nn.GroupNorm(1, width)))
            self.stages.append(nn.Sequential(*(
                CTIBlock(width, grid, head_dim, window, global_grid, mask_floor, mlp_ratio, rates[k + j])
                for j in range(depth))))
            k += depth
        self.grids = grids
        self.head = nn.Sequential(nn.Conv2d(widths[-1], head_width, 1, bias=False), nn.GroupNorm(1, head_width),
                                  nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(head_width, n_out))
        self.apply(_init_weights)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)
        for i, stage in enumerate(self.stages):
            if i > 0:
                x = self.downsamples[i - 1](x)
            x = stage(x)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(images))

    def blocks(self) -> list[CTIBlock]:
        return [m for m in self.modules() if isinstance(m, CTIBlock)]

    def cam_layer(self) -> nn.Module:
        """Grad-CAM's layer: the last stage (its output is the finest map the head sees)."""
        return self.stages[-1]


def _init_weights(module: nn.Module) -> None:
    """Convolutions: He-normal (fan-out, as timm's CNNs); linear layers: truncated normal with std 0.02 (timm's
    transformers); zero biases."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
    if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
        nn.init.zeros_(module.bias)
