"""The study's device: auto picks what exists; an unavailable GPU is a clear user error, not a crash."""

from __future__ import annotations

import pytest
from reflow import device
from reflow.errors import UserInputError


def test_cpu_and_auto_resolve_without_a_gpu(monkeypatch):
    assert device.resolve_device("cpu") == "cpu"
    monkeypatch.setattr(device, "torch_available", lambda: False)
    assert device.resolve_device("auto") == "cpu"


def test_cuda_without_torch_names_the_fix(monkeypatch):
    monkeypatch.setattr(device, "torch_available", lambda: False)
    with pytest.raises(UserInputError, match="needs PyTorch.*'auto' or 'cpu'"):
        device.resolve_device("cuda:1")


def test_cuda_without_a_gpu_is_a_user_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        assert device.resolve_device("auto").startswith("cuda")
        with pytest.raises(UserInputError, match="does not exist"):
            device.resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        assert device.resolve_device("auto") == "cpu"
        with pytest.raises(UserInputError, match="no CUDA GPU is visible"):
            device.resolve_device("cuda")


def test_unknown_device_string():
    with pytest.raises(UserInputError, match="unknown device 'tpu'"):
        device.resolve_device("tpu")
