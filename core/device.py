"""The study's device: ``auto`` picks a CUDA GPU when torch sees one, else the CPU.

torch is imported only when a CUDA device is asked for or ``auto`` has to look (when a stage first reads
``ctx.device``), and only if installed.
"""

from __future__ import annotations

import importlib.util

from reflow.errors import UserInputError


def resolve_now(spec: str) -> str:
    """The device to record when a run starts: ``auto`` stays ``auto`` (resolved by :func:`resolve_device` when a
    stage first asks for ``ctx.device``) unless torch is imported already; anything else is checked now, so a
    ``cuda`` that does not exist is a user error before any stage runs. Why: importing torch costs seconds, and
    a study that runs no torch code (a DOE over a closed form) should not pay them."""
    import sys

    if spec == "auto" and "torch" not in sys.modules:
        return "auto"
    return resolve_device(spec)


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def resolve_device(spec: str) -> str:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` -> the concrete device string, or a clear error."""
    if spec == "cpu":
        return "cpu"
    if spec == "auto":
        if not torch_available():
            return "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if spec.startswith("cuda"):
        if not torch_available():
            raise UserInputError(f"device: {spec!r} needs PyTorch, which is not installed; use 'auto' or 'cpu'")
        import torch

        if not torch.cuda.is_available():
            raise UserInputError(f"device: {spec!r} was asked for but no CUDA GPU is visible; use 'auto' or 'cpu'")
        index = int(spec.split(":")[1]) if ":" in spec else 0
        count = torch.cuda.device_count()
        if index >= count:
            raise UserInputError(f"device: {spec!r} does not exist; this machine has {count} CUDA device(s)")
        return spec
    if spec == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise UserInputError("device: 'mps' was asked for but is not available; use 'auto' or 'cpu'")
        return spec
    raise UserInputError(f"device: unknown device {spec!r}; allowed: auto, cpu, cuda, cuda:N")


def quiet_torch_imports() -> None:
    """Silence import-time noise of torch add-ons that says nothing to a reflow user.

    (torch.jit.script deprecation warnings from GPyTorch/BoTorch, and torch's "No CUDA runtime is found"
    log line on machines without a GPU.)
    """
    import logging
    import warnings

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=FutureWarning)
