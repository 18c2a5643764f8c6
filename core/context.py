"""RunContext: everything a stage needs from the run, handed to tasks and components."""

from __future__ import annotations

import logging
import zlib
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import xarray as xr
    from reflow.components import StageResult
    from reflow.executors import Executor
    from reflow.runner import Run
    from reflow.specs import DataRef
    from reflow.store import StageStore


def stage_seed(study_seed: int, stage: str) -> int:
    """A stage's own seed: fixed by the study seed and the stage name, independent of stage order."""
    seq = np.random.SeedSequence([int(study_seed), zlib.crc32(stage.encode())])
    return int(seq.generate_state(1, dtype=np.uint32)[0])


class _Progress(AbstractContextManager):
    """A rich progress bar (or nothing, when quiet)."""

    def __init__(self, total: int | None, description: str, quiet: bool):
        self.total = total
        self.description = description
        self.quiet = quiet
        self._progress = None
        self._task = None

    def __enter__(self) -> _Progress:
        if not self.quiet:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TimeRemainingColumn(), transient=False,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total)
        return self

    def advance(self, n: int = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)


@dataclass
class RunContext:
    """The run as one stage sees it.

    Attributes:
        run: the run (folder, study, manifest).
        stage: this stage's name.
        seed: this stage's seed (from the study seed and the stage name).
        device: the resolved device string ("cpu", "cuda", "cuda:1"); given as ``"auto"`` it is resolved
            (torch imported) when first read, so a stage that never reads it never imports torch.
        folder: this stage's folder in the run; outputs and plots go here.
        study_dir: the folder relative paths in the study resolve against.
        quiet: no progress bars.
    """

    run: Run
    stage: str
    seed: int
    device: str
    folder: Path
    study_dir: Path
    quiet: bool = False
    timeout: float | None = None
    resuming: bool = False
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("reflow"))
    _rng: np.random.Generator | None = None

    @property
    def rng(self) -> np.random.Generator:
        """This stage's numpy generator (the same seed gives the same numbers)."""
        if self._rng is None:
            self._rng = np.random.default_rng(self.seed)
        return self._rng

    def torch_generator(self) -> Any:
        """A torch.Generator seeded with this stage's seed, on the CPU."""
        import torch

        return torch.Generator().manual_seed(self.seed)

    @property
    def executor(self) -> Executor:
        return self.run.executor

    @property
    def store(self) -> StageStore:
        """This stage's folder as a :class:`reflow.store.StageStore` (outputs, model, caches, journals)."""
        from reflow.store import StageStore

        return StageStore(self.folder)

    def resolve_path(self, path: str | Path) -> Path:
        """A path from the study, resolved against the study file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.study_dir / p).resolve()

    def data(self, ref: DataRef | str) -> xr.Dataset:
        """An earlier stage's output: ``"stage"`` (main output) or ``"stage.output"``."""
        return self.run.output(ref)

    def result(self, stage: str) -> StageResult:
        return self.run.result(stage)

    def model(self, stage: str) -> Any:
        """The model an earlier training stage saved."""
        return self.run.model(stage)

    def progress(self, total: int | None = None, description: str = "") -> _Progress:
        """``with ctx.progress(total=n, description="...") as bar: ... bar.advance()``."""
        return _Progress(total, description or self.stage, self.quiet)

    def _get_device(self) -> str:
        """The resolved device; ``auto`` is resolved (torch imported) only here, at a stage's first use."""
        if self._device == "auto":
            resolve = getattr(self.run, "resolve_device", None)
            if callable(resolve):
                self._device = resolve()
            else:
                from reflow.device import resolve_device

                self._device = resolve_device("auto")
        return self._device

    def _set_device(self, value: str) -> None:
        self._device = value

    def wants_trial_batches(self) -> bool:
        """Does a plugin implement ``on_trial_batch``? Why: building each batch's dataset costs more than a
        vectorized evaluation of it, so tasks build them only for a listener."""
        if self.run is None:
            return False
        from reflow.registry import get_plugin_manager

        return bool(get_plugin_manager().hook.on_trial_batch.get_hookimpls())

    def trial_batch(self, trials: xr.Dataset) -> None:
        """Tell lifecycle hooks that a batch of trials was stored."""
        self.run.hook("on_trial_batch", stage=self.stage, trials=trials)


# ``device`` is a dataclass field (so ``RunContext(device=...)`` keeps working) read through a property, so that
# ``auto`` is resolved lazily: the generated __init__ assigns through the setter.
RunContext.device = property(RunContext._get_device, RunContext._set_device)  # type: ignore[assignment]
