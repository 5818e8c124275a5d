"""Retry policy: whether to try again, how long to wait, and a budget against storms.

* ``RetryPolicy`` answers per request: how many attempts, and how long to
  back off before the next one (on another deployment: see the router).
* ``RetryBudget`` answers for a whole model group: retries may add at most
  ``ratio`` extra load, so an outage cannot multiply traffic into a storm
  that keeps the upstream down.

An upstream's ``Retry-After`` is read by the upstream client
(``interlock.providers.retry_after``) and honoured by the router, which
rests the deployment that sent it.

Pure policy: no sleeping and no clocks of its own; time and randomness are
injected.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Final

__all__ = ["RETRYABLE_KINDS", "RetryBudget", "RetryPolicy"]

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
    that is the caller's call, as this policy cannot see it. Which errors are
    worth another attempt: ``RETRYABLE_KINDS``.
    """

    def __init__(
        self,
        max_attempts: int = 2,
        base_s: float = 0.1,
        max_backoff_s: float = 2.0,
        *,
        rng: random.Random,
    ):
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if base_s < 0 or max_backoff_s < 0:
            raise ValueError("backoff limits must not be negative")
        self.max_attempts = max_attempts
        self.base_s = base_s
        self.max_backoff_s = max_backoff_s
        self._rng = rng

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after attempt number ``attempt`` (1-based) failed.

        Full jitter, ``uniform(0, min(max_backoff_s, base_s * 2**(attempt-1)))``,
        spreads the retries of many requests that failed together instead of
        sending them back in synchronised waves. An upstream's ``Retry-After``
        does not apply: it speaks for the deployment that sent it, and the
        next attempt goes to another one.
        """
        exponent = min(max(attempt, 1) - 1, 60)  # 2**60 caps any sane config
        return self._rng.uniform(0.0, min(self.max_backoff_s, self.base_s * 2.0**exponent))


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
