"""The torch networks behind the vision models (imported only when a model is built, so torch loads late).

- :class:`ViTEncoder`: a ViT for small images built from timm's ``PatchEmbed`` and ``Block``; fixed 2-D sin-cos
  position embeddings (as in MAE) and a class token; it can encode only a subset of the patches (MAE).
- :class:`ViTNet`: encoder + head on the class token (an MLP with a wide hidden layer, as in seed 003).
- :class:`MaskedAutoencoder`: MAE (He et al. 2022): random masking, a light transformer decoder, and the MSE on
  the masked patches.
- :class:`SamCNN`: a compact conv net for 64x64 grayscale SAM images, the CNN baseline.
"""

from __future__ import annotations

import torch
from timm.layers import PatchEmbed, build_sincos2d_pos_embed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import nn


def _init_weights(module: nn.Module) -> None:
    """MAE's initialization: xavier-uniform linear layers, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _sincos(grid: tuple[int, int], dim: int) -> torch.Tensor:
    return build_sincos2d_pos_embed(list(grid), dim=dim).unsqueeze(0)


class ViTEncoder(nn.Module):
    """Patch embedding, class token, transformer blocks, final norm. Output tokens (B, 1 + N, D), class first."""

    def __init__(self, img_size: tuple[int, int], patch: int, in_chans: int, embed_dim: int, depth: int,
                 heads: int, drop_path: float = 0.0):
        super().__init__()
        self.patch = patch
        self.in_chans = in_chans
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch, in_chans=in_chans, embed_dim=embed_dim)
        self.grid = tuple(self.patch_embed.grid_size)
        self.num_patches = self.grid[0] * self.grid[1]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.register_buffer("pos_embed", _sincos(self.grid, embed_dim), persistent=False)
        rates = torch.linspace(0, drop_path, depth).tolist()
        self.blocks = nn.ModuleList(Block(embed_dim, heads, mlp_ratio=4.0, qkv_bias=True, drop_path=r) for r in rates)
        self.norm = nn.LayerNorm(embed_dim)
        self.apply(_init_weights)
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        trunc_normal_(self.cls_token, std=0.02)

    def forward_tokens(self, images: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encode ``images``; with ``keep`` (B, K) patch indices, only those patches (MAE's visible set)."""
        tokens = self.patch_embed(images) + self.pos_embed.to(images.dtype)
        if keep is not None:
            tokens = torch.gather(tokens, 1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The class token's features (B, D)."""
        return self.forward_tokens(images)[:, 0]


def make_head(in_features: int, hidden: int, n_out: int, dropout: float = 0.0) -> nn.Module:
    """A linear head (hidden = 0) or an MLP with one hidden layer (seed 003 uses 2048)."""
    if hidden <= 0:
        return nn.Linear(in_features, n_out)
    return nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, n_out))


class ViTNet(nn.Module):
    """A ViT with a regression or classification head on the class token: (B, C, H, W) -> (B, n_out)."""

    def __init__(self, encoder: ViTEncoder, head_hidden: int, n_out: int, dropout: float = 0.0):
        super().__init__()
        self.encoder = encoder
        self.head = make_head(encoder.embed_dim, head_hidden, n_out, dropout)
        self.head.apply(_init_weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images))

    def cam_layer(self) -> nn.Module:
        """Grad-CAM's layer: the first norm of the last block (seed 003, section 5.3)."""
        return self.encoder.blocks[-1].norm1

    def cam_reshape(self, tokens: torch.Tensor) -> torch.Tensor:
        """Patch tokens (B, 1 + N, D) -> a feature map (B, D, h, w) for Grad-CAM (the class token dropped)."""
        h, w = self.encoder.grid
        return tokens[:, 1:, :].reshape(tokens.shape[0], h, w, tokens.shape[-1]).permute(0, 3, 1, 2)


