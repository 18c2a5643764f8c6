"""How fast is the faster-rcnn detector? Frames per second of inference at 256x256 for each backbone.

Run by hand: ``.venv/bin/python benchmarks/detector.py [--quick] [--device cpu|cuda|all] [--side 256]
[--threads N] [--backbones small resnet50-fpn ...]``.

For each backbone (``small`` and ``resnet50-fpn`` by default; ``mobilenet-v3`` on request), built as the
``faster-rcnn`` model builds it for 256x256 grey images and 10 defect classes (the classes of ``synthetic-wlp``)
with random weights, it times the forward pass of the torchvision detector in eval mode (resize-free transform,
backbone, RPN, box head, NMS and post-processing) on the CPU in float32 and, when CUDA is available, on the GPU
with bf16 autocast, at batch sizes 1 and 8, and prints a Markdown table of frames/s (the median over timed repeats
after two warm-up passes) and milliseconds per frame at batch 1.

Random weights make the detector return its maximum of 100 boxes per image (scores near the class prior pass
``min_score``), so the post-processing works as hard as it can: a trained detector on clean images is, if
anything, a little faster. ``--quick`` checks the script in about a minute on a CPU (one warm-up pass and one
timed pass per batch size); numbers from it are not measurements.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from reflow.plugins.vision.detector import BACKBONES, FasterRCNN
from reflow.training import autocast

CLASSES = 10  # synthetic-wlp's defect classes (good is no box)


def build(backbone: str, side: int) -> torch.nn.Module:
    """The network ``faster-rcnn`` trains for ``backbone`` on side x side images, with random weights."""
    torch.manual_seed(0)
    return FasterRCNN(backbone=backbone).build_module(CLASSES, (side, side)).eval()


def frames_per_second(module: torch.nn.Module, batch: int, side: int, device: str, repeats: int,
                      min_seconds: float, warmup: int = 2) -> tuple[float, float]:
    """Median frames/s of the detector's forward pass at ``batch`` (after ``warmup`` passes), and the mean boxes
    it returned per image."""
    images = [torch.rand(1, side, side, device=device).expand(3, -1, -1) for _ in range(batch)]
    cuda = device.startswith("cuda")
    rates, boxes = [], []
    with torch.inference_mode(), autocast(device):
        for _ in range(warmup):
            module(images)
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize()
            n, start = 0, time.perf_counter()
            while True:
                out = module(images)
                n += 1
                if cuda:
                    torch.cuda.synchronize()
                if time.perf_counter() - start >= min_seconds:
                    break
            rates.append(n * batch / (time.perf_counter() - start))
            boxes.append(sum(len(o["boxes"]) for o in out) / batch)
    return statistics.median(rates), statistics.mean(boxes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short check run (not a measurement)")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument("--side", type=int, default=256, help="image height and width in pixels")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--backbones", nargs="*", default=["small", "resnet50-fpn"], choices=list(BACKBONES),
                        metavar="BACKBONE")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [1, 8]
    repeats, min_seconds, warmup = (1, 0.01, 1) if args.quick else (5, 1.0, 2)
    devices = ["cpu"] if args.device in ("cpu", "all") else []
    if args.device in ("cuda", "all") and torch.cuda.is_available():
        devices.append("cuda")
    elif args.device == "cuda":
        raise SystemExit("--device cuda: no CUDA GPU visible")

    print(f"# faster-rcnn inference: {args.side}x{args.side} grey images, {CLASSES} classes, random weights; "
          f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} CPU threads" + (f", {torch.cuda.get_device_name()}" if "cuda" in devices else "")
          + (" (--quick: not a measurement)" if args.quick else "") + "\n")
    header = ("| backbone | device | precision | params (M) | " + " | ".join(f"frames/s @{b}" for b in batches)
              + " | ms/frame @1 | boxes/image |")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for device in devices:
        for backbone in args.backbones:
            module = build(backbone, args.side).to(device)
            params = sum(p.numel() for p in module.parameters()) / 1e6
            results = [frames_per_second(module, b, args.side, device, repeats, min_seconds, warmup) for b in batches]
            rates = [r for r, _ in results]
            precision = "bf16 autocast" if device == "cuda" else "fp32"
            print(f"| {backbone} | {device} | {precision} | {params:.2f} | "
                  + " | ".join(f"{r:.1f}" for r in rates)
                  + f" | {1000 / rates[0]:.1f} | {results[0][1]:.0f} |", flush=True)
            del module
            if device == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
