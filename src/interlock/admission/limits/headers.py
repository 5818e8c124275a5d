"""OpenAI's ``x-ratelimit-*`` headers for a tally, remembered by value.

Every admitted response carries two trios (limit, remaining, reset) for
requests and tokens. Their values repeat far more often than they change
(a key far from its limits sees the same remaining count and a reset of a
millisecond request after request), so ``RateHeaders`` formats each
distinct set of values once and hands out copies.
"""

from __future__ import annotations

import math

from interlock.admission.limits.base import KeyLimits
from interlock.admission.limits.gcra import MINUTE_US, PERIODS_US, Tally, remaining

__all__ = ["RateHeaders", "format_duration", "rate_headers"]

# Header names per trio: limit, remaining, reset.
_REQUESTS = (
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
)
_TOKENS = ("x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens")

# What the headers say: (requests limit, remaining, reset ms, tokens limit,
# remaining, reset ms); a limit of 0 leaves its trio out.
_Values = tuple[int, int, int, int, int, int]


def format_duration(us: int) -> str:
    """A duration as OpenAI writes ``x-ratelimit-reset-*``: "120ms", "1s", "6m0s", "1h2m3.5s".

    Rounded up to the millisecond, so a client that waits exactly that long
    finds the capacity there.
    """
    return _format_ms(_ms(us))


def rate_headers(limits: KeyLimits, tally: Tally) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` trios for requests (rpm) and tokens.

    The tokens trio describes tpm, or the daily budget when only that is set;
    a trio is left out when its limit is unlimited.
    """
    return _build(_values(limits, tally))


class RateHeaders:
    """``rate_headers``, each distinct set of values formatted once.

    Holds at most ``capacity`` sets (then starts over); callers get a copy,
    so no two responses share a dict.
    """

    def __init__(self, capacity: int = 1024):
        self._capacity = capacity
        self._built: dict[_Values, dict[str, str]] = {}

    def __call__(self, limits: KeyLimits, tally: Tally) -> dict[str, str]:
        values = _values(limits, tally)
        headers = self._built.get(values)
        if headers is None:
            if len(self._built) >= self._capacity:
                self._built.clear()
            headers = self._built[values] = _build(values)
        return headers.copy()


def _values(limits: KeyLimits, tally: Tally) -> _Values:
    rpm, tpm, tokens_per_day = limits.rates
    now, tats = tally.now_us, tally.tats
    left_requests = reset_requests = left_tokens = reset_tokens = 0
    if rpm:
        left_requests = remaining(tats[0], now, rpm, MINUTE_US)
        reset_requests = _ms(tats[0] - now)
    index = 1 if tpm else 2
    token_limit = tpm or tokens_per_day
    if token_limit:
        left_tokens = remaining(tats[index], now, token_limit, PERIODS_US[index])
        reset_tokens = _ms(tats[index] - now)
    return (rpm, left_requests, reset_requests, token_limit, left_tokens, reset_tokens)


def _build(values: _Values) -> dict[str, str]:
    rpm, left_requests, reset_requests, token_limit, left_tokens, reset_tokens = values
    headers: dict[str, str] = {}
    if rpm:
        headers[_REQUESTS[0]] = str(rpm)
        headers[_REQUESTS[1]] = str(left_requests)
        headers[_REQUESTS[2]] = _format_ms(reset_requests)
    if token_limit:
        headers[_TOKENS[0]] = str(token_limit)
        headers[_TOKENS[1]] = str(left_tokens)
        headers[_TOKENS[2]] = _format_ms(reset_tokens)
    return headers


def _ms(us: int) -> int:
    """Microseconds to whole milliseconds, rounded up (0 for none or less)."""
    return math.ceil(us / 1000) if us > 0 else 0


def _format_ms(ms: int) -> str:
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
