"""From a raw ``Tally`` to a ``Decision``: headers, reason, Retry-After.

Shared by both backends, so the answer a client sees depends only on the
tally, which both compute identically.
"""

from __future__ import annotations

import math

from interlock.admission.limits.base import Decision, KeyLimits, Reason, Reservation
from interlock.admission.limits.gcra import NEVER, PERIODS_US, Tally, rates, remaining

__all__ = ["decide", "format_duration", "rate_headers"]

_RATE_REASONS: tuple[Reason, Reason, Reason] = ("rpm", "tpm", "tokens_per_day")


def format_duration(us: int) -> str:
    """A duration as OpenAI writes ``x-ratelimit-reset-*``: "120ms", "1s", "6m0s", "1h2m3.5s".

    Rounded up to the millisecond, so a client that waits exactly that long
    finds the capacity there.
    """
    ms = math.ceil(us / 1000) if us > 0 else 0
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest // 1000}s" if rest % 1000 == 0 else f"{rest / 1000:.3f}".rstrip("0") + "s"
    if hours:
        return f"{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{minutes}m{seconds}"
    return seconds


def rate_headers(limits: KeyLimits, tally: Tally) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` trios for requests (rpm) and tokens.

    The tokens trio describes tpm, or the daily budget when only that is set;
    a trio is left out when its limit is unlimited.
    """
    headers: dict[str, str] = {}
    limit_of = rates(limits)
    token_rate = 1 if limit_of[1] else 2
    for name, index in (("requests", 0), ("tokens", token_rate)):
        limit = limit_of[index]
        if not limit:
            continue
        tat, now = tally.tats[index], tally.now_us
        headers[f"x-ratelimit-limit-{name}"] = str(limit)
        left = remaining(tat, now, limit, PERIODS_US[index])
        headers[f"x-ratelimit-remaining-{name}"] = str(left)
        headers[f"x-ratelimit-reset-{name}"] = format_duration(max(tat - now, 0))
    return headers


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
) -> Decision:
    """The decision for ``tally``; ``reservation`` is handed out only if allowed."""
    headers = rate_headers(reservation.limits, tally)
    if tally.allowed:
        return Decision(True, headers, reservation)
    reason, wait = _binding(tally, concurrency_retry_us)
    retry_after = None if wait == NEVER else wait / 1_000_000
    return Decision(False, headers, None, reason, retry_after)
