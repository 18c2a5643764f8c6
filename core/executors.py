"""Where evaluations run: in-process, in a process pool, or on a Dask cluster.

Every executor has one method, :meth:`Executor.map`, that submits a batch at once and yields
``(index, Outcome)`` as each evaluation finishes. An exception or a timeout becomes an ``Outcome`` with
an error; it never propagates, so one bad trial cannot stop a study.

Timeouts: the process pool (``workers: N``) kills an evaluation that runs past its timeout. In-process and
on Dask a timed-out evaluation is marked failed at once, but Python cannot stop the thread running it, so
it finishes in the background; use ``workers`` (or the ``command`` evaluator's own timeout) for a hard stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import as_completed
from dataclasses import dataclass
from typing import Any

from reflow.frames import describe
from reflow.study import ExecutorConfig


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


def _describe(exc: BaseException) -> str:
    """The error as a trial stores it, located in the plugin's code (see :mod:`reflow.frames`)."""
    return describe(exc)


def call_safely(fn: Callable[..., Any], args: tuple, timeout: float | None) -> Outcome:
    """Run ``fn(*args)``; turn an exception or a timeout into an error. Runs where the work runs."""
    started = time.time()
    if timeout is None:
        try:
            return Outcome(fn(*args), None, started, time.time())
        except Exception as exc:
            return Outcome(None, _describe(exc), started, time.time())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - reported as the trial's error
            box["error"] = _describe(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        return Outcome(None, f"timeout: still running after {timeout:g} s", started, time.time())
    return Outcome(box.get("value"), box.get("error"), started, time.time())


class Executor:
    """Runs batches of evaluations. Use as a context manager, or call :meth:`close`."""

    name = "executor"

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

    def __init__(self, workers: int):
        from pebble import ProcessPool

        self._workers = workers
        self._pool = ProcessPool(max_workers=workers)

    @property
    def workers(self) -> int:
        return self._workers

    def map(self, fn, items, timeout=None):
        submitted = {}
        for i, args in enumerate(items):
            fut = self._pool.schedule(call_safely, args=(fn, args, None), timeout=timeout)
            submitted[fut] = (i, time.time())
        for fut in as_completed(submitted):
            i, t0 = submitted[fut]
            try:
                yield i, fut.result()
            except FutureTimeout:
                yield i, Outcome(None, f"timeout: killed after {timeout:g} s", t0, time.time())
            except Exception as exc:  # the worker died (segfault, OOM kill, unpicklable result)
                yield i, Outcome(None, f"worker failed: {_describe(exc)}", t0, time.time())

    def close(self) -> None:
        self._pool.close()
        self._pool.join(timeout=10)
        self._pool.stop()


class DaskExecutor(Executor):
    """Dask distributed: an existing scheduler (``tcp://host:port``) or a LocalCluster (``local``)."""

    name = "dask"

    def __init__(self, address: str, workers: int | None = None):
        from distributed import Client, LocalCluster

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

        futures = {}
        for i, args in enumerate(items):
            fut = self.client.submit(call_safely, fn, args, timeout, pure=False)
            futures[fut] = (i, time.time())
        for fut in dask_completed(list(futures)):
            i, t0 = futures[fut]
            try:
                yield i, fut.result()
            except Exception as exc:  # a worker died or the result could not be sent back
                yield i, Outcome(None, f"dask worker failed: {_describe(exc)}", t0, time.time())

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(config: ExecutorConfig) -> Executor:
    """The executor a study's ``executor:`` key asks for."""
    if config.kind == "dask":
        return DaskExecutor(config.address or "local", config.workers)
    if config.workers:
        return ProcessPoolExecutor(config.workers)
    return InProcessExecutor()
