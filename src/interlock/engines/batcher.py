"""Dynamic batching: concurrent requests share one model run.

A model whose first dimension is the batch computes 32 rows in little more
time than one, so requests that arrive together are worth running together.
``DynamicBatcher.submit`` puts a request's rows in an open batch of
requests whose inputs have the same names, dtypes and trailing dimensions
(only those can be concatenated); the batch runs when its rows reach
``max_batch_size`` or ``max_wait_s`` after its first request arrived,
whichever is sooner. A request larger than ``max_batch_size`` runs alone,
never split. The run concatenates each input along axis 0 in a worker
thread, makes one blocking call, and hands every request its own rows of
each output.

Bounds: the worker pool has ``executor_threads`` threads, and at most
``max_queue`` requests wait or run at once; one more is refused at once
with ``Overloaded`` (503) instead of queueing without end. A failing batch
fails each of its requests with the same error. A caller that gives up
(cancellation, timeout) leaves its batch running for the others; its rows
are dropped if the batch has not started.

``max_batch_size=1`` or ``max_wait_s=0`` turns batching off: every request
runs alone, still in the bounded pool and under the same queue bound.

With ``run_when_idle`` (what the ONNX provider ships), a request that finds
a worker thread free does not wait for company: it runs at once, and
requests gather in a batch only while every thread is busy; the batch runs
as soon as a thread frees (or when it is full, or after ``max_wait_s``).
Waiting for company only pays when the pool is busy: at low concurrency the
timer would add ``max_wait_s`` to every request for nothing.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from interlock.engines import EngineError
from interlock.engines.tensors import Array
from interlock.errors import Overloaded, ServiceUnavailable

__all__ = ["DynamicBatcher", "Feeds", "Outputs"]

Feeds = Mapping[str, Array]
Outputs = dict[str, Array]


@dataclass(slots=True, eq=False)
class _Request:
    feeds: Feeds
    rows: int
    future: asyncio.Future[Outputs]


@dataclass(slots=True, eq=False)
class _Batch:
    key: Hashable
    requests: list[_Request] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.TimerHandle | None = None
    dispatched: bool = False


def _batch_key(feeds: Feeds) -> tuple[tuple[str, str, tuple[int, ...]], ...] | None:
    """What requests must share to be concatenated; ``None`` when this one
    cannot be (a scalar input, or inputs disagreeing on their row count)."""
    if not feeds or any(array.ndim == 0 for array in feeds.values()):
        return None
    if len({array.shape[0] for array in feeds.values()}) != 1:
        return None
    return tuple(
        sorted((name, array.dtype.str, tuple(array.shape[1:])) for name, array in feeds.items())
    )


def _rows(feeds: Feeds) -> int:
    return max((array.shape[0] for array in feeds.values() if array.ndim), default=1)


class DynamicBatcher:
    """Runs ``run`` (blocking: feeds in, outputs out) for concurrent
    requests in shared batches; see the module docstring."""

    def __init__(
        self,
        run: Callable[[Feeds], Outputs],
        *,
        max_batch_size: int = 32,
        max_wait_s: float = 0.002,
        max_queue: int = 1024,
        executor_threads: int = 2,
        on_batch: Callable[[int], None] | None = None,
        thread_name_prefix: str = "batch",
        run_when_idle: bool = False,
    ):
        if max_batch_size < 1 or max_wait_s < 0 or max_queue < 1 or executor_threads < 1:
            raise ValueError("batcher bounds must be positive")
        self._run = run
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        # Called once per batch run, with its rows (a metrics histogram).
        self.on_batch = on_batch
        self._executor = ThreadPoolExecutor(executor_threads, thread_name_prefix=thread_name_prefix)
        self._threads = executor_threads
        self.run_when_idle = run_when_idle
        self._running = 0  # batches dispatched and not yet answered
        self._open: dict[Hashable, _Batch] = {}
        self._waiting = 0  # requests submitted and not yet answered
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 1 and self.max_wait_s > 0

    @property
    def waiting(self) -> int:
        """Requests submitted and not yet answered (the ``max_queue`` count)."""
        return self._waiting

    async def submit(self, feeds: Feeds) -> Outputs:
        """This request's outputs, computed in some batch; ``Overloaded``
        when ``max_queue`` requests are already waiting."""
        if self._closed:
            raise ServiceUnavailable("This model is shutting down.")
        if self._waiting >= self.max_queue:
            raise Overloaded(
                f"This model already has {self.max_queue} requests waiting; retry shortly.",
                retry_after_s=1,
            )
        loop = asyncio.get_running_loop()
        request = _Request(feeds, _rows(feeds), loop.create_future())
        self._waiting += 1  # counted down when its batch answers it
        self._enqueue(request, loop)
        # Cancelling the caller cancels only this future; the batch goes on.
        return await request.future

    def _enqueue(self, request: _Request, loop: asyncio.AbstractEventLoop) -> None:
        key = _batch_key(request.feeds) if self.batching else None
        idle = self.run_when_idle and self._running < self._threads
        if key is None or (idle and key not in self._open):  # nothing to wait for
            self._dispatch(_Batch(object(), [request], request.rows))
            return
        batch = self._open.get(key)
        if batch is not None and batch.rows + request.rows > self.max_batch_size:
            self._dispatch(batch)
            batch = None
        if batch is None:
            batch = _Batch(key)
            self._open[key] = batch
            batch.timer = loop.call_later(self.max_wait_s, self._dispatch, batch)
        batch.requests.append(request)
        batch.rows += request.rows
        if batch.rows >= self.max_batch_size or idle:
            self._dispatch(batch)

    def _dispatch(self, batch: _Batch) -> None:
        """Close ``batch`` to newcomers and start running it."""
        if batch.dispatched:
            return
        batch.dispatched = True
        if self._open.get(batch.key) is batch:
            del self._open[batch.key]
        if batch.timer is not None:
            batch.timer.cancel()
        self._running += 1
        task = asyncio.get_running_loop().create_task(self._execute(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, batch: _Batch) -> None:
        live = [request for request in batch.requests if not request.future.done()]
        try:
            if self._closed:
                _fail(live, ServiceUnavailable("This model is shutting down."))
            elif live:
                if self.on_batch is not None:
                    self.on_batch(sum(request.rows for request in live))
                loop = asyncio.get_running_loop()
                results = await loop.run_in_executor(
                    self._executor, self._run_batch, [r.feeds for r in live], [r.rows for r in live]
                )
                for request, outputs in zip(live, results, strict=True):
                    if not request.future.done():
                        request.future.set_result(outputs)
        except asyncio.CancelledError:
            # The pool was shut down before this batch started (``close``).
            _fail(live, ServiceUnavailable("This model is shutting down."))
            raise
        except Exception as exc:
            _fail(live, exc)
        finally:
            self._waiting -= len(batch.requests)
            self._running -= 1
            if self.run_when_idle and self._open and not self._closed:
                # A thread is free: the batch gathered longest runs now.
                self._dispatch(next(iter(self._open.values())))

    def _run_batch(self, feeds: Sequence[Feeds], rows: Sequence[int]) -> list[Outputs]:
        """In a worker thread: concatenate, run once, split by rows."""
        if len(feeds) == 1:
            return [self._run(feeds[0])]
        merged = {name: np.concatenate([f[name] for f in feeds], axis=0) for name in feeds[0]}
        outputs = self._run(merged)
        total = sum(rows)
        for name, array in outputs.items():
            if array.ndim == 0 or array.shape[0] != total:
                raise EngineError(
                    f"output '{name}' has shape {list(array.shape)} for a batch of {total} rows: "
                    "this model's first dimension is not the batch; set max_batch_size: 1"
                )
        bounds = list(itertools.accumulate(rows, initial=0))
        return [
            {name: array[start:end] for name, array in outputs.items()}
            for start, end in itertools.pairwise(bounds)
        ]

    def close(self) -> None:
        """Refuse new requests, fail those not yet running, and shut the
        pool down; batches already running finish in their threads."""
        self._closed = True
        for batch in list(self._open.values()):
            batch.dispatched = True
            if batch.timer is not None:
                batch.timer.cancel()
            _fail(batch.requests, ServiceUnavailable("This model is shutting down."))
            self._waiting -= len(batch.requests)
        self._open.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _fail(requests: Sequence[_Request], exc: BaseException) -> None:
    for request in requests:
        if not request.future.done():
            request.future.set_exception(exc)
