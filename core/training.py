"""The shared training loop for torch models: every vision model and deep surrogate trains through it.

One loop, so that device placement, bf16 autocast on GPU, AdamW with a warm-up and cosine schedule, early stopping
on the validation loss, the best checkpoint, per-epoch metrics and determinism on CPU work the same for every
model. A model supplies only its ``loss_fn(module, batch)``::

    from reflow.training import TrainingConfig, fit_module, predict_batches

    history = fit_module(net, lambda m, b: F.mse_loss(m(b[0]), b[1]), (x_train, y_train),
                         val=(x_val, y_val), config=TrainingConfig(epochs=30), device=ctx.device,
                         seed=ctx.seed, folder=ctx.folder, quiet=ctx.quiet)
    y_hat = predict_batches(net, lambda m, b: m(b), x_test, device=ctx.device)

Multi-GPU training goes through torch.distributed (``strategy: ddp``, launched by ``torchrun``): the module is
wrapped in DistributedDataParallel and every rank reads its own shard; only rank 0 writes files.
"""

from __future__ import annotations

import copy
import csv
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field
from reflow.components import Params
from reflow.errors import UserInputError

if TYPE_CHECKING:
    import torch


class TrainingConfig(Params):
    """How to train: epochs, batches, optimizer, schedule, early stopping, precision, strategy."""

    epochs: int = Field(20, ge=1, description="passes over the training set")
    batch_size: int = Field(64, ge=1, description="samples per step")
    lr: float = Field(1e-3, gt=0, description="peak learning rate of AdamW")
    weight_decay: float = Field(0.05, ge=0, description="AdamW weight decay")
    warmup_epochs: int = Field(0, ge=0, description="linear warm-up before the cosine decay")
    patience: int | None = Field(10, ge=1, description="stop after this many epochs without a better validation "
                                                        "loss (null: never stop early)")
    grad_clip: float | None = Field(1.0, gt=0, description="clip the gradient norm (null: no clipping)")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto", description="auto: bf16 autocast on CUDA, fp32 on CPU; bf16 asks for autocast on any device")
    strategy: Literal["single", "ddp"] = Field(
        "single", description="ddp: data-parallel over the processes of torch.distributed (start with torchrun)")


