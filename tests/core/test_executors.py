"""Executors: in-process, process pool (pebble) and Dask; errors and timeouts never propagate."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from reflow import executors
from reflow.executors import (
    DaskExecutor,
    InProcessExecutor,
    Outcome,
    ProcessPoolExecutor,
    call_safely,
    make_executor,
)
from reflow.study import ExecutorConfig


class BadInput(ValueError):
    """A custom exception type, so the test can see its name in the error text."""


def slow_square(x: int, delay: float) -> int:
    time.sleep(delay)
    return x * x


def fail_on_three(x: int, delay: float) -> int:
    time.sleep(delay)
    if x == 3:
        raise BadInput(f"three is not allowed (got {x})")
    return x * x


def sleep_and_mark(x: int, delay: float, folder: str) -> int:
    """Write this process's pid, sleep, then leave a marker: a killed evaluation leaves no marker."""
    Path(folder, f"pid-{x}").write_text(str(os.getpid()))
    time.sleep(delay)
    Path(folder, f"finished-{x}").write_text("done")
    return x


# Later items sleep less, so with parallel workers they finish before earlier ones.
ITEMS = [(i, 0.05 * (5 - i)) for i in range(6)]


def collect_in_order(pairs) -> tuple[dict[int, Outcome], list[int]]:
    """The outcomes by index, and the order the indices came back in; no index twice."""
    out: dict[int, Outcome] = {}
    order = []
    for i, outcome in pairs:
        assert isinstance(outcome, Outcome)
        assert i not in out, f"index {i} reported twice"
        out[i] = outcome
        order.append(i)
    return out, order


def collect(pairs) -> dict[int, Outcome]:
    return collect_in_order(pairs)[0]


def check_squares(results: dict[int, Outcome], items=ITEMS) -> None:
    assert sorted(results) == list(range(len(items)))
    for i, (x, _) in enumerate(items):
        assert results[i].ok, results[i].error
        assert results[i].value == x * x
        assert results[i].finished >= results[i].started > 0


# ---- call_safely ------------------------------------------------------------------------------------

def test_call_safely_value_error_and_timeout():
    ok = call_safely(slow_square, (4, 0.0), None)
    assert ok.ok and ok.value == 16 and ok.error is None

    bad = call_safely(fail_on_three, (3, 0.0), None)
    assert not bad.ok and bad.value is None
    assert "BadInput" in bad.error and "three is not allowed" in bad.error

    bad_threaded = call_safely(fail_on_three, (3, 0.0), 5.0)
    assert "BadInput" in bad_threaded.error

    t0 = time.time()
    slow = call_safely(slow_square, (2, 2.0), 0.3)
    assert time.time() - t0 < 1.5
    assert not slow.ok and slow.error.startswith("timeout")


# ---- in-process ---------------------------------------------------------------------------------------

def test_in_process_results_and_errors():
    with InProcessExecutor() as ex:
        assert ex.workers == 1
        check_squares(collect(ex.map(slow_square, ITEMS)))
        results = collect(ex.map(fail_on_three, [(i, 0.0) for i in range(5)]))
    assert sorted(results) == [0, 1, 2, 3, 4]
    assert "BadInput" in results[3].error and "three is not allowed" in results[3].error
    assert results[3].value is None
    assert [results[i].value for i in (0, 1, 2, 4)] == [0, 1, 4, 16]


def test_in_process_timeout_marks_failed_and_goes_on():
    items = [(1, 0.0), (2, 3.0), (3, 0.0)]
    t0 = time.time()
    with InProcessExecutor() as ex:
        results = collect(ex.map(slow_square, items, timeout=0.4))
    assert time.time() - t0 < 2.5, "a timed-out evaluation must not hold up the batch"
    assert results[1].error.startswith("timeout") and "0.4" in results[1].error
    assert results[1].value is None
    assert results[0].value == 1 and results[2].value == 9


# ---- process pool -------------------------------------------------------------------------------------

def test_process_pool_any_order_correct_indices():
    with ProcessPoolExecutor(2) as ex:
        assert ex.workers == 2
        results, order = collect_in_order(ex.map(slow_square, ITEMS))
    check_squares(results)
    assert order != sorted(order), "the slow first items should finish after the fast later ones"


def test_process_pool_exception_becomes_error():
    with ProcessPoolExecutor(2) as ex:
        results = collect(ex.map(fail_on_three, [(i, 0.0) for i in range(5)]))
    assert "BadInput" in results[3].error and "three is not allowed" in results[3].error
    assert [results[i].value for i in (0, 1, 2, 4)] == [0, 1, 4, 16]


def test_process_pool_kills_timed_out_evaluation(tmp_path):
    import psutil

    items = [(0, 0.05, str(tmp_path)), (1, 60.0, str(tmp_path)), (2, 0.05, str(tmp_path)),
             (3, 0.05, str(tmp_path)), (4, 0.05, str(tmp_path))]
    t0 = time.time()
    with ProcessPoolExecutor(2) as ex:
        results = collect(ex.map(sleep_and_mark, items, timeout=1.0))
    elapsed = time.time() - t0
    assert elapsed < 15, f"the sleeping evaluation was not stopped ({elapsed:.1f} s)"
    assert results[1].error.startswith("timeout") and "killed" in results[1].error
    assert results[1].value is None
    for i in (0, 2, 3, 4):
        assert results[i].ok and results[i].value == i
        assert (tmp_path / f"finished-{i}").exists()
    # the worker that ran the sleeping evaluation is gone, not left sleeping in the background
    pid = int((tmp_path / "pid-1").read_text())
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            alive = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            alive = False
        if not alive:
            break
        time.sleep(0.1)
    assert not alive, f"worker {pid} still runs the timed-out evaluation"
    assert not (tmp_path / "finished-1").exists()


