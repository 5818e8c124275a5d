"""The most recent failed requests with their stage breakdown, for
``GET /admin/requests/failed`` and ``GET /admin/requests/{id}``.

A failure is any answer with status 400 or above: client errors too (a 401
or 429 is often what a caller asks the operator about), so a burst of them
can push older server errors out. Bounded: at most ``capacity`` entries,
each forgotten after ``window_s``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Any

from interlock.telemetry.record import RequestRecord

__all__ = ["RecentFailures"]


class RecentFailures:
    """The last ``capacity`` failed requests as access-log lines with stages."""

    def __init__(
        self,
        capacity: int = 50,
        window_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._window_s = window_s
        self._clock = clock
        # (kept at, request id, access-log fields), oldest first.
        self._entries: deque[tuple[float, str, dict[str, Any]]] = deque(maxlen=capacity)

    def offer(self, record: RequestRecord) -> None:
        """Keep ``record`` if it failed (status >= 400); otherwise one comparison."""
        if record.status < 400:
            return
        fields = record.log_fields(with_stages=True)
        self._entries.append((self._clock(), record.request_id, fields))

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        """Up to ``limit`` failures, newest first."""
        self._forget_old()
        return [fields for _, _, fields in islice(reversed(self._entries), limit)]

    def find(self, request_id: str) -> dict[str, Any] | None:
        """The kept failure with this ``x-request-id``, if any (the newest if repeated)."""
        self._forget_old()
        return next((e[2] for e in reversed(self._entries) if e[1] == request_id), None)

    def _forget_old(self) -> None:
        horizon = self._clock() - self._window_s
        entries = self._entries
        while entries and entries[0][0] < horizon:
            entries.popleft()
