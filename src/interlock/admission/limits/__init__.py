"""Per-key admission limits: requests and tokens per minute, tokens per day,
concurrent requests; in memory or shared through Redis, with failover.

Usage, once per request::

    decision = await limiter.admit(key, limits, requests=1, tokens=estimate)
    # send decision.headers on every response; refuse with
    # decision.status_code and Retry-After: decision.retry_after_s
    ...
    await limiter.finish(decision.reservation, actual_tokens)  # when the response ends

``tokens`` is a reservation (estimated prompt tokens + max_tokens): it is
charged at admission so concurrent requests cannot overspend, and
``reconcile``/``finish`` swap it for the actual usage, returning the unused
part (a stream that ends early frees its budget at once) or charging the
overrun.

Algorithm: GCRA for every rate (``gcra.py``), with costs of 1 per request for
rpm and the token count for tpm and tokens per day. The daily budget is GCRA
with a 24 h period, a *rolling* day: it refills continuously at
``tokens_per_day / 86400`` per second rather than resetting at midnight.
Over any span ``w`` a key spends at most ``budget * (1 + w / 24 h)``, so no
reset lets it spend two days' budget within minutes; the price is that a key
idle for a day may spend its whole budget at once, and so up to twice the
budget over the 24 h that follow. (rpm and tpm behave the same per minute.)
Concurrency is a set of leases that expire after ``lease_s``, so a crashed
instance cannot hold slots forever.

Implementations, with exactly the same semantics (one test suite runs
against both, on one fake timeline):

- ``MemoryLimiter``: one process; also the failover's local limits.
- ``RedisLimiter``: every instance; one Lua script per admission checks and
  charges all limits atomically, timed by the Redis server's clock.
- ``FailoverLimiter``: shared limits while Redis answers; per-instance limits
  (``fail_open_local``) or 503s (``fail_closed``) while it does not.

Errors: invalid arguments raise ``ValueError``; ``RedisLimiter`` raises
``interlock.state.StateStoreUnavailable`` when Redis fails or is slow, which
``FailoverLimiter`` absorbs. Refusals are decisions, not exceptions.
"""

from __future__ import annotations

from interlock.admission.limits.base import (
    Decision,
    KeyLimits,
    RateLimiter,
    Reason,
    Reservation,
)
from interlock.admission.limits.decision import format_duration
from interlock.admission.limits.failover import FailoverLimiter, FailoverMode
from interlock.admission.limits.memory import MemoryLimiter
from interlock.admission.limits.redis_limiter import RedisLimiter

__all__ = [
    "Decision",
    "FailoverLimiter",
    "FailoverMode",
    "KeyLimits",
    "MemoryLimiter",
    "RateLimiter",
    "Reason",
    "RedisLimiter",
    "Reservation",
    "format_duration",
]
