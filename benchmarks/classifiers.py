"""How big and how fast are the classifiers? Parameters, FLOPs and images/s of every image classifier reflow ships.

Run by hand: ``.venv/bin/python benchmarks/classifiers.py [--quick] [--threads N] [--batch N] [--json PATH]``.

For each classifier, built exactly as a ``train`` stage builds it (random weights), on the two inspection sets:

- IC packages (seed 002): RGB 224x224, 3 classes (plastic, ceramic, metal);
- WLP defects (seed 001): grayscale 256x256, 11 classes (good + 10 defect kinds);

it prints a Markdown table of the parameters (all, and trainable: timm-features trains its head only), the
forward FLOPs of one image (``torch.utils.flop_counter.FlopCounterMode``: 2 FLOPs per multiply-add, matrix
products and convolutions only; FLOPs of softmax, norms and pooling are not counted; fvcore is not needed), and
images/s of inference: on the CPU in float32 and, when CUDA is available, on the GPU with bf16 autocast (the
median over timed repeats after a warm-up). The models: ``ffn-multiscale`` (defaults), ``cti`` at the paper's size
and at ``size: small``, ``timm-features`` with convnext_tiny (backbone + MLP head, one patch = the whole image),
``cnn`` with timm's resnet18, ``vit`` tiny with 16 px patches (ViT-Ti/16) and the ``pca-logistic`` baseline
(50 components of 32x32 downsampled pixels; its FLOPs counted analytically).

``--quick`` checks the script in well under a minute on a CPU: 64x64 images, batch 2, one timed repeat; its
numbers are not measurements.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from reflow.plugins.vision import CNN, CTI, FFNMultiscale, PCALogistic, TimmFeatures, ViT
from reflow.training import autocast
from torch.utils.flop_counter import FlopCounterMode

SETS = {"IC packages": (3, 224, 3), "WLP defects": (1, 256, 11)}
"""name: (channels, side, classes)."""

MODELS: list[tuple[str, type, dict[str, Any]]] = [
    ("ffn-multiscale", FFNMultiscale, {}),
    ("cti (paper)", CTI, {"size": "paper"}),
    ("cti (small)", CTI, {"size": "small"}),
    ("timm-features convnext_tiny", TimmFeatures, {"backbone": "convnext_tiny"}),
    ("cnn resnet18", CNN, {"arch": "resnet18"}),
    ("vit tiny/16", ViT, {"size": "tiny", "patch": 16}),
]


def build(cls: type, params: dict[str, Any], channels: int, side: int, classes: int) -> torch.nn.Module:
    """The network a train stage would build for these images (random weights), in eval mode."""
    model = cls(**params)
    if cls is ViT:
        model.params.patch = min(model.params.patch, side // 4)
    module = model.build_module(channels, (side, side), classes)
    return module.eval()


def count_flops(module: torch.nn.Module, image: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(image)
    return int(counter.get_total_flops())


def images_per_second(module: torch.nn.Module, batch: torch.Tensor, device: str, repeats: int) -> float:
    """Median images/s of the forward pass (bf16 autocast on CUDA, float32 on the CPU)."""
    module = module.to(device)
    batch = batch.to(device)
    times = []
    with torch.inference_mode():
        for k in range(repeats + 1):  # the first run warms up
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            with autocast(device, "auto"):
                module(batch)
            if device == "cuda":
                torch.cuda.synchronize()
            if k:
                times.append(time.perf_counter() - start)
    module.to("cpu")
    return batch.shape[0] / statistics.median(times)


def pca_row(channels: int, side: int, classes: int, batch: int, repeats: int) -> dict[str, Any]:
    """The pca-logistic baseline fit on random images, timed on its numpy prediction path (resize included)."""
    import xarray as xr
    from reflow.testing import test_context

    rng = np.random.default_rng(0)
    n = 64
    data = xr.Dataset({"image": (("sample", "channel", "y", "x"),
                                 rng.random((n, channels, side, side), dtype=np.float32)),
                       "label": ("sample", np.arange(n) % classes)})
    data["label"] = data["label"].astype(str)
    model = PCALogistic().configure([], ["label"])
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        model.fit(data, test_context(Path(folder)))
    k, d = model.components_.shape
    c = model.coef_.shape[0]
    test = data.isel(sample=slice(0, batch))
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        model.predict_proba(test)
        times.append(time.perf_counter() - start)
    return {"params": k * d + d + k * c + c, "trainable": k * d + d + k * c + c, "gflops": 2 * (d * k + k * c) / 1e9,
            "cpu": batch / statistics.median(times[1:])}


def run(quick: bool, threads: int | None, batch: int | None) -> list[dict[str, Any]]:
    if threads:
        torch.set_num_threads(threads)
    repeats = 1 if quick else 5
    cpu_batch = batch or (2 if quick else 8)
    gpu = torch.cuda.is_available()
    rows = []
    for set_name, (channels, side, classes) in SETS.items():
        side = 64 if quick else side
        for name, cls, params in MODELS:
            torch.manual_seed(0)
            module = build(cls, params, channels, side, classes)
            image = torch.rand(1, channels, side, side)
            total = sum(p.numel() for p in module.parameters())
            trainable = (sum(p.numel() for p in module.head.parameters()) if cls is TimmFeatures else total)
            row = {"set": set_name, "model": name, "input": f"{channels}x{side}x{side}", "params": total,
                   "trainable": trainable, "gflops": count_flops(module, image) / 1e9,
                   "cpu": images_per_second(module, torch.rand(cpu_batch, channels, side, side), "cpu", repeats)}
            if gpu:
                row["gpu_bf16"] = images_per_second(module, torch.rand(64, channels, side, side), "cuda",
                                                    repeats * 4)
            rows.append(row)
            print(f"  {set_name:12s} {name:28s} done", flush=True)
        row = {"set": set_name, "model": "pca-logistic", "input": f"{channels}x{side}x{side}",
               **pca_row(channels, side, classes, cpu_batch if quick else 64, repeats)}
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    gpu = any("gpu_bf16" in r for r in rows)
    head = "| set | model | input | params (M) | trainable (M) | GFLOPs / image | CPU fp32 img/s |"
    line = "|---|---|---|---:|---:|---:|---:|"
    if gpu:
        head += " GPU bf16 img/s |"
        line += "---:|"
    out = [head, line]
    for r in rows:
        cells = [r["set"], r["model"], r["input"], f"{r['params'] / 1e6:.2f}", f"{r['trainable'] / 1e6:.3f}",
                 f"{r['gflops']:.3g}", f"{r['cpu']:.1f}"]
        if gpu:
            cells.append(f"{r['gpu_bf16']:.0f}" if "gpu_bf16" in r else "-")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64x64 images, batch 2, one repeat (a smoke run)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--batch", type=int, default=None, help="CPU batch size (default 8; --quick 2)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = run(args.quick, args.threads, args.batch)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"\nCPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; GPU: {gpu}; "
          f"torch {torch.__version__}{'; --quick: not measurements' if args.quick else ''}\n")
    print(table(rows))
    print(f"\n({time.perf_counter() - start:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
