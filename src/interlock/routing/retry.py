"""Retry policy: whether to try again, how long to wait, and a budget against storms.

* ``RetryPolicy`` answers per request: is this error worth another attempt
  (on this or, usually, another deployment) and how long to back off first.
* ``RetryBudget`` answers for a whole model group: retries may add at most
  ``ratio`` extra load, so an outage cannot multiply traffic into a storm
  that keeps the upstream down.
* ``parse_retry_after`` / ``retry_after_from_headers`` turn an upstream's
  ``Retry-After`` (or ``retry-after-ms``) into seconds, for adapters to attach
  to the error they raise.

Pure policy: no sleeping and no clocks of its own; time and randomness are
injected.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Final

__all__ = [
    "RETRYABLE_KINDS",
    "RetryBudget",
    "RetryPolicy",
    "parse_retry_after",
    "parse_retry_after_ms",
    "retry_after_from_headers",
]

# Error kinds (interlock.pipeline.error_kind's vocabulary) that are the
# deployment's fault, so another attempt, preferably elsewhere, may succeed.
# "upstream_auth" is here because a rejected gateway credential is a broken
# deployment, not a broken request: retrying the same deployment is pointless,
# failing over to another is exactly right. "client_error" is never retried:
# the same request would be rejected again, wherever it went.
RETRYABLE_KINDS: Final = frozenset(
    {"server_error", "timeout", "connection", "protocol", "rate_limited", "upstream_auth"}
)


class RetryPolicy:
    """Attempt limit and backoff for one model group.

    ``max_attempts`` counts every attempt, the first included (2 = one retry).
    Timeouts are retried although the upstream may have done (and billed) the
    work: the caller got nothing, and the budget bounds the extra spend. A
    stream that already sent bytes to the client must not be retried at all;
    that is the caller's call, as this policy cannot see it.
    """

    def __init__(
        self,
        max_attempts: int = 2,
        base_s: float = 0.1,
        max_backoff_s: float = 2.0,
        max_retry_after_s: float = 5.0,
        *,
        rng: random.Random,
    ):
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if base_s < 0 or max_backoff_s < 0 or max_retry_after_s < 0:
            raise ValueError("backoff and Retry-After limits must not be negative")
        self.max_attempts = max_attempts
        self.base_s = base_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_after_s = max_retry_after_s
        self._rng = rng

    def should_retry(self, attempt: int, error_kind: str) -> bool:
        """After attempt number ``attempt`` (1-based) failed with ``error_kind``."""
        return attempt < self.max_attempts and error_kind in RETRYABLE_KINDS

    def backoff(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after attempt number ``attempt`` (1-based) failed.

        Full jitter, ``uniform(0, min(max_backoff_s, base_s * 2**(attempt-1)))``,
        spreads the retries of many requests that failed together instead of
        sending them back in synchronised waves. An upstream ``Retry-After``
        replaces the jitter (the upstream knows when it will be ready) but is
        capped at ``max_retry_after_s``: beyond that, see ``should_fail_over``.
        A Retry-After only speaks for the deployment that sent it; an attempt
        on a different deployment need not wait for it.
        """
        if retry_after_s is not None and math.isfinite(retry_after_s):
            return min(max(0.0, retry_after_s), self.max_retry_after_s)
        exponent = min(max(attempt, 1) - 1, 60)  # 2**60 caps any sane config
        return self._rng.uniform(0.0, min(self.max_backoff_s, self.base_s * 2.0**exponent))

    def should_fail_over(self, retry_after_s: float | None) -> bool:
        """True when the upstream asked for a longer wait than we will hold a request.

        Then the same deployment is not worth retrying soon: move to another
        deployment at once, or, with none left, return the error to the client
        (with its Retry-After) rather than hang the request.
        """
        return retry_after_s is not None and retry_after_s > self.max_retry_after_s


class RetryBudget:
    """Retries allowed while retries <= ratio * requests (+ a floor) over ``window_s``.

    Counts live in ``slots`` fixed time slots that roll over as the clock
    moves, so memory is constant and the window is exact to one slot
    (``window_s / slots``). The floor, ``min_per_s * window_s`` retries per
    window, lets a quiet model group still retry its occasional failure.
    Call ``record_request`` once per request (first attempts only: retries
    must not earn more retries) and ``try_spend`` before each retry.
    """

    def __init__(
        self,
        ratio: float = 0.2,
        min_per_s: float = 1.0,
        window_s: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        slots: int = 10,
    ):
        if ratio < 0 or min_per_s < 0:
            raise ValueError("ratio and min_per_s must not be negative")
        if window_s <= 0 or slots < 1:
            raise ValueError("window_s must be positive and slots at least 1")
        self.ratio = ratio
        self._reserve = min_per_s * window_s
        self._slot_s = window_s / slots
        self._clock = clock
        self._requests = [0] * slots
        self._retries = [0] * slots
        self._total_requests = 0
        self._total_retries = 0
        self._slot: int | None = None  # index of the current slot since the epoch

    def record_request(self) -> None:
        i = self._advance()
        self._requests[i] += 1
        self._total_requests += 1

    def try_spend(self) -> bool:
        """Take one retry from the budget; False means fail now instead of retrying."""
        i = self._advance()
        if self._total_retries + 1 > self.ratio * self._total_requests + self._reserve:
            return False
        self._retries[i] += 1
        self._total_retries += 1
        return True

    def _advance(self) -> int:
        """Clear the slots that have left the window; return the current slot's index."""
        now_slot = math.floor(self._clock() / self._slot_s)
        n = len(self._requests)
        if self._slot is None or now_slot - self._slot >= n:
            self._reset()
            self._slot = now_slot
        elif now_slot > self._slot:
            for s in range(self._slot + 1, now_slot + 1):
                self._clear(s % n)
            self._slot = now_slot
        # A clock that steps back keeps counting into the current slot.
        return self._slot % n

    def _clear(self, i: int) -> None:
        self._total_requests -= self._requests[i]
        self._total_retries -= self._retries[i]
        self._requests[i] = self._retries[i] = 0

    def _reset(self) -> None:
        self._requests = [0] * len(self._requests)
        self._retries = [0] * len(self._retries)
        self._total_requests = self._total_retries = 0


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``, or None if absent or unreadable.

    Accepts delta-seconds (decimals tolerated) or an HTTP-date; ``now`` is
    wall-clock epoch seconds (``time.time()``), needed only for the date form.
    A date in the past means "now" (0.0). Garbage is ignored, not an error: a
    bad hint from an upstream must not fail the request.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until(text, now)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _seconds_until(http_date: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": HTTP dates are always UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def parse_retry_after_ms(value: str | None) -> float | None:
    """``retry-after-ms`` (sent by OpenAI and Azure OpenAI) as seconds, or None."""
    if value is None:
        return None
    try:
        ms = float(value.strip())
    except ValueError:
        return None
    return ms / 1000.0 if math.isfinite(ms) and ms >= 0 else None


def retry_after_from_headers(headers: Mapping[str, str], *, now: float) -> float | None:
    """The upstream's wait hint: ``retry-after-ms`` if present (finer), else ``Retry-After``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = parse_retry_after_ms(lowered.get("retry-after-ms"))
    return ms if ms is not None else parse_retry_after(lowered.get("retry-after"), now=now)
