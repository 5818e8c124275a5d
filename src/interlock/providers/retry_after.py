"""An upstream's wait hint: ``Retry-After`` (delta-seconds or an HTTP-date)
and ``retry-after-ms`` (OpenAI, Azure OpenAI), as seconds.

The upstream client attaches it to the error it raises; the router rests
the deployment that sent it (``interlock.routing.router``). Garbage is
ignored, not an error: a bad hint from an upstream must not fail a request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

__all__ = ["parse_retry_after", "parse_retry_after_ms", "retry_after_from_headers"]


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
