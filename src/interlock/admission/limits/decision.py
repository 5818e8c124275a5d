"""From a raw ``Tally`` to a ``Decision``: headers (``headers.py``), reason, Retry-After.

Shared by both backends, so the answer a client sees depends only on the
tally, which both compute identically.
"""

from __future__ import annotations

import math

from interlock.admission.limits.base import Decision, Reason, Reservation
from interlock.admission.limits.gcra import NEVER, Tally
from interlock.admission.limits.headers import RateHeaders, format_duration, rate_headers

__all__ = ["decide", "format_duration", "rate_headers"]

_RATE_REASONS: tuple[Reason, Reason, Reason] = ("rpm", "tpm", "tokens_per_day")


def _binding(tally: Tally, concurrency_retry_us: int) -> tuple[Reason, int]:
    """The limit that refused, and its wait: the longest (NEVER beats all)."""
    found: list[tuple[Reason, int]] = [
        (reason, wait) for reason, wait in zip(_RATE_REASONS, tally.waits, strict=True) if wait
    ]
    if tally.concurrency_full:
        found.append(("concurrency", concurrency_retry_us))
    # max() keeps the first of equal waits: rate order, concurrency last.
    return max(found, key=lambda item: math.inf if item[1] == NEVER else item[1])


def decide(
    tally: Tally,
    reservation: Reservation,
    concurrency_retry_us: int,
    headers_for: RateHeaders | None = None,
) -> Decision:
    """The decision for ``tally``; ``reservation`` is handed out only if allowed.

    ``headers_for`` formats the headers (a limiter keeps one, to reuse
    strings it has formatted); without it they are formatted anew.
    """
    headers = (headers_for or rate_headers)(reservation.limits, tally)
    if tally.allowed:
        return Decision(True, headers, reservation)
    reason, wait = _binding(tally, concurrency_retry_us)
    retry_after = None if wait == NEVER else wait / 1_000_000
    return Decision(False, headers, None, reason, retry_after)
