"""The dynamic batcher with a recording run function in its real thread pool.

What is asserted is which rows ran together, never how long anything
took: batches that fill up run at once, so most tests set ``max_wait_s``
far beyond any test's length, and a gate (a ``threading.Event``) holds a
run in its thread while the test acts.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest

pytest.importorskip("numpy")

import numpy as np

from interlock.engines import EngineError
from interlock.engines.batcher import DynamicBatcher
from interlock.errors import Overloaded, ServiceUnavailable

Array = Any
NEVER = 600.0  # a max_wait_s no test reaches: only full batches run


class Recorder:
    """A blocking run: doubles each input into ``<name>2``, records each
    batch's input shapes and thread; with a gate, holds every run until
    the test opens it."""

    def __init__(self, gate: threading.Event | None = None, fail: Exception | None = None):
        self.gate = gate
        self.fail = fail
        self.shapes: list[dict[str, tuple[int, ...]]] = []
        self.threads: list[str] = []
        self.started = threading.Event()

    def __call__(self, feeds: Mapping[str, Array]) -> dict[str, Array]:
        self.shapes.append({name: array.shape for name, array in feeds.items()})
        self.threads.append(threading.current_thread().name)
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(30), "the test never opened the gate"
        if self.fail is not None:
            raise self.fail
        return {f"{name}2": array * 2 for name, array in feeds.items()}

    @property
    def rows(self) -> list[int]:
        return sorted(next(iter(shape.values()))[0] for shape in self.shapes)


def rows(first: float, count: int = 1, width: int = 4) -> dict[str, Array]:
    values = np.arange(count * width, dtype=np.float32).reshape(count, width) + first
    return {"x": values}


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., DynamicBatcher]]:
    made: list[DynamicBatcher] = []

    def build(run: Recorder, **options: Any) -> DynamicBatcher:
        batcher = DynamicBatcher(run, **options)
        made.append(batcher)
        return batcher

    yield build
    for batcher in made:
        batcher.close()


async def until(check: Callable[[], bool]) -> None:
    """Let other tasks run until ``check()`` holds (no clock involved)."""
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def started(recorder: Recorder) -> None:
    assert await asyncio.to_thread(recorder.started.wait, 30)


async def test_concurrent_requests_share_one_batch(make: Callable[..., DynamicBatcher]) -> None:
    run, sizes = Recorder(), []
    batcher = make(run, max_batch_size=3, max_wait_s=NEVER, on_batch=sizes.append)
    feeds = [rows(0), rows(10, count=1), rows(20)]
    results = await asyncio.gather(*(batcher.submit(f) for f in feeds))
    assert run.shapes == [{"x": (3, 4)}]
    assert sizes == [3]
    for f, out in zip(feeds, results, strict=True):
        np.testing.assert_array_equal(out["x2"], f["x"] * 2)
    assert batcher.waiting == 0


async def test_a_batch_waits_for_company_then_runs(make: Callable[..., DynamicBatcher]) -> None:
    # Far from full: the three arrive together and run when max_wait_s ends.
    run = Recorder()
    batcher = make(run, max_batch_size=32, max_wait_s=0.001)
    await asyncio.gather(*(batcher.submit(rows(i)) for i in range(3)))
    assert run.rows == [3]


async def test_max_batch_size_bounds_a_batch(make: Callable[..., DynamicBatcher]) -> None:
    run = Recorder()
    batcher = make(run, max_batch_size=4, max_wait_s=0.001)
    counts = [3, 2, 1, 4, 5]
    feeds = [rows(100 * i, count=n) for i, n in enumerate(counts)]
    results = await asyncio.gather(*(batcher.submit(f) for f in feeds))
    # 3 | 2+1 | 4 | 5 (larger than a batch: runs alone, never split)
    assert run.rows == [3, 3, 4, 5]
    for f, out in zip(feeds, results, strict=True):
        np.testing.assert_array_equal(out["x2"], f["x"] * 2)


async def test_different_trailing_dimensions_run_apart(
    make: Callable[..., DynamicBatcher],
) -> None:
    run = Recorder()
    batcher = make(run, max_batch_size=2, max_wait_s=NEVER)
    feeds = [rows(0, width=4), rows(1, width=5), rows(2, width=4), rows(3, width=5)]
    results = await asyncio.gather(*(batcher.submit(f) for f in feeds))
    assert sorted(shape["x"] for shape in run.shapes) == [(2, 4), (2, 5)]
    for f, out in zip(feeds, results, strict=True):
        np.testing.assert_array_equal(out["x2"], f["x"] * 2)


async def test_different_dtypes_run_apart(make: Callable[..., DynamicBatcher]) -> None:
    run = Recorder()
    batcher = make(run, max_batch_size=2, max_wait_s=NEVER)
    wide = {"x": np.zeros((1, 4), dtype=np.float64)}
    await asyncio.gather(*(batcher.submit(f) for f in [rows(0), wide, rows(1), wide]))
    assert run.rows == [2, 2]


async def test_inputs_disagreeing_on_rows_run_alone_at_once(
    make: Callable[..., DynamicBatcher],
) -> None:
    run = Recorder()
    batcher = make(run, max_batch_size=8, max_wait_s=NEVER)
    odd = {"a": np.zeros((2, 1)), "b": np.zeros((3, 1))}
    out = await batcher.submit(odd)
    assert run.shapes == [{"a": (2, 1), "b": (3, 1)}]
    assert out["b2"].shape == (3, 1)


async def test_a_full_queue_is_refused_at_once(make: Callable[..., DynamicBatcher]) -> None:
    gate = threading.Event()
    run = Recorder(gate)
    batcher = make(run, max_batch_size=1, max_queue=2)
    held = [asyncio.create_task(batcher.submit(rows(i))) for i in range(2)]
    await started(run)
    assert batcher.waiting == 2
    with pytest.raises(Overloaded) as caught:
        await batcher.submit(rows(9))
    assert caught.value.status_code == 503
    gate.set()
    await asyncio.gather(*held)
    await batcher.submit(rows(9))  # room again
    assert batcher.waiting == 0


async def test_a_failing_batch_fails_every_request(make: Callable[..., DynamicBatcher]) -> None:
    boom = EngineError("boom")
    run = Recorder(fail=boom)
    batcher = make(run, max_batch_size=3, max_wait_s=NEVER)
    outcomes = await asyncio.gather(
        *(batcher.submit(rows(i)) for i in range(3)), return_exceptions=True
    )
    assert outcomes == [boom, boom, boom]
    assert len(run.shapes) == 1
    assert batcher.waiting == 0


async def test_outputs_without_the_batch_rows_fail_the_batch(
    make: Callable[..., DynamicBatcher],
) -> None:
    def summed(feeds: Mapping[str, Array]) -> dict[str, Array]:
        return {"total": feeds["x"].sum(axis=0, keepdims=True)}

    batcher = DynamicBatcher(summed, max_batch_size=2, max_wait_s=NEVER)
    try:
        outcomes = await asyncio.gather(
            *(batcher.submit(rows(i)) for i in range(2)), return_exceptions=True
        )
    finally:
        batcher.close()
    assert all(isinstance(o, EngineError) for o in outcomes)
    assert "max_batch_size: 1" in str(outcomes[0])


async def test_a_cancelled_caller_leaves_its_running_batch_alone(
    make: Callable[..., DynamicBatcher],
) -> None:
    gate = threading.Event()
    run = Recorder(gate)
    batcher = make(run, max_batch_size=3, max_wait_s=NEVER)
    feeds = [rows(0), rows(10), rows(20)]
    tasks = [asyncio.create_task(batcher.submit(f)) for f in feeds]
    await started(run)
    tasks[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    gate.set()
    for f, task in zip(feeds[1:], tasks[1:], strict=True):
        np.testing.assert_array_equal((await task)["x2"], f["x"] * 2)
    await until(lambda: batcher.waiting == 0)


async def test_a_caller_cancelled_before_the_run_is_dropped_from_it(
    make: Callable[..., DynamicBatcher],
) -> None:
    run, sizes = Recorder(), []
    batcher = make(run, max_batch_size=3, max_wait_s=NEVER, on_batch=sizes.append)
    gone = asyncio.create_task(batcher.submit(rows(0)))
    await until(lambda: batcher.waiting == 1)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    results = await asyncio.gather(batcher.submit(rows(10)), batcher.submit(rows(20)))
    assert run.rows == [2] and sizes == [2]
    np.testing.assert_array_equal(results[1]["x2"], rows(20)["x"] * 2)
    assert batcher.waiting == 0


@pytest.mark.parametrize("options", [{"max_batch_size": 1}, {"max_wait_s": 0}])
async def test_batching_off_runs_each_alone_in_the_pool(
    make: Callable[..., DynamicBatcher], options: dict[str, Any]
) -> None:
    run, sizes = Recorder(), []
    batcher = make(run, on_batch=sizes.append, thread_name_prefix="pool", **options)
    assert not batcher.batching
    await asyncio.gather(*(batcher.submit(rows(i)) for i in range(3)))
    assert run.rows == [1, 1, 1] and sizes == [1, 1, 1]
    assert all(name.startswith("pool") for name in run.threads)


async def test_close_refuses_new_requests_and_fails_waiting_ones(
    make: Callable[..., DynamicBatcher],
) -> None:
    run = Recorder()
    batcher = make(run, max_batch_size=8, max_wait_s=NEVER)
    waiting = asyncio.create_task(batcher.submit(rows(0)))
    await until(lambda: batcher.waiting == 1)
    batcher.close()
    with pytest.raises(ServiceUnavailable):
        await waiting
    with pytest.raises(ServiceUnavailable):
        await batcher.submit(rows(1))
    assert batcher.waiting == 0 and run.shapes == []


async def test_with_run_when_idle_a_free_thread_runs_at_once_and_a_busy_pool_gathers(
    make: Callable[..., DynamicBatcher],
) -> None:
    gate = threading.Event()
    run, sizes = Recorder(gate), []
    batcher = make(
        run,
        max_batch_size=32,
        max_wait_s=NEVER,
        executor_threads=1,
        on_batch=sizes.append,
        run_when_idle=True,
    )
    first = asyncio.ensure_future(batcher.submit(rows(0)))
    await started(run)  # ran alone at once: no waiting for company with a thread free
    assert sizes == [1]
    rest = [asyncio.ensure_future(batcher.submit(rows(n))) for n in (10, 20, 30)]
    await until(lambda: batcher.waiting == 4)
    assert sizes == [1]  # the pool is busy: these three gather
    gate.set()
    await asyncio.gather(first, *rest)
    assert sizes == [1, 3]  # ...and run together when the thread frees
    assert run.rows == [1, 3]
