"""How fast are the vision models? Images per second at several batch sizes, peak memory, seconds per training epoch.

Run by hand: ``.venv/bin/python benchmarks/inference.py [--quick] [--device cpu|cuda|all] [--train-images N]
[--threads N] [--models NAME ...]``.

For each model (ViT-Ti/8 and ViT-S/8 on 64x64 grayscale, vit-mae fine-tuned (the same network as vit at
inference, measured on its own), sam-cnn and resnet18, all with random weights), on the CPU in float32 and, when
CUDA is available, on the GPU with bf16 autocast, it prints a Markdown table of:

- images/s of inference (``reflow.training.predict_batches``' forward pass) at batch sizes 1, 16, 64, 256: the
  median over timed repeats after a warm-up;
- peak memory of inference at the largest batch: on the GPU ``torch.cuda.max_memory_allocated`` above what the
  weights take; on the CPU the peak process RSS (sampled every 2 ms) above the RSS before the run;
- seconds per training epoch of ``model.fit`` on N synthetic 64x64 images (batch 64; vit-mae also one epoch of
  MAE pre-training, reported separately).

``--quick`` checks the script in about a minute on a CPU (batch sizes 1 and 16, few repeats, 64
training images); numbers from it are not measurements.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch
import xarray as xr
from reflow.plugins.vision import CNN, ViT, ViTMAE
from reflow.testing import test_context
from reflow.training import autocast

SIDE = 64
MODELS: dict[str, tuple[type, dict[str, Any]]] = {
    "vit tiny/8": (ViT, {"size": "tiny", "patch": 8}),
    "vit small/8": (ViT, {"size": "small", "patch": 8}),
    "vit-mae tiny/8 (fine-tuned)": (ViTMAE, {"size": "tiny", "patch": 8}),
    "sam-cnn": (CNN, {"arch": "sam-cnn"}),
    "resnet18": (CNN, {"arch": "resnet18"}),
}


def synthetic_images(n: int, seed: int = 0) -> xr.Dataset:
    """n noisy 64x64 images with a bright disc whose brightness is the target (a stand-in for SAM images)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIDE, :SIDE]
    disc = ((yy - SIDE / 2) ** 2 + (xx - SIDE / 2) ** 2 < (SIDE / 4) ** 2).astype(np.float32)
    level = rng.uniform(0, 1, n).astype(np.float32)
    images = rng.uniform(0, 0.3, (n, 1, SIDE, SIDE)).astype(np.float32) + 0.6 * level[:, None, None, None] * disc
    return xr.Dataset({"image": (("sample", "channel", "y", "x"), images), "level": ("sample", level)})


class PeakRSS:
    """Samples the process RSS in a thread: the peak above the RSS at start."""

    def __init__(self, every: float = 0.002):
        self.every = every
        self.process = psutil.Process()

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(self.every)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def delta_mib(self) -> float:
        return (self.peak - self.start) / 2**20


def build(name: str) -> torch.nn.Module:
    cls, params = MODELS[name]
    torch.manual_seed(0)
    return cls(**params).build_module(1, (SIDE, SIDE), 1).eval()


def throughput(module: torch.nn.Module, batch: int, device: str, repeats: int, min_seconds: float,
               precision: str = "auto") -> float:
    """Median images/s of the forward pass at ``batch`` (after two warm-up passes); ``precision`` as the
    training loop's (auto: bf16 autocast on CUDA only; bf16: also on the CPU)."""
    x = torch.rand(batch, 1, SIDE, SIDE, device=device)
    cuda = device.startswith("cuda")
    rates = []
    with torch.inference_mode(), autocast(device, precision):
        for _ in range(2):
            module(x)
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
            n, start = 0, time.perf_counter()
            while True:
                module(x)
                n += 1
                if cuda:
                    torch.cuda.synchronize()
                if time.perf_counter() - start >= min_seconds:
                    break
            rates.append(n * batch / (time.perf_counter() - start))
    return statistics.median(rates)


