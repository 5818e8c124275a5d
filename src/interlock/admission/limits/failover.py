"""Shared limits while Redis answers, per-instance limits while it does not.

A failed shared admission (``StateStoreUnavailable``: an error or a timeout)
falls back for that request. While the Redis health latch is tripped
(``interlock.state.health``: a few timeouts or refused connections in a row,
shared with the state store's client of the same Redis), ``FailoverLimiter``
is *degraded* and does not ask Redis at all: in ``fail_open_local`` mode
(the default) each instance enforces the limits on its own, optionally
scaled by ``local_fraction``; in ``fail_closed`` mode it refuses with 503
semantics (``reason="unavailable"``). The latch probes Redis in the
background and lifts itself when it answers; shared limits resume with it.
The latch logs both transitions once, and tells its listeners (readiness,
metrics) through ``StoreHealth.on_change``.

Reservations settle where they were issued. A shared one settled during an
outage is dropped with a debug log: its charge stays in Redis (erring
towards over-charging) and its lease lapses after ``lease_s``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

from interlock.admission.limits.base import Decision, KeyLimits, RateLimiter, Reservation
from interlock.state.base import StateStoreUnavailable
from interlock.state.health import StoreHealth

__all__ = ["FailoverLimiter", "FailoverMode"]

log = logging.getLogger("interlock.admission.limits")

FailoverMode = Literal["fail_open_local", "fail_closed"]


class FailoverLimiter:
    """A ``RateLimiter`` over a shared limiter with a local fallback.

    ``health`` is the latch of the shared limiter's Redis (the one it was
    built with): while it is tripped, the shared limiter is not asked.
    """

    backend = "failover"

    def __init__(
        self,
        shared: RateLimiter,
        local: RateLimiter,
        *,
        health: StoreHealth,
        mode: FailoverMode = "fail_open_local",
        local_fraction: float = 1.0,
    ):
        if mode not in ("fail_open_local", "fail_closed"):
            raise ValueError(f"unknown failover mode {mode!r}")
        if not 0 < local_fraction <= 1:
            raise ValueError("need 0 < local_fraction <= 1")
        if shared.backend == local.backend:
            raise ValueError("shared and local limiters must be different backends")
        self.shared, self.local, self.mode = shared, local, mode
        self._health = health
        self._local_fraction = local_fraction

    @property
    def degraded(self) -> bool:
        """True while shared limits are unavailable (for readiness and metrics)."""
        return not self._health.available

    async def admit(
        self, key: str, limits: KeyLimits, *, requests: int = 1, tokens: int = 0
    ) -> Decision:
        if limits.unlimited:  # nothing to count: no reason to ask Redis, or to refuse
            return await self.local.admit(key, limits, requests=requests, tokens=tokens)
        if self._health.available:
            try:
                return await self.shared.admit(key, limits, requests=requests, tokens=tokens)
            except StateStoreUnavailable as exc:
                log.debug("shared limits unavailable for %r, limited locally: %s", key, exc)
        return await self._fallback(key, limits, requests, tokens)

    async def reconcile(self, reservation: Reservation, actual_tokens: int) -> None:
        await self._settle(reservation, actual_tokens, release=False)

    async def release_concurrency(self, reservation: Reservation) -> None:
        await self._settle(reservation, None, release=True)

    async def finish(self, reservation: Reservation, actual_tokens: int) -> None:
        await self._settle(reservation, actual_tokens, release=True)

    async def in_flight(self, keys: Sequence[str]) -> dict[str, int]:
        """The shared counts while Redis answers, else this instance's (the
        slots it hands out while degraded)."""
        if self._health.available:
            try:
                return await self.shared.in_flight(keys)
            except StateStoreUnavailable as exc:
                log.debug("shared limits unavailable, in-flight counts are local: %s", exc)
        return await self.local.in_flight(keys)

    async def aclose(self) -> None:
        await self.shared.aclose()
        await self.local.aclose()

    async def _fallback(self, key: str, limits: KeyLimits, requests: int, tokens: int) -> Decision:
        if self.mode == "fail_closed":
            wait = max(self._health.probe_wait_s(), 1.0)
            return Decision(False, {}, None, "unavailable", wait)
        if self._local_fraction < 1:
            limits = limits.scaled(self._local_fraction)
        return await self.local.admit(key, limits, requests=requests, tokens=tokens)

    async def _settle(
        self, reservation: Reservation, actual_tokens: int | None, *, release: bool
    ) -> None:
        if reservation.backend == self.local.backend:
            await _settle_on(self.local, reservation, actual_tokens, release)
            return
        try:
            await _settle_on(self.shared, reservation, actual_tokens, release)
        except StateStoreUnavailable as exc:
            log.debug("dropped settling a shared reservation for %r: %s", reservation.key, exc)


async def _settle_on(
    limiter: RateLimiter, reservation: Reservation, actual_tokens: int | None, release: bool
) -> None:
    if actual_tokens is None:
        await limiter.release_concurrency(reservation)
    elif release:
        await limiter.finish(reservation, actual_tokens)
    else:
        await limiter.reconcile(reservation, actual_tokens)
