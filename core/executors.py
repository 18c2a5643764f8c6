"""Where evaluations run: in-process, in a process pool, or on a Dask cluster.

Every executor has one method, :meth:`Executor.map`, that submits a batch at once and yields
``(index, Outcome)`` as each evaluation finishes. An exception or a timeout becomes an ``Outcome`` with
an error; it never propagates, so one bad trial cannot stop a study.

Chunks: the process pool and Dask send ``chunk_size`` evaluations to a worker in one task (one round trip,
one pickling of the function), not one task per evaluation. Automatic size (:func:`auto_chunk`): about four
chunks per worker, at most 256 evaluations each; set it with the executor's ``chunk_size`` key.

Timeouts: the process pool (``workers: N``) kills an evaluation that runs past its timeout: with a timeout and
no ``chunk_size`` set, it sends one evaluation per task, so the kill hits that evaluation only. With a
``chunk_size`` set too, a chunk may run ``timeout`` seconds per evaluation in it; past that its worker is
killed and every evaluation of the chunk is marked timed out. In-process and on Dask a timed-out evaluation is
marked failed at once, but Python cannot stop the thread running it, so it finishes in the background; use
``workers`` (or the ``command`` evaluator's own timeout) for a hard stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import as_completed
from dataclasses import dataclass
from typing import Any

from reflow.frames import describe  # the error as a trial stores it, located in the plugin's code
from reflow.study import ExecutorConfig

MAX_CHUNK = 256
"""The largest automatic chunk: a worker's results come back (and are journaled) at least this often."""


@dataclass
class Outcome:
    """The result of one evaluation: ``value`` or ``error``, with wall-clock times."""

    value: Any = None
    error: str | None = None
    started: float = 0.0
    finished: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def call_safely(fn: Callable[..., Any], args: tuple, timeout: float | None) -> Outcome:
    """Run ``fn(*args)``; turn an exception or a timeout into an error. Runs where the work runs."""
    started = time.time()
    if timeout is None:
        try:
            return Outcome(fn(*args), None, started, time.time())
        except Exception as exc:
            return Outcome(None, describe(exc), started, time.time())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - reported as the trial's error
            box["error"] = describe(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return Outcome(None, f"timeout: still running after {timeout:g} s", started, time.time())
    return Outcome(box.get("value"), box.get("error"), started, time.time())


def call_chunk(fn: Callable[..., Any], chunk: list[tuple], timeout: float | None) -> list[Outcome]:
    """Run ``fn`` on each item of a chunk, each through :func:`call_safely`: what a worker runs for one task."""
    return [call_safely(fn, args, timeout) for args in chunk]


def auto_chunk(n: int, workers: int) -> int:
    """About four chunks per worker (so a slow chunk does not hold the others up), at most :data:`MAX_CHUNK`."""
    return max(1, min(MAX_CHUNK, n // max(1, 4 * workers)))


def chunks(n: int, size: int) -> list[range]:
    """Positions 0..n-1 cut into consecutive ranges of ``size``."""
    return [range(i, min(n, i + size)) for i in range(0, n, max(1, size))]


class Executor:
    """Runs batches of evaluations. Use as a context manager, or call :meth:`close`."""

    name = "executor"
    chunk_size: int | None = None
    """Evaluations per task sent to a worker; None: automatic (:func:`auto_chunk`)."""

    def map(self, fn: Callable[..., Any], items: list[tuple], timeout: float | None = None
            ) -> Iterator[tuple[int, Outcome]]:
        raise NotImplementedError(f"{type(self).__name__} must implement map(fn, items, timeout)")

    @property
    def workers(self) -> int:
        return 1

    def close(self) -> None:
        """Release workers and clusters."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class InProcessExecutor(Executor):
    """One evaluation after another in this process: the default, and the easiest to debug."""

    name = "local"

    def map(self, fn, items, timeout=None):
        for i, args in enumerate(items):
            yield i, call_safely(fn, args, timeout)


class ProcessPoolExecutor(Executor):
    """A pool of worker processes (pebble): parallel, and a timed-out evaluation is killed."""

    name = "local-processes"

    def __init__(self, workers: int, chunk_size: int | None = None):
        from pebble import ProcessPool

        self._workers = workers
        self.chunk_size = chunk_size
        self._pool = ProcessPool(max_workers=workers)

    @property
    def workers(self) -> int:
        return self._workers

    def map(self, fn, items, timeout=None):
        size = self.chunk_size or (1 if timeout is not None else auto_chunk(len(items), self._workers))
        submitted = {}
        for part in chunks(len(items), size):
            limit = None if timeout is None else timeout * len(part)
            fut = self._pool.schedule(call_chunk, args=(fn, [items[i] for i in part], None), timeout=limit)
            submitted[fut] = (part, time.time(), limit)
        for fut in as_completed(submitted):
            part, t0, limit = submitted[fut]
            try:
                outcomes = fut.result()
            except FutureTimeout:
                outcomes = [Outcome(None, f"timeout: killed after {limit:g} s" + (
                    f" (a chunk of {len(part)} evaluations, {timeout:g} s each)" if len(part) > 1 else ""),
                    t0, time.time())] * len(part)
            except Exception as exc:  # the worker died (segfault, OOM kill, unpicklable result)
                outcomes = [Outcome(None, f"worker failed: {describe(exc)}", t0, time.time())] * len(part)
            yield from zip(part, outcomes, strict=True)

    def close(self) -> None:
        self._pool.close()
        self._pool.join(timeout=10)
        self._pool.stop()


class DaskExecutor(Executor):
    """Dask distributed: an existing scheduler (``tcp://host:port``) or a LocalCluster (``local``)."""

    name = "dask"

    def __init__(self, address: str, workers: int | None = None, chunk_size: int | None = None):
        from distributed import Client, LocalCluster

        self.chunk_size = chunk_size
        self._cluster = None
        if address == "local":
            self._cluster = LocalCluster(
                n_workers=workers or 2, threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=40,
            )
            self.client = Client(self._cluster)
        else:
            self.client = Client(address, timeout="30s")

    @property
    def workers(self) -> int:
        return max(1, len(self.client.scheduler_info().get("workers", {})))

    def map(self, fn, items, timeout=None):
        from distributed import as_completed as dask_completed

        size = self.chunk_size or auto_chunk(len(items), self.workers)
        futures = {}
        for part in chunks(len(items), size):
            fut = self.client.submit(call_chunk, fn, [items[i] for i in part], timeout, pure=False)
            futures[fut] = (part, time.time())
        for fut in dask_completed(list(futures)):
            part, t0 = futures[fut]
            try:
                outcomes = fut.result()
            except Exception as exc:  # a worker died or the result could not be sent back
                outcomes = [Outcome(None, f"dask worker failed: {describe(exc)}", t0, time.time())] * len(part)
            yield from zip(part, outcomes, strict=True)

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(config: ExecutorConfig) -> Executor:
    """The executor a study's ``executor:`` key asks for."""
    if config.kind == "dask":
        return DaskExecutor(config.address or "local", config.workers, config.chunk_size)
    if config.workers:
        return ProcessPoolExecutor(config.workers, config.chunk_size)
    return InProcessExecutor()
