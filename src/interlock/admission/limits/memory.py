"""Per-process limits: the embedded default, and the failover's local limits.

Each step runs without an ``await`` inside, so on one event loop it is as
atomic as the Redis script it mirrors. Memory stays proportional to the
keys active in the last period: a TAT at or before now means "full bucket",
the same as no entry, so a sweep every ``purge_every_s`` drops those along
with lapsed leases.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from interlock.admission.limits.base import KeyLimits
from interlock.admission.limits.core import LimiterCore
from interlock.admission.limits.gcra import (
    DAY_US,
    MINUTE_US,
    PERIODS_US,
    Tally,
    adjust,
    check,
    micros,
)

__all__ = ["MemoryLimiter"]

# ``check``'s answer for an unlimited rate: no TAT, no increment, no wait.
_UNLIMITED = (0, 0, 0)


class MemoryLimiter(LimiterCore):
    """``RateLimiter`` on dicts, timed by ``clock`` (seconds, monotonic is fine)."""

    backend = "memory"

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        lease_s: float = 600.0,
        concurrency_retry_s: float = 1.0,
        purge_every_s: float = 60.0,
    ):
        super().__init__(lease_s=lease_s, concurrency_retry_s=concurrency_retry_s)
        self._clock = clock
        self._purge_every_us = micros(purge_every_s)
        self._next_purge = micros(clock()) + self._purge_every_us
        self._tats: dict[tuple[str, int], int] = {}  # (key, rate index) -> TAT µs
        self._leases: dict[str, dict[str, int]] = {}  # key -> lease id -> expiry µs

    def __len__(self) -> int:
        """Entries held (TATs and keys with leases), for tests and stats."""
        return len(self._tats) + len(self._leases)

    async def _tally(
        self, key: str, limits: KeyLimits, requests: int, tokens: int, lease_id: str | None
    ) -> Tally:
        now = micros(self._clock())
        if now >= self._next_purge:
            self._purge(now)
        stored = self._tats
        rpm, tpm, tokens_per_day = limits.rates
        # Rate by rate (written out: this runs per request), the TAT to charge
        # from, the increment and the wait; an unlimited rate has none.
        r = check(stored.get((key, 0), 0), now, requests, rpm, MINUTE_US) if rpm else _UNLIMITED
        t = check(stored.get((key, 1), 0), now, tokens, tpm, MINUTE_US) if tpm else _UNLIMITED
        d = (
            check(stored.get((key, 2), 0), now, tokens, tokens_per_day, DAY_US)
            if tokens_per_day
            else _UNLIMITED
        )
        waits = (r[2], t[2], d[2])
        max_concurrent = limits.max_concurrent
        leases = self._live_leases(key, now) if max_concurrent else {}
        full = max_concurrent is not None and len(leases) >= max_concurrent
        if full or any(waits):
            return Tally(False, now, (r[0], t[0], d[0]), waits, full)
        tats = (r[0] + r[1], t[0] + t[1], d[0] + d[1])
        if r[1] > 0:
            stored[(key, 0)] = tats[0]
        if t[1] > 0:
            stored[(key, 1)] = tats[1]
        if d[1] > 0:
            stored[(key, 2)] = tats[2]
        if lease_id is not None:
            leases[lease_id] = now + self._lease_us
            self._leases[key] = leases
        return Tally(True, now, tats, waits, False)

    async def _settle(self, key: str, limits: KeyLimits, delta: int, lease_id: str | None) -> None:
        now = micros(self._clock())
        if delta:
            stored = self._tats
            for i in (1, 2):
                limit = limits.rates[i]
                if not limit:
                    continue
                tat = adjust(stored.get((key, i), 0), now, delta, limit, PERIODS_US[i])
                if tat > now:
                    stored[(key, i)] = tat
                else:
                    stored.pop((key, i), None)
        if lease_id is not None:
            self._leases.get(key, {}).pop(lease_id, None)

    async def in_flight(self, keys: Sequence[str]) -> dict[str, int]:
        now = micros(self._clock())
        return {key: len(self._live_leases(key, now)) for key in keys}

    def _live_leases(self, key: str, now: int) -> dict[str, int]:
        """``key``'s unexpired leases (expired ones dropped, as ZREMRANGEBYSCORE does)."""
        leases = self._leases.get(key)
        if not leases:
            return {}
        live = {lease: expiry for lease, expiry in leases.items() if expiry > now}
        self._leases[key] = live
        return live

    def _purge(self, now: int) -> None:
        self._next_purge = now + self._purge_every_us
        self._tats = {slot: tat for slot, tat in self._tats.items() if tat > now}
        for key in list(self._leases):
            if not self._live_leases(key, now):
                del self._leases[key]
