"""Is online traffic heavy enough that batch work should wait?

Here: online requests in flight or waiting for a slot in this process's
admission (the batch's own items not counted) reach ``yield_at`` of the
in-flight cap. Everywhere: a gateway that finds itself that busy keeps a
flag in the state store (``batch:online-busy``, a few seconds' TTL,
renewed while it lasts), and every worker, in any process sharing the
store (Redis), pauses while the flag is there. One key, no discovery of
gateways: a worker only needs to know that some gateway is busy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from interlock.admission.concurrency import InFlightLimiter
from interlock.state import StateStore

__all__ = ["BUSY_KEY", "OnlineLoad"]

log = logging.getLogger("interlock.batch")

BUSY_KEY = "batch:online-busy"


class OnlineLoad:
    def __init__(
        self,
        limiter: InFlightLimiter,
        yield_at: float,
        batch_in_flight: Callable[[], int],
        state: StateStore | None = None,
        *,
        interval_s: float = 0.5,
    ):
        self._limiter = limiter
        self._threshold = max(1, int(limiter.max_in_flight * yield_at))
        self._batch_in_flight = batch_in_flight
        self._state = state
        self._interval_s = interval_s
        self._elsewhere = False
        self._stopped = asyncio.Event()

    def busy(self) -> bool:
        return self.busy_here() or self._elsewhere

    def busy_here(self) -> bool:
        limiter = self._limiter
        online = limiter.in_flight - self._batch_in_flight() + limiter.queued
        return online >= self._threshold

    async def tick(self) -> None:
        """Raise the shared flag if this process is busy; read it."""
        if self._state is None:
            return
        if self.busy_here():
            await self._state.set(BUSY_KEY, b"1", ttl_s=self._interval_s * 4)
            self._elsewhere = True
            return
        self._elsewhere = await self._state.get(BUSY_KEY) is not None

    async def run(self) -> None:
        """Tick until ``stop`` (a flag, not only cancellation: see
        ``BatchWorker.stop`` on cancellations lost in a client's timeout)."""
        while not self._stopped.is_set():
            try:
                await self.tick()
            except Exception as exc:  # the state store is out: local load only
                self._elsewhere = False
                log.debug("online load flag unavailable", extra={"error": str(exc)})
            try:
                await asyncio.wait_for(self._stopped.wait(), self._interval_s)
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stopped.set()
