"""Per-process limits: the embedded default, and the failover's local limits.

Each step runs without an ``await`` inside, so on one event loop it is as
atomic as the Redis script it mirrors. Memory stays proportional to the
keys active in the last period: a TAT at or before now means "full bucket",
the same as no entry, so a sweep every ``purge_every_s`` drops those along
with lapsed leases.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from interlock.admission.limits.base import KeyLimits
from interlock.admission.limits.core import LimiterCore
from interlock.admission.limits.gcra import PERIODS_US, Tally, adjust, check, micros, rates

__all__ = ["MemoryLimiter"]


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
        self._maybe_purge(now)
        costs = (requests, tokens, tokens)
        tats, incs, waits = [0, 0, 0], [0, 0, 0], [0, 0, 0]
        for i, limit in enumerate(rates(limits)):
            if limit:
                stored = self._tats.get((key, i), 0)
                tats[i], incs[i], waits[i] = check(stored, now, costs[i], limit, PERIODS_US[i])
        leases = self._live_leases(key, now) if limits.max_concurrent else {}
        full = limits.max_concurrent is not None and len(leases) >= limits.max_concurrent
        allowed = not full and not any(waits)
        if allowed:
            for i, inc in enumerate(incs):
                if inc > 0:
                    tats[i] += inc
                    self._tats[(key, i)] = tats[i]
            if lease_id is not None:
                leases[lease_id] = now + self._lease_us
                self._leases[key] = leases
        return Tally(
            allowed, now, (tats[0], tats[1], tats[2]), (waits[0], waits[1], waits[2]), full
        )

    async def _settle(self, key: str, limits: KeyLimits, delta: int, lease_id: str | None) -> None:
        now = micros(self._clock())
        if delta:
            for i in (1, 2):
                limit = rates(limits)[i]
                if not limit:
                    continue
                tat = adjust(self._tats.get((key, i), 0), now, delta, limit, PERIODS_US[i])
                if tat > now:
                    self._tats[(key, i)] = tat
                else:
                    self._tats.pop((key, i), None)
        if lease_id is not None:
            self._leases.get(key, {}).pop(lease_id, None)

    def _live_leases(self, key: str, now: int) -> dict[str, int]:
        """``key``'s unexpired leases (expired ones dropped, as ZREMRANGEBYSCORE does)."""
        leases = self._leases.get(key)
        if not leases:
            return {}
        live = {lease: expiry for lease, expiry in leases.items() if expiry > now}
        self._leases[key] = live
        return live

    def _maybe_purge(self, now: int) -> None:
        if now < self._next_purge:
            return
        self._next_purge = now + self._purge_every_us
        self._tats = {slot: tat for slot, tat in self._tats.items() if tat > now}
        for key in list(self._leases):
            if not self._live_leases(key, now):
                del self._leases[key]