# ---- dask ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dask_executor():
    import cloudpickle

    # the workers cannot import this test module, so its functions travel by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ex = DaskExecutor("local", workers=2)
    try:
        yield ex
    finally:
        ex.close()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_dask_any_order_correct_indices(dask_executor):
    assert dask_executor.workers == 2
    results = collect(dask_executor.map(slow_square, ITEMS))
    check_squares(results)


def test_dask_exception_and_timeout(dask_executor):
    results = collect(dask_executor.map(fail_on_three, [(i, 0.0) for i in range(5)]))
    assert "BadInput" in results[3].error and "three is not allowed" in results[3].error
    assert [results[i].value for i in (0, 1, 2, 4)] == [0, 1, 4, 16]

    t0 = time.time()
    results = collect(dask_executor.map(slow_square, [(1, 0.0), (2, 3.0), (3, 0.0)], timeout=0.5))
    assert time.time() - t0 < 2.8
    assert results[1].error.startswith("timeout")
    assert results[0].value == 1 and results[2].value == 9


# ---- make_executor --------------------------------------------------------------------------------------

def _config(value):
    return ExecutorConfig.model_validate(value)


def test_make_executor_picks_the_class(monkeypatch):
    assert type(make_executor(_config("local"))) is InProcessExecutor
    assert type(make_executor(_config({"local": {"timeout": 5}}))) is InProcessExecutor

    ex = make_executor(_config({"local": {"workers": 2, "timeout": 5}}))
    try:
        assert type(ex) is ProcessPoolExecutor and ex.workers == 2
    finally:
        ex.close()

    made = []

    class FakeDask:
        def __init__(self, address, workers=None, chunk_size=None):
            made.append((address, workers, chunk_size))

    monkeypatch.setattr(executors, "DaskExecutor", FakeDask)
    assert isinstance(make_executor(_config({"dask": "local", "workers": 3})), FakeDask)
    assert isinstance(make_executor(_config({"dask": "tcp://10.0.0.5:8786", "chunk_size": 50})), FakeDask)
    assert isinstance(make_executor(_config("dask")), FakeDask)
    assert made == [("local", 3, None), ("tcp://10.0.0.5:8786", None, 50), ("local", None, None)]
    assert _config({"local": {"workers": 2, "chunk_size": 8}}).to_yaml() == {"local": {"workers": 2, "chunk_size": 8}}


# ---- chunks ----------------------------------------------------------------------------------------------

def test_auto_chunk_and_ranges():
    assert executors.auto_chunk(10, 2) == 1  # few items: one per task, so both workers get some
    assert executors.auto_chunk(8000, 2) == 256  # capped: results come back (and are journaled) often
    assert executors.auto_chunk(800, 2) == 100  # four chunks per worker
    parts = executors.chunks(10, 4)
    assert [list(p) for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_process_pool_sends_chunks_and_reports_each_item(monkeypatch):
    items = [(i, 0.0) for i in range(10)]
    with ProcessPoolExecutor(2, chunk_size=4) as ex:
        scheduled = []
        schedule = ex._pool.schedule

        def spy(fn, args=(), timeout=None):
            scheduled.append(len(args[1]))
            return schedule(fn, args=args, timeout=timeout)

        monkeypatch.setattr(ex._pool, "schedule", spy)
        results = collect(ex.map(fail_on_three, items))
    assert scheduled == [4, 4, 2], "one task per chunk, not per item"
    assert "BadInput" in results[3].error, "a failing item fails alone inside its chunk"
    assert [results[i].value for i in range(10) if i != 3] == [i * i for i in range(10) if i != 3]


def test_process_pool_with_a_timeout_and_no_chunk_size_sends_one_item_per_task(monkeypatch):
    with ProcessPoolExecutor(2) as ex:
        scheduled = []
        schedule = ex._pool.schedule

        def spy(fn, args=(), timeout=None):
            scheduled.append((len(args[1]), timeout))
            return schedule(fn, args=args, timeout=timeout)

        monkeypatch.setattr(ex._pool, "schedule", spy)
        check_squares(collect(ex.map(slow_square, ITEMS, timeout=5.0)))
    assert scheduled == [(1, 5.0)] * len(ITEMS), "the kill must hit the timed-out evaluation only"


def test_dask_chunks(dask_executor, monkeypatch):
    monkeypatch.setattr(dask_executor, "chunk_size", 4)
    submitted = []
    submit = dask_executor.client.submit

    def spy(fn, *args, **kwargs):
        submitted.append(len(args[1]))
        return submit(fn, *args, **kwargs)

    monkeypatch.setattr(dask_executor.client, "submit", spy)
    results = collect(dask_executor.map(fail_on_three, [(i, 0.0) for i in range(9)]))
    assert submitted == [4, 4, 1]
    assert "BadInput" in results[3].error
    assert [results[i].value for i in range(9) if i != 3] == [i * i for i in range(9) if i != 3]


def test_executor_config_rejects_nonsense():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        _config("threads")
    with pytest.raises(ValidationError):
        _config({"local": {"workers": 0}})
    with pytest.raises(ValidationError):
        _config({"local": {"timeout": -1}})
