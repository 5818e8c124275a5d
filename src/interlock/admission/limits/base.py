"""The limiter's vocabulary: what a key may do, what admission answers.

``KeyLimits`` is configuration, ``Decision`` is what ``admit`` returns and
``Reservation`` is the handle the caller keeps until the response ends, so
that settling it (``reconcile``, ``release_concurrency``, ``finish``) needs
nothing else. ``RateLimiter`` is the interface every implementation and the
failover wrapper share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

__all__ = [
    "Decision",
    "KeyLimits",
    "RateLimiter",
    "Reason",
    "Reservation",
]

# Why a request was refused; "unavailable" only comes from a fail-closed failover.
Reason = Literal["rpm", "tpm", "tokens_per_day", "concurrency", "unavailable"]


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """Per-key limits; ``None`` means unlimited.

    Rates are enforced with GCRA (see ``interlock.admission.limits``), so each
    refills continuously: ``rpm=60`` admits a burst of 60, then one a second.
    """

    rpm: int | None = None
    tpm: int | None = None
    tokens_per_day: int | None = None
    max_concurrent: int | None = None
    # Derived once here, read on every admission: the three rates in rate
    # order with 0 for unlimited (as the Redis script takes them), whether
    # nothing is limited (admission needs no state), and whether tokens are.
    rates: tuple[int, int, int] = field(init=False, repr=False, compare=False)
    unlimited: bool = field(init=False, repr=False, compare=False)
    limits_tokens: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "tokens_per_day", "max_concurrent"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
        rates = (self.rpm or 0, self.tpm or 0, self.tokens_per_day or 0)
        # Frozen: the derived fields are set the way dataclasses set fields.
        object.__setattr__(self, "rates", rates)
        object.__setattr__(self, "unlimited", rates == (0, 0, 0) and not self.max_concurrent)
        object.__setattr__(self, "limits_tokens", bool(rates[1] or rates[2]))

    def scaled(self, fraction: float) -> KeyLimits:
        """These limits times ``fraction`` (rounded up, at least 1).

        For per-instance limits while the shared store is down: with N
        instances, ``1/N`` keeps the fleet near the shared limit.
        """

        def part(value: int | None) -> int | None:
            return None if value is None else max(1, math.ceil(value * fraction))

        return KeyLimits(
            part(self.rpm), part(self.tpm), part(self.tokens_per_day), part(self.max_concurrent)
        )


@dataclass(slots=True, eq=False)
class Reservation:
    """What an admitted request holds until it ends.

    Settling is at most once per part: a second ``reconcile`` or
    ``release_concurrency`` is a no-op, so cleanup code may call both paths.
    """

    key: str
    limits: KeyLimits
    tokens: int  # reserved at admission, returned or topped up by reconcile
    lease_id: str | None  # the concurrency slot, None when concurrency is unlimited
    backend: str  # which limiter issued it ("memory", "redis"): it settles there
    reconciled: bool = False
    released: bool = False


class Decision(NamedTuple):
    """The answer to one admission, allowed or not.

    ``headers`` are OpenAI's ``x-ratelimit-*`` headers for every response.
    On refusal, ``reason`` names the binding limit and ``retry_after_s`` says
    when the same request would fit (for ``Retry-After``); ``retry_after_s``
    is None when it never will (it needs more than the limit's whole budget).
    Immutable like a frozen dataclass, at a third of the cost to build (one
    per request).
    """

    allowed: bool
    headers: dict[str, str]
    reservation: Reservation | None = None
    reason: Reason | None = None
    retry_after_s: float | None = None

    @property
    def status_code(self) -> int:
        """200 when allowed; 503 when shared limits are down and failing closed; else 429."""
        if self.allowed:
            return 200
        return 503 if self.reason == "unavailable" else 429


class RateLimiter(Protocol):
    """Per-key admission: rates, token budgets and concurrency."""

    backend: str

    async def admit(
        self, key: str, limits: KeyLimits, *, requests: int = 1, tokens: int = 0
    ) -> Decision:
        """Check every limit of ``key`` and, only if all allow, charge them all.

        ``tokens`` is the reservation: estimated prompt tokens + max_tokens.
        """
        ...

    async def reconcile(self, reservation: Reservation, actual_tokens: int) -> None:
        """Replace the reserved tokens by the actual usage (refund or top-up)."""
        ...

    async def release_concurrency(self, reservation: Reservation) -> None:
        """Free the concurrency slot."""
        ...

    async def finish(self, reservation: Reservation, actual_tokens: int) -> None:
        """``reconcile`` and ``release_concurrency`` at once (one round trip)."""
        ...

    async def in_flight(self, keys: Sequence[str]) -> dict[str, int]:
        """The concurrency slots each of ``keys`` holds now, on every instance
        the limiter is shared by. Only a key with a ``max_concurrent`` takes
        slots; any other counts 0."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
