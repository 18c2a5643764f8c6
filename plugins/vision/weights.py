"""Local weight files for the vision models: never downloaded, never unpickled.

Every model that takes ``weights: path`` reads the file here: safetensors, or a torch file loaded with
``weights_only=True`` (a ``{"state_dict": ...}`` checkpoint is unwrapped). What fits the network is each
model's own decision. A saved model's own networks are written and read back here too (:func:`save_module`,
:func:`load_module`), as safetensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import reflow

if TYPE_CHECKING:
    import torch

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def check_weights_suffix(value: str | None) -> str | None:
    """A ``weights`` param: a state-dict file name (validated before anything runs)."""
    if value is not None and Path(value).suffix not in WEIGHT_SUFFIXES:
        raise ValueError(f"weights {value!r}: expected a .safetensors, .pt, .pth or .bin state dict")
    return value


def read_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of a local weight file, by name; a clear error for a missing file or one without a state dict."""
    import torch

    if not path.is_file():
        raise reflow.DataError(f"weights: no file {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    if not isinstance(state, dict):
        raise reflow.DataError(f"weights: {path} does not hold a state dict")
    return state


def save_module(module: torch.nn.Module, path: Path) -> None:
    """Write ``module``'s weights to ``path`` as safetensors (from the CPU); the module stays on its device."""
    from safetensors.torch import save_model

    device = next(module.parameters()).device
    save_model(module.cpu(), str(path))
    module.to(device)


def load_module(module: torch.nn.Module, path: Path) -> None:
    """Read what :func:`save_module` wrote into a freshly built ``module`` (every tensor must fit), ready to
    predict: on the CPU, in eval mode."""
    from safetensors.torch import load_model

    load_model(module, str(path), strict=True, device="cpu")
    module.eval()
