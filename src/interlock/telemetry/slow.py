"""The recent slowest requests with their stage breakdown, for
``GET /admin/requests/slow``. Bounded: at most ``capacity`` entries, each
forgotten after ``window_s``."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import Any

from interlock.telemetry.record import RequestRecord

__all__ = ["SlowRequests"]


class SlowRequests:
    def __init__(
        self,
        capacity: int = 50,
        window_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._capacity = capacity
        self._window_s = window_s
        self._clock = clock
        self._sequence = 0  # ties broken by arrival, never by comparing dicts
        self._heap: list[tuple[float, int, float, dict[str, Any]]] = []

    def offer(self, record: RequestRecord) -> None:
        duration = record.duration_s
        heap = self._heap
        if len(heap) >= self._capacity and duration <= heap[0][0]:
            return  # the common case: not among the slowest, one comparison
        self._sequence += 1
        entry = (duration, self._sequence, self._clock(), record.log_fields(with_stages=True))
        if len(heap) >= self._capacity:
            heapq.heapreplace(heap, entry)
        else:
            heapq.heappush(heap, entry)

    def slowest(self, limit: int = 20) -> list[dict[str, Any]]:
        horizon = self._clock() - self._window_s
        self._heap = [e for e in self._heap if e[2] >= horizon]
        heapq.heapify(self._heap)
        ordered = sorted(self._heap, key=lambda e: e[0], reverse=True)
        return [entry[3] for entry in ordered[:limit]]
