"""Load shedding: a global in-flight cap with a short bounded wait queue.

Beyond the global cap a request waits (higher priority first, then arrival
order) for at most ``queue_timeout_s`` and only while the queue has room;
otherwise it gets a fast 503 with ``Retry-After``. Memory stays bounded by
``max_in_flight + max_queue`` whatever the offered load.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable

from interlock.errors import Overloaded

__all__ = ["InFlightLimiter"]


class InFlightLimiter:
    def __init__(
        self,
        max_in_flight: int,
        max_queue: int,
        queue_timeout_s: float,
        on_reject: Callable[[str], None] | None = None,
    ):
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.in_flight = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._on_reject = on_reject

    @property
    def queued(self) -> int:
        return len(self._waiters)

    async def acquire(self, priority: int = 0) -> None:
        """Take a slot, waiting briefly if needed; raise ``Overloaded`` if none."""
        if self.in_flight < self.max_in_flight and not self._waiters:
            self.in_flight += 1
            return
        if len(self._waiters) >= self.max_queue or self.queue_timeout_s <= 0:
            self._reject()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Lower number = served first: a higher tier's priority goes first.
        heapq.heappush(self._waiters, (-priority, next(self._order), waiter))
        try:
            async with asyncio.timeout(self.queue_timeout_s):
                await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return  # the slot arrived as the deadline passed: keep it
            self._forget(waiter)
            self._reject()
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot while being cancelled: pass it on
            self._forget(waiter)
            raise

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        waiter.cancel()
        # O(queue) but the queue is bounded by max_queue and this is the slow path.
        self._waiters = [entry for entry in self._waiters if entry[2] is not waiter]
        heapq.heapify(self._waiters)

    def release(self) -> None:
        """Hand the slot to the first live waiter, or free it."""
        while self._waiters:
            _, _, waiter = heapq.heappop(self._waiters)
            if not waiter.done():
                waiter.set_result(None)
                return
        self.in_flight -= 1

    def _reject(self) -> None:
        if self._on_reject is not None:
            self._on_reject("overloaded")
        raise Overloaded("The gateway is at capacity; retry shortly.", retry_after_s=1.0)
