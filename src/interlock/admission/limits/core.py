"""What both backends share: argument checks, leases, settling rules.

A backend supplies two atomic steps, ``_tally`` (check every limit and charge
them all, or none) and ``_settle`` (adjust token TATs and free a lease);
everything around them lives here once, so the backends cannot drift apart.
"""

from __future__ import annotations

import itertools
import secrets
from abc import ABC, abstractmethod
from collections.abc import Sequence

from interlock.admission.limits.base import Decision, KeyLimits, Reservation
from interlock.admission.limits.decision import decide
from interlock.admission.limits.gcra import Tally, micros
from interlock.admission.limits.headers import RateHeaders

__all__ = ["LimiterCore"]


class LimiterCore(ABC):
    """Template for a ``RateLimiter`` backend.

    ``lease_s`` bounds how long a concurrency slot survives without a
    release (an instance that dies mid-request frees its slots then);
    ``concurrency_retry_s`` is the Retry-After for a concurrency refusal,
    since when a slot frees up cannot be known.
    """

    backend = "abstract"

    def __init__(self, *, lease_s: float = 600.0, concurrency_retry_s: float = 1.0):
        if lease_s <= 0 or concurrency_retry_s <= 0:
            raise ValueError("lease_s and concurrency_retry_s must be positive")
        self._lease_us = micros(lease_s)
        self._concurrency_retry_us = micros(concurrency_retry_s)
        # Lease ids: unique across instances (random part) and cheap (counter).
        self._lease_prefix = secrets.token_hex(6)
        self._lease_seq = itertools.count()
        self._headers = RateHeaders()

    async def admit(
        self, key: str, limits: KeyLimits, *, requests: int = 1, tokens: int = 0
    ) -> Decision:
        if requests < 0 or tokens < 0:
            raise ValueError("requests and tokens must not be negative")
        if limits.unlimited:
            return Decision(True, {}, Reservation(key, limits, tokens, None, self.backend))
        lease_id = None
        if limits.max_concurrent is not None:
            lease_id = f"{self._lease_prefix}-{next(self._lease_seq)}"
        tally = await self._tally(key, limits, requests, tokens, lease_id)
        reservation = Reservation(key, limits, tokens, lease_id, self.backend)
        return decide(tally, reservation, self._concurrency_retry_us, self._headers)

    async def reconcile(self, reservation: Reservation, actual_tokens: int) -> None:
        delta, lease_id = self._claim(reservation, actual_tokens, release=False)
        if delta or lease_id is not None:
            await self._settle(reservation.key, reservation.limits, delta, lease_id)

    async def release_concurrency(self, reservation: Reservation) -> None:
        delta, lease_id = self._claim(reservation, None, release=True)
        if delta or lease_id is not None:
            await self._settle(reservation.key, reservation.limits, delta, lease_id)

    async def finish(self, reservation: Reservation, actual_tokens: int) -> None:
        delta, lease_id = self._claim(reservation, actual_tokens, release=True)
        if delta or lease_id is not None:
            await self._settle(reservation.key, reservation.limits, delta, lease_id)

    async def aclose(self) -> None:  # noqa: B027 - a no-op unless the backend holds resources
        """Release resources; nothing to do unless the backend holds connections."""

    def _claim(
        self, reservation: Reservation, actual_tokens: int | None, *, release: bool
    ) -> tuple[int, str | None]:
        """What is still open to settle, at most once per part: the token
        delta and the lease to free (the caller settles them if any).

        Flags are set before the round trip: a settle that fails is not
        retried, which errs towards over-charging (the reservation stays
        charged, the lease lapses after ``lease_s``), never towards a
        double refund.
        """
        if reservation.backend != self.backend:
            raise ValueError(f"a {reservation.backend} reservation cannot settle on {self.backend}")
        delta = 0
        if actual_tokens is not None and not reservation.reconciled:
            if actual_tokens < 0:
                raise ValueError("actual_tokens must not be negative")
            reservation.reconciled = True
            if reservation.limits.limits_tokens:
                delta = actual_tokens - reservation.tokens
        lease_id = None
        if release and not reservation.released:
            reservation.released = True
            lease_id = reservation.lease_id
        return delta, lease_id

    @abstractmethod
    async def _tally(
        self, key: str, limits: KeyLimits, requests: int, tokens: int, lease_id: str | None
    ) -> Tally:
        """Atomically check all of ``key``'s limits and, only if all fit, charge them."""

    @abstractmethod
    async def in_flight(self, keys: Sequence[str]) -> dict[str, int]:
        """The unexpired leases each of ``keys`` holds (``RateLimiter.in_flight``)."""

    @abstractmethod
    async def _settle(self, key: str, limits: KeyLimits, delta: int, lease_id: str | None) -> None:
        """Atomically move the token TATs by ``delta`` tokens and free ``lease_id``."""