@dataclass
class TrainingHistory:
    """What happened in training: one row per epoch, the best epoch and whether it stopped early."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.nan
    stopped_early: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        best = None if math.isnan(self.best_val_loss) else self.best_val_loss  # JSON has no NaN
        return {"epochs_run": len(self.epochs), "best_epoch": self.best_epoch, "best_val_loss": best,
                "stopped_early": self.stopped_early, "train_seconds": self.seconds}


def autocast(device: str, precision: str = "auto") -> Any:
    """The autocast context for ``device``: bf16 on CUDA (or when asked), nothing otherwise."""
    import torch

    kind = torch.device(device).type
    if precision == "bf16" or (precision == "auto" and kind == "cuda"):
        return torch.autocast(device_type=kind, dtype=torch.bfloat16)
    return nullcontext()


def as_dataset(data: Any) -> Any:
    """A torch Dataset from a Dataset, a tensor or a tuple of tensors."""
    import torch
    from torch.utils.data import Dataset, TensorDataset

    if isinstance(data, Dataset):
        return data
    if isinstance(data, torch.Tensor):
        return TensorDataset(data)
    if isinstance(data, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in data):
        return TensorDataset(*data)
    raise TypeError(f"training data must be a torch Dataset, a tensor or a tuple of tensors, got {type(data).__name__}")


def to_device(batch: Any, device: Any) -> Any:
    """Move a collated batch (tensor, tuple/list or dict of tensors) to ``device``."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        moved = [to_device(b, device) for b in batch]
        # a TensorDataset of one tensor yields 1-tuples: hand the tensor itself to the model's function
        return moved[0] if len(moved) == 1 else tuple(moved)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def _distributed() -> tuple[int, int]:
    """(rank, world size) of torch.distributed, or (0, 1) when it is not initialized."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _schedule(optimizer: Any, config: TrainingConfig, steps_per_epoch: int) -> Any:
    """Linear warm-up over ``warmup_epochs``, then cosine decay to zero at the last step."""
    import torch

    warmup = config.warmup_epochs * steps_per_epoch
    total = max(1, config.epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def write_epochs(path: Path, rows: list[dict[str, float]]) -> None:
    """``epochs.csv``: one row per epoch with a header from the row keys, rewritten atomically after each epoch
    (every training loop that logs epochs writes it this way, so the report reads them alike)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def fit_module(module: torch.nn.Module, loss_fn: Callable[[Any, Any], torch.Tensor], train: Any, *,
               val: Any = None, config: TrainingConfig | None = None, device: str = "cpu", seed: int = 0,
               folder: str | Path | None = None, quiet: bool = True, description: str = "training",
               parameters: Any = None) -> TrainingHistory:
    """Train ``module`` in place and leave it on ``device`` with its best weights.

    Args:
        module: the network.
        loss_fn: ``loss_fn(module, batch) -> scalar tensor``; ``batch`` is the collated batch on ``device`` (a
            tuple of tensors when the dataset's items are tuples, else one tensor).
        train: training data: a torch Dataset, a tensor or a tuple of tensors (first dim = samples).
        val: validation data of the same kind, or None. With it, the weights of the epoch with the lowest
            validation loss are kept and training stops after ``config.patience`` epochs without improvement.
        config: the :class:`TrainingConfig`.
        device: "cpu", "cuda", "cuda:1", ...
        seed: seeds the weights' shuffling and dropout, so a CPU run is repeatable.
        folder: where ``epochs.csv`` (one row per epoch, rewritten every epoch) and ``checkpoint.pt`` (the best
            state dict) go; None writes nothing.
        quiet: no progress bar.
        description: the progress bar's label.
        parameters: the parameters to optimize (default: every parameter of ``module`` that requires grad).

    Returns:
        The :class:`TrainingHistory`.
    """
    import torch
    from reflow.context import _Progress
    from torch.utils.data import DataLoader, DistributedSampler

    config = config or TrainingConfig()
    torch.manual_seed(seed)
    rank, world = _distributed()
    if config.strategy == "ddp" and world == 1:
        raise UserInputError("strategy: 'ddp' needs torch.distributed to be initialized: start the run with torchrun "
                             "(e.g. torchrun --nproc-per-node 4 -m reflow.cli run study.yaml), or use 'single'")
    dev = torch.device(device)
    module.to(dev)
    model: Any = module
    if config.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None)

    train_set = as_dataset(train)
    if len(train_set) == 0:
        raise UserInputError("training: the training set is empty")
    val_set = as_dataset(val) if val is not None else None
    generator = torch.Generator().manual_seed(seed)
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, seed=seed) if world > 1 else None
    loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler,
                        generator=generator if sampler is None else None, drop_last=False)
    val_loader = (DataLoader(val_set, batch_size=config.batch_size, shuffle=False)
                  if val_set is not None and len(val_set) else None)
    params = [p for p in (parameters if parameters is not None else module.parameters()) if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = _schedule(optimizer, config, len(loader))
    folder = Path(folder) if folder is not None and rank == 0 else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)

    history = TrainingHistory()
    best_state: dict[str, Any] | None = None
    best = math.inf
    since_best = 0
    start = time.perf_counter()
    with _Progress(config.epochs, description, quiet or rank != 0) as bar:
        for epoch in range(1, config.epochs + 1):
            tick = time.perf_counter()
            if sampler is not None:
                sampler.set_epoch(epoch)
            model.train()
            total, count = 0.0, 0
            for batch in loader:
                batch = to_device(batch, dev)
                with autocast(device, config.precision):
                    loss = loss_fn(model, batch)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"{description}: the loss became {float(loss.detach())} in epoch {epoch}; "
                                             "lower lr or check the data for NaN")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                optimizer.step()
                scheduler.step()
                n = _batch_len(batch)
                total += float(loss.detach()) * n
                count += n
            row = {"epoch": epoch, "train_loss": total / max(count, 1), "val_loss": math.nan,
                   "lr": optimizer.param_groups[0]["lr"], "seconds": 0.0}
            improved = True
            if val_loader is not None:
                row["val_loss"] = evaluate_loss(model, loss_fn, val_loader, dev, device, config.precision)
                improved = row["val_loss"] < best
            if improved:
                best = row["val_loss"] if val_loader is not None else row["train_loss"]
                history.best_epoch = epoch
                best_state = copy.deepcopy(module.state_dict())
                since_best = 0
                if folder is not None:
                    torch.save(best_state, folder / "checkpoint.pt.tmp")
                    (folder / "checkpoint.pt.tmp").replace(folder / "checkpoint.pt")
            else:
                since_best += 1
            row["seconds"] = time.perf_counter() - tick
            history.epochs.append(row)
            if folder is not None:
                write_epochs(folder / "epochs.csv", history.epochs)
            bar.advance()
            if val_loader is not None and config.patience is not None and since_best >= config.patience:
                history.stopped_early = epoch < config.epochs
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    history.best_val_loss = best if val_loader is not None else math.nan
    history.seconds = time.perf_counter() - start
    module.eval()
    return history


def _batch_len(batch: Any) -> int:
    first = batch[0] if isinstance(batch, (tuple, list)) else (next(iter(batch.values())) if isinstance(batch, dict)
                                                               else batch)
    return int(first.shape[0])


def evaluate_loss(model: Any, loss_fn: Callable, loader: Any, dev: Any, device: str, precision: str) -> float:
    """Mean of ``loss_fn`` over ``loader`` in eval mode without gradients (weighted by batch size)."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in loader:
            batch = to_device(batch, dev)
            with autocast(device, precision):
                loss = loss_fn(model, batch)
            n = _batch_len(batch)
            total += float(loss) * n
            count += n
    return total / max(count, 1)


def predict_batches(module: torch.nn.Module, fn: Callable[[Any, Any], torch.Tensor], data: Any, *,
                    batch_size: int = 256, device: str = "cpu", precision: str = "auto") -> torch.Tensor:
    """``fn(module, batch)`` over ``data`` in batches, in eval and inference mode (bf16 autocast on CUDA).

    Returns the outputs concatenated on dim 0 as float32 on the CPU.
    """
    import torch
    from torch.utils.data import DataLoader

    dev = torch.device(device)
    module.to(dev)
    module.eval()
    loader = DataLoader(as_dataset(data), batch_size=batch_size, shuffle=False)
    outputs = []
    with torch.inference_mode():
        for batch in loader:
            with autocast(device, precision):
                out = fn(module, to_device(batch, dev))
            outputs.append(out.float().cpu())
    if not outputs:
        raise UserInputError("predict: no samples to predict")
    return torch.cat(outputs, dim=0)


def count_parameters(module: Any, trainable_only: bool = False) -> int:
    """Number of parameters of a torch module (``trainable_only``: those with ``requires_grad``)."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only))