def random_masking(batch: int, num_patches: int, mask_ratio: float, device: torch.device | str,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mask floor(N * ratio) patches per image, uniformly without replacement.

    Returns:
        keep: (B, K) indices of the visible patches, K = N - floor(N * ratio), in random order.
        mask: (B, N) 1.0 where a patch is masked, 0.0 where visible (in patch order).
        restore: (B, N) the permutation that puts [visible, masked] tokens back in patch order.
    """
    n_masked = int(num_patches * mask_ratio)
    n_keep = num_patches - n_masked
    noise = torch.rand(batch, num_patches, generator=generator, device="cpu" if generator is not None else device)
    noise = noise.to(device)
    shuffle = torch.argsort(noise, dim=1)
    restore = torch.argsort(shuffle, dim=1)
    keep = shuffle[:, :n_keep]
    mask = torch.ones(batch, num_patches, device=device)
    mask[:, :n_keep] = 0
    mask = torch.gather(mask, 1, restore)
    return keep, mask, restore


class MaskedAutoencoder(nn.Module):
    """MAE around a :class:`ViTEncoder`: encode the visible patches, decode all with mask tokens, MSE on masked."""

    def __init__(self, encoder: ViTEncoder, decoder_width: int = 128, decoder_depth: int = 2, decoder_heads: int = 4,
                 norm_pix_loss: bool = False):
        super().__init__()
        self.encoder = encoder
        self.norm_pix_loss = norm_pix_loss
        patch_dim = encoder.patch * encoder.patch * encoder.in_chans
        self.decoder_embed = nn.Linear(encoder.embed_dim, decoder_width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_width))
        self.register_buffer("decoder_pos_embed", _sincos(encoder.grid, decoder_width), persistent=False)
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_width, decoder_heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_width)
        self.decoder_pred = nn.Linear(decoder_width, patch_dim)
        for part in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            part.apply(_init_weights)
        trunc_normal_(self.mask_token, std=0.02)

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, p*p*C), patches in row-major order (as PatchEmbed sees them)."""
        p, (h, w) = self.encoder.patch, self.encoder.grid
        b, c = images.shape[:2]
        x = images.reshape(b, c, h, p, w, p)
        return torch.einsum("bchpwq->bhwpqc", x).reshape(b, h * w, p * p * c)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, N, p*p*C) -> (B, C, H, W): the inverse of :meth:`patchify`."""
        p, (h, w) = self.encoder.patch, self.encoder.grid
        b, c = patches.shape[0], self.encoder.in_chans
        x = patches.reshape(b, h, w, p, p, c)
        return torch.einsum("bhwpqc->bchpwq", x).reshape(b, c, h * p, w * p)

    def target(self, images: torch.Tensor) -> torch.Tensor:
        """What the decoder predicts per patch: pixels, or pixels normalized per patch (``norm_pix_loss``)."""
        patches = self.patchify(images)
        if not self.norm_pix_loss:
            return patches
        mean = patches.mean(dim=-1, keepdim=True)
        var = patches.var(dim=-1, keepdim=True)
        return (patches - mean) / (var + 1e-6) ** 0.5

    def forward(self, images: torch.Tensor, mask_ratio: float = 0.75, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (loss, predicted patches (B, N, p*p*C), mask (B, N) with 1 = masked)."""
        enc = self.encoder
        keep, mask, restore = random_masking(images.shape[0], enc.num_patches, mask_ratio, images.device, generator)
        latent = enc.forward_tokens(images, keep)
        tokens = self.decoder_embed(latent)
        n_masked = enc.num_patches - keep.shape[1]
        patches = torch.cat([tokens[:, 1:], self.mask_token.to(tokens.dtype).expand(tokens.shape[0], n_masked, -1)],
                            dim=1)
        patches = torch.gather(patches, 1, restore.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))
        tokens = torch.cat([tokens[:, :1], patches + self.decoder_pos_embed.to(patches.dtype)], dim=1)
        for block in self.decoder_blocks:
            tokens = block(tokens)
        pred = self.decoder_pred(self.decoder_norm(tokens))[:, 1:]
        per_patch = ((pred.float() - self.target(images).float()) ** 2).mean(dim=-1)
        loss = (per_patch * mask).sum() / mask.sum().clamp(min=1.0)
        return loss, pred, mask


class SamCNN(nn.Module):
    """A compact CNN for 64x64 grayscale SAM images: four conv stages (conv-BN-ReLU x2, max-pool), global average
    pooling and an MLP head. A small baseline in the spirit of Zippelius et al. (ESTC 2022)."""

    def __init__(self, in_chans: int, n_out: int, width: int = 32, dropout: float = 0.2):
        super().__init__()
        stages, c = [], in_chans
        for k in range(4):
            out = width * 2**k
            stages.append(nn.Sequential(
                nn.Conv2d(c, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(),
                nn.Conv2d(out, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(),
            ))
            c = out
        self.stages = nn.ModuleList(stages)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c, 256),
                                  nn.ReLU(), nn.Linear(256, n_out))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        for k, stage in enumerate(self.stages):
            x = stage(x)
            if k < len(self.stages) - 1:
                x = self.pool(x)
        return self.head(x)

    def cam_layer(self) -> nn.Module:
        """Grad-CAM's layer: the last conv stage (the finest map the head sees)."""
        return self.stages[-1]

