"""Shared limits while Redis answers, per-instance limits while it does not.

While the shared limiter fails (``StateStoreUnavailable``: an error or a
timeout), ``FailoverLimiter`` is *degraded*: in ``fail_open_local`` mode
(the default) each instance enforces the limits on its own, optionally
scaled by ``local_fraction``; in ``fail_closed`` mode it refuses with 503
semantics (``reason="unavailable"``). Once degraded it asks Redis again at
most every ``probe_interval_s``, with one request at a time, so an outage
costs one timeout per interval rather than one per request, and goes back
to shared limits by itself when a probe succeeds. Both transitions are
logged once and reported to ``on_change`` (readiness, metrics).

Reservations settle where they were issued. A shared one settled during an
outage is dropped with a debug log: its charge stays in Redis (erring
towards over-charging) and its lease lapses after ``lease_s``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Literal

from interlock.admission.limits.base import Decision, KeyLimits, RateLimiter, Reservation
from interlock.state.base import StateStoreUnavailable

__all__ = ["FailoverLimiter", "FailoverMode"]

log = logging.getLogger("interlock.admission.limits")

FailoverMode = Literal["fail_open_local", "fail_closed"]


class FailoverLimiter:
    """A ``RateLimiter`` over a shared limiter with a local fallback."""

    backend = "failover"

    def __init__(
        self,
        shared: RateLimiter,
        local: RateLimiter,
        *,
        mode: FailoverMode = "fail_open_local",
        probe_interval_s: float = 5.0,
        local_fraction: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ):
        if mode not in ("fail_open_local", "fail_closed"):
            raise ValueError(f"unknown failover mode {mode!r}")
        if probe_interval_s <= 0 or not 0 < local_fraction <= 1:
            raise ValueError("need probe_interval_s > 0 and 0 < local_fraction <= 1")
        if shared.backend == local.backend:
            raise ValueError("shared and local limiters must be different backends")
        self.shared, self.local, self.mode = shared, local, mode
        self._probe_interval_s = probe_interval_s
        self._local_fraction = local_fraction
        self._clock = clock
        self._on_change = on_change
        self._degraded = False
        self._probing = False
        self._next_probe = 0.0

    @property
    def degraded(self) -> bool:
        """True while shared limits are unavailable (for readiness and metrics)."""
        return self._degraded

    async def admit(
        self, key: str, limits: KeyLimits, *, requests: int = 1, tokens: int = 0
    ) -> Decision:
        if limits.unlimited:  # nothing to count: no reason to ask Redis, or to refuse
            return await self.local.admit(key, limits, requests=requests, tokens=tokens)
        probe = self._degraded
        if not probe or self._take_probe():
            try:
                decision = await self.shared.admit(key, limits, requests=requests, tokens=tokens)
            except StateStoreUnavailable as exc:
                self._failed(exc)
            else:
                self._recovered()
                return decision
            finally:
                if probe:
                    self._probing = False
        return await self._fallback(key, limits, requests, tokens)

    async def reconcile(self, reservation: Reservation, actual_tokens: int) -> None:
        await self._settle(reservation, actual_tokens, release=False)

    async def release_concurrency(self, reservation: Reservation) -> None:
        await self._settle(reservation, None, release=True)

    async def finish(self, reservation: Reservation, actual_tokens: int) -> None:
        await self._settle(reservation, actual_tokens, release=True)

    async def aclose(self) -> None:
        await self.shared.aclose()
        await self.local.aclose()

    def _take_probe(self) -> bool:
        """Whether this degraded call may try the shared limiter (one at a time)."""
        if self._probing or self._clock() < self._next_probe:
            return False
        self._probing = True
        return True

    async def _fallback(self, key: str, limits: KeyLimits, requests: int, tokens: int) -> Decision:
        if self.mode == "fail_closed":
            wait = max(self._next_probe - self._clock(), 1.0)
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
            self._failed(exc)

    def _failed(self, exc: StateStoreUnavailable) -> None:
        self._next_probe = self._clock() + self._probe_interval_s
        if self._degraded:
            return
        self._degraded = True
        log.warning("shared rate limits unavailable (%s); %s", exc, _MODE_EFFECT[self.mode])
        if self._on_change is not None:
            self._on_change(True)

    def _recovered(self) -> None:
        if not self._degraded:
            return
        self._degraded = False
        log.warning("shared rate limits available again; back to shared limits")
        if self._on_change is not None:
            self._on_change(False)


_MODE_EFFECT: dict[FailoverMode, str] = {
    "fail_open_local": "enforcing per-instance limits until Redis answers",
    "fail_closed": "refusing requests until Redis answers",
}


async def _settle_on(
    limiter: RateLimiter, reservation: Reservation, actual_tokens: int | None, release: bool
) -> None:
    if actual_tokens is None:
        await limiter.release_concurrency(reservation)
    elif release:
        await limiter.finish(reservation, actual_tokens)
    else:
        await limiter.reconcile(reservation, actual_tokens)
