"""The circuit breaker's data: its states, the record shared through the store,
and the local rolling window of outcomes that decides when to trip.

See ``interlock.routing.breaker`` for the state machine that uses them.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["STATE_GAUGE", "BreakerRecord", "BreakerState", "OutcomeWindow"]

log = logging.getLogger("interlock.breaker")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# Values of the ``interlock_breaker_state`` gauge.
STATE_GAUGE: Mapping[BreakerState, int] = {
    BreakerState.CLOSED: 0,
    BreakerState.HALF_OPEN: 1,
    BreakerState.OPEN: 2,
}


@dataclass(frozen=True, slots=True)
class BreakerRecord:
    """The shared decision. Half-open is not stored: it is open with ``open_until`` past."""

    open_until: float | None = None  # epoch seconds; None while closed
    level: int = 0
    gen: int = 0

    def state_at(self, wall_now: float) -> BreakerState:
        if self.open_until is None:
            return BreakerState.CLOSED
        return BreakerState.OPEN if wall_now < self.open_until else BreakerState.HALF_OPEN

    def dump(self) -> bytes:
        state = "closed" if self.open_until is None else "open"
        body = {"state": state, "open_until": self.open_until, "level": self.level, "gen": self.gen}
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def load(cls, raw: bytes | None) -> BreakerRecord:
        if raw is None:
            return cls()
        try:
            body = json.loads(raw)
            until = body["open_until"]
            return cls(
                None if until is None else float(until), int(body["level"]), int(body["gen"])
            )
        except (ValueError, TypeError, KeyError):
            # Unreadable (another version?): treat as closed; our next write replaces it.
            log.warning("unreadable breaker record %r; treating it as closed", raw[:200])
            return cls()


class OutcomeWindow:
    """Outcome counts over roughly the last ``window_s``, in fixed buckets (O(1) memory)."""

    BUCKETS = 10

    def __init__(self, window_s: float):
        self._width = window_s / self.BUCKETS
        self._buckets: deque[list[int]] = deque()  # [bucket index, requests, failures]

    def add(self, now: float, failed: bool) -> None:
        index = math.floor(now / self._width)
        if not self._buckets or self._buckets[-1][0] != index:
            self._buckets.append([index, 0, 0])
        bucket = self._buckets[-1]
        bucket[1] += 1
        bucket[2] += failed

    def counts(self, now: float) -> tuple[int, int]:
        """(requests, failures) in the buckets still inside the window."""
        oldest = math.floor(now / self._width) - self.BUCKETS + 1
        while self._buckets and self._buckets[0][0] < oldest:
            self._buckets.popleft()
        return sum(b[1] for b in self._buckets), sum(b[2] for b in self._buckets)

    def clear(self) -> None:
        self._buckets.clear()
