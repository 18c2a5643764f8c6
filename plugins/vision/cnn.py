"""``cnn``: convolutional baselines: the compact ``sam-cnn`` or any timm architecture, trained from scratch.

timm models are created with ``pretrained=False`` (reflow never downloads weights); ``weights`` may name a local
state dict (.safetensors, or .pt/.pth read with ``torch.load(..., weights_only=True)``) to start from: tensors whose
shapes do not fit (the classifier, a stem with other input channels) are skipped.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import reflow
from pydantic import Field, field_validator

from .base import VisionModel, VisionParams, log
from .weights import check_weights_suffix, read_state_dict

if TYPE_CHECKING:
    import torch
    from reflow.context import RunContext

SAM_CNN = "sam-cnn"


def check_arch(name: str) -> str:
    """``sam-cnn`` or a timm model name; otherwise a ValueError naming the closest timm names."""
    if name == SAM_CNN:
        return name
    import timm

    if timm.is_model(name):
        return name
    names = [SAM_CNN, *timm.list_models()]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown architecture {name!r}: use 'sam-cnn' or a timm model name such as resnet18 or "
                     f"efficientnet_b0 (timm.list_models() lists them){hint}")


class CNNParams(VisionParams):
    arch: str = Field(SAM_CNN, description="'sam-cnn' (a compact CNN for 64x64 grayscale) or a timm model name "
                                           "(resnet18, efficientnet_b0, ...), built from scratch")
    width: int = Field(32, ge=4, description="sam-cnn: channels of the first stage (doubling in each of 4 stages)")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout before the head (sam-cnn; timm's drop_rate)")
    weights: str | None = Field(None, description="optional local state dict to start from (.safetensors, .pt, "
                                                  ".pth; relative to the study file); never downloaded")

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        return check_arch(value)

    @field_validator("weights")
    @classmethod
    def _weights_suffix(cls, value: str | None) -> str | None:
        return check_weights_suffix(value)


class CNN(VisionModel):
    """A CNN regressor or classifier on the ``image`` variable: ``sam-cnn`` or a timm backbone."""

    Params = CNNParams

    def build_module(self, in_chans: int, img_size: tuple[int, int], n_out: int) -> torch.nn.Module:
        if self.params.arch == SAM_CNN:
            from .networks import SamCNN

            return SamCNN(in_chans, n_out, width=self.params.width, dropout=self.params.dropout)
        import timm

        return timm.create_model(self.params.arch, pretrained=False, in_chans=in_chans, num_classes=n_out,
                                 drop_rate=self.params.dropout)

    def before_fit(self, train: Any, ctx: RunContext) -> None:
        if self.params.weights is not None:
            load_matching(self.module_, ctx.resolve_path(self.params.weights))

    def cam_layer(self) -> torch.nn.Module:
        """sam-cnn: its last stage; timm: the last feature stage timm declares, else the last conv layer."""
        import torch

        module = self.module_
        if hasattr(module, "cam_layer"):
            return module.cam_layer()
        info = getattr(module, "feature_info", None)
        if info:
            return module.get_submodule(info[-1]["module"])
        convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
        if not convs:
            raise reflow.UserInputError(f"{self.params.arch}: no convolution layer for Grad-CAM")
        return convs[-1]


def load_matching(module: torch.nn.Module, path: Path) -> list[str]:
    """Copy the tensors of a local state dict whose names and shapes match ``module``; return the skipped names."""
    state = read_state_dict(path)
    own = module.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not fitting:
        raise reflow.DataError(f"weights: no tensor in {path} fits the network (names or shapes differ)")
    skipped = sorted(set(state) - set(fitting))
    module.load_state_dict(fitting, strict=False)
    if skipped:
        log.warning("weights %s: %d tensors skipped (name or shape differs): %s", path, len(skipped),
                    ", ".join(skipped[:8]) + (" ..." if len(skipped) > 8 else ""))
    return skipped