def peak_memory_mib(name: str, batch: int, device: str, threads: int | None) -> float:
    """Peak memory of one forward pass at ``batch`` above the memory the model holds before it.

    On the CPU it runs in a fresh (spawned) process, so memory freed by earlier runs cannot hide the peak."""
    if not device.startswith("cuda"):
        context = multiprocessing.get_context("spawn")
        with context.Pool(1) as pool:
            return pool.apply(_cpu_peak, (name, batch, threads))
    module = build(name).to(device)
    x = torch.rand(batch, 1, SIDE, SIDE, device=device)
    with torch.inference_mode(), autocast(device):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        module(x)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20


def _cpu_peak(name: str, batch: int, threads: int | None) -> float:
    if threads:
        torch.set_num_threads(threads)
    module = build(name)
    x = torch.rand(batch, 1, SIDE, SIDE)
    with torch.inference_mode():
        module(x[:1])  # one-off allocations of the first call
        with PeakRSS() as rss:
            module(x)
    return rss.delta_mib


def epoch_seconds(name: str, device: str, n: int, data: xr.Dataset) -> tuple[float, float | None]:
    """Seconds of one training epoch of ``model.fit`` (and of one MAE pre-training epoch for vit-mae)."""
    cls, params = MODELS[name]
    extra = {"pretrain_epochs": 1} if cls is ViTMAE else {}
    model = cls(**params, **extra, epochs=1, batch_size=64, transforms=["hflip", "vflip"]).configure([], ["level"])
    with tempfile.TemporaryDirectory() as tmp:
        ctx = test_context(Path(tmp))
        ctx.device = device
        model.fit(data.isel(sample=slice(0, n)), ctx)
    pretrain = model.pretrain_history_[0]["seconds"] if cls is ViTMAE else None
    return model.history_[0]["seconds"], pretrain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short check run (not a measurement)")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--train-images", type=int, default=None, help="images per training epoch "
                        "(default: 512 on the CPU, 4096 on the GPU; 64 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--cpu-precision", choices=["fp32", "bf16"], default="fp32",
                        help="bf16: autocast the CPU throughput columns to bfloat16 (fast on CPUs with "
                             "avx512_bf16 or AMX); memory and training stay fp32")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS), metavar="MODEL")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [1, 16] if args.quick else [1, 16, 64, 256]
    repeats, min_seconds = (2, 0.05) if args.quick else (5, 0.5)
    devices = ["cpu"] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append("cuda")
    elif args.device == "cuda":
        raise SystemExit("--device cuda: no CUDA GPU visible")

    print(f"# vision models: {SIDE}x{SIDE}x1 images, random weights; torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else "") + "\n")
    header = ("| model | device | params (M) | " + " | ".join(f"img/s @{b}" for b in batches)
              + f" | peak MiB @{batches[-1]} | train s/epoch (N) |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for device in devices:
        n = args.train_images or (64 if args.quick else (4096 if device == "cuda" else 512))
        data = synthetic_images(n)
        for name in args.models:
            module = build(name).to(device)
            params = sum(p.numel() for p in module.parameters()) / 1e6
            precision = args.cpu_precision if device == "cpu" else "auto"
            rates = [throughput(module, b, device, repeats, min_seconds, precision) for b in batches]
            del module
            if device == "cuda":
                torch.cuda.empty_cache()
            memory = peak_memory_mib(name, batches[-1], device, args.threads)
            train, pretrain = epoch_seconds(name, device, n, data)
            label = "cuda bf16" if device == "cuda" else f"cpu {args.cpu_precision}"
            epoch = f"{train:.2f} ({n})" + (f"; MAE pre-training {pretrain:.2f}" if pretrain is not None else "")
            print(f"| {name} | {label} | {params:.2f} | " + " | ".join(f"{r:,.0f}" for r in rates)
                  + f" | {memory:,.1f} | {epoch} |", flush=True)


if __name__ == "__main__":
    main()
