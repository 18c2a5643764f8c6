"""``vit-mae``: a ViT self pre-trained as a masked autoencoder on the training images, then fine-tuned.

Seed 003 (Röhrich et al.): mask 75 % of the patches, encode the visible 25 % with the ViT, reconstruct every patch
with a light transformer decoder, minimize the pixel MSE on the masked patches; then fine-tune the encoder with an
MLP head (hidden 2048) on the labels. Pre-training sees only the images ``fit`` gets (the training split: never
validation or test images). The pre-trained autoencoder is saved next to the fine-tuned model (``mae.safetensors``)
so that the ``explain`` task can show reconstructions.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import Field, model_validator

from .figures import loss_plot
from .vit import ViT, ViTParams
from .weights import load_module, save_module

if TYPE_CHECKING:
    import torch
    import xarray as xr
    from reflow.context import RunContext

MAE_WEIGHTS = "mae.safetensors"


class MAEParams(ViTParams):
    mask_ratio: float = Field(0.75, gt=0, lt=1, description="share of patches masked in pre-training "
                                                           "(floor(N * ratio) of N patches)")
    pretrain_epochs: int = Field(20, ge=0, description="MAE pre-training epochs on the training images (0: none)")
    pretrain_lr: float = Field(1e-3, gt=0, description="peak AdamW learning rate in pre-training")
    pretrain_warmup_epochs: int = Field(0, ge=0, description="linear warm-up epochs in pre-training")
    decoder_depth: int = Field(2, ge=1, description="transformer blocks of the MAE decoder")
    decoder_width: int = Field(128, ge=8, description="MAE decoder width (a multiple of 4 and of decoder_heads)")
    decoder_heads: int = Field(4, ge=1, description="attention heads of the MAE decoder")
    norm_pix_loss: bool = Field(False, description="reconstruct pixels normalized per patch (MAE's option) instead "
                                                   "of raw pixels (seed 003, Eq. 5)")

    @model_validator(mode="after")
    def _decoder_shape(self) -> MAEParams:
        if self.decoder_width % 4 or self.decoder_width % self.decoder_heads:
            raise ValueError(f"decoder_width {self.decoder_width} must be a multiple of 4 (sin-cos position "
                             f"embedding) and of decoder_heads ({self.decoder_heads})")
        return self


class ViTMAE(ViT):
    """ViT with MAE self pre-training on the training images, then supervised fine-tuning (seed 003)."""

    Params = MAEParams
    pretrain_history_: list[dict[str, Any]] | None = None
    """Per-epoch rows of MAE pre-training (empty with ``pretrain_epochs: 0``; None before ``fit``)."""

    def build_mae(self, encoder: Any) -> torch.nn.Module:
        from .networks import MaskedAutoencoder

        p = self.params
        return MaskedAutoencoder(encoder, p.decoder_width, p.decoder_depth, p.decoder_heads, p.norm_pix_loss)

    def before_fit(self, train: Any, ctx: RunContext) -> None:
        """Pre-train an MAE on the training images (targets unused), then start the encoder from its weights."""
        from reflow.training import fit_module

        images = train.unlabelled()  # the same images and augmentations, without the targets
        self.mae_ = self.build_mae(copy.deepcopy(self.module_.encoder))
        self.pretrain_history_ = []
        self.pretrain_seconds_ = 0.0
        if self.params.pretrain_epochs == 0:
            return
        ratio = self.params.mask_ratio
        config = self.training_config(epochs=self.params.pretrain_epochs, lr=self.params.pretrain_lr,
                                      warmup_epochs=self.params.pretrain_warmup_epochs, patience=None)
        history = fit_module(self.mae_, lambda m, batch: m(batch, ratio)[0], images, config=config,
                             device=ctx.device, seed=ctx.seed, folder=Path(ctx.folder) / "pretrain", quiet=ctx.quiet,
                             description="MAE pre-training")
        self.pretrain_history_ = [dict(row) for row in history.epochs]
        self.pretrain_seconds_ = float(history.seconds)
        self.module_.encoder.load_state_dict(self.mae_.encoder.state_dict())

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        if out and self.pretrain_history_:
            out["pretrain_seconds"] = round(self.pretrain_seconds_, 3)
            out["pretrain_first_loss"] = self.pretrain_history_[0]["train_loss"]
            out["pretrain_final_loss"] = self.pretrain_history_[-1]["train_loss"]
        return out

    def save_extra(self, directory: Path) -> dict[str, Any]:
        save_module(self.mae_, directory / MAE_WEIGHTS)
        return {"pretrain_history": self.pretrain_history_, "pretrain_seconds": self.pretrain_seconds_}

    def load_extra(self, directory: Path, state: dict[str, Any]) -> None:
        self.mae_ = self.build_mae(self.build_encoder(self.in_chans_, tuple(self.img_size_)))
        load_module(self.mae_, directory / MAE_WEIGHTS)
        self.pretrain_history_ = state["pretrain_history"]
        self.pretrain_seconds_ = state["pretrain_seconds"]

    def plot(self, folder: str | Path) -> list[Path]:
        """Learning curves of fine-tuning and of MAE pre-training (masked-patch MSE) side by side."""
        self.require_fitted("module_")
        extra = [("MAE pre-training (masked-patch MSE)", self.pretrain_history_)] if self.pretrain_history_ else []
        return [loss_plot(self.history_, Path(folder) / "learning_curve.png",
                           f"fine-tuning: best epoch {self.best_epoch_}", extra)]

    @property
    def reconstructs(self) -> bool:
        """True once MAE pre-training ran: the explain task then shows the autoencoder's reconstructions."""
        return bool(self.pretrain_history_)

    def reconstruct(self, data: xr.Dataset, ctx: RunContext, seed: int | None = None
                    ) -> dict[str, np.ndarray]:
        """Mask each image with the pre-trained MAE and reconstruct it.

        Returns arrays (n, C, H, W) in pixel units: ``original`` (the network input), ``masked`` (masked
        patches set to 0), ``reconstruction`` (visible patches kept, masked ones predicted), and ``mask``
        (n, H, W), 1 where masked.
        """
        import torch
        from reflow.imaging import ImageDataset

        self.require_fitted("module_")
        dataset = ImageDataset(data, transform=self.eval_transform())
        inputs = dataset.batch(range(len(dataset))).to(ctx.device)
        mae = self.mae_.to(ctx.device).eval()
        generator = torch.Generator().manual_seed(ctx.seed if seed is None else seed)
        with torch.no_grad():
            _, pred, mask = mae(inputs, self.params.mask_ratio, generator)
            pred = pred.float()
            if self.params.norm_pix_loss:  # back to pixels with each true patch's mean and spread
                patches = mae.patchify(inputs)
                mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True)
                pred = pred * (var + 1e-6) ** 0.5 + mean
            p, c = mae.encoder.patch, mae.encoder.in_chans
            pixel_mask = mae.unpatchify(mask.unsqueeze(-1).expand(-1, -1, p * p * c))
            recon = mae.unpatchify(pred)
            pasted = inputs * (1 - pixel_mask) + recon * pixel_mask
        original = self.denormalize(inputs)
        out = {"original": original, "masked": original * (1 - pixel_mask), "reconstruction": self.denormalize(pasted)}
        result = {k: v.float().cpu().numpy() for k, v in out.items()}
        result["mask"] = pixel_mask[:, 0].float().cpu().numpy()
        return result

    def reconstruction_error(self, data: xr.Dataset, ctx: RunContext) -> float:
        """Mean squared error of the reconstruction on the masked pixels of ``data`` (pixel units)."""
        rec = self.reconstruct(data, ctx)
        mask = rec["mask"][:, None]
        if not mask.sum():
            return math.nan
        squared = (rec["reconstruction"] - rec["original"]) ** 2 * mask
        return float(squared.sum() / (mask.sum() * rec["original"].shape[1]))
