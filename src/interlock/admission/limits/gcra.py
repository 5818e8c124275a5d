"""GCRA arithmetic, written once in Python and mirrored line by line in Lua.

The generic cell rate algorithm keeps one number per limit: the theoretical
arrival time (TAT), when the bucket would be full again. A request costing
``n`` moves it ``n * period / limit`` later and fits while the TAT stays
within one ``period`` of now, so a full bucket allows a burst of ``limit``
and then refills continuously. There are no windows, hence no boundary
burst: over any span ``w`` at most ``limit * (1 + w / period)`` fits.

Times are integer microseconds. Every fractional step is a float operation
in the same order as the Lua script's (Lua numbers are IEEE doubles too), so
the memory and Redis limiters compute bit-identical results; charges round
up and refunds round down, so rounding never favours the caller.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from interlock.admission.limits.base import KeyLimits

__all__ = [
    "DAY_US",
    "MINUTE_US",
    "NEVER",
    "PERIODS_US",
    "Tally",
    "adjust",
    "check",
    "micros",
    "rates",
    "remaining",
]

MINUTE_US = 60_000_000
DAY_US = 86_400_000_000
# Rate order everywhere (arrays in Lua, tuples here): rpm, tpm, tokens per day.
PERIODS_US = (MINUTE_US, MINUTE_US, DAY_US)
# A wait that means "this request needs more than the whole budget".
NEVER = -1


class Tally(NamedTuple):
    """The raw outcome of one admission, as both backends report it.

    ``tats`` are the TATs after the charge (or as found, when refused);
    ``waits`` the microseconds until each rate would fit (0: fits, NEVER).
    A named tuple: one is built per admission, at a third of a frozen
    dataclass's cost.
    """

    allowed: bool
    now_us: int
    tats: tuple[int, int, int]
    waits: tuple[int, int, int]
    concurrency_full: bool


def micros(seconds: float) -> int:
    """A clock reading in whole microseconds."""
    return round(seconds * 1_000_000)


def rates(limits: KeyLimits) -> tuple[int, int, int]:
    """The three rate limits in rate order, 0 for unlimited (as the script takes them)."""
    return limits.rates


def check(stored: int, now: int, cost: int, limit: int, period: int) -> tuple[int, int, int]:
    """Test one rate: (TAT to charge from, increment, wait in µs; 0 fits, NEVER)."""
    tat = max(stored, now)
    inc = math.ceil(float(cost) * float(period) / float(limit))
    if inc > period:
        return tat, inc, NEVER
    return tat, inc, max(tat + inc - period - now, 0)


def adjust(stored: int, now: int, delta: int, limit: int, period: int) -> int:
    """The TAT after settling ``delta`` tokens (actual minus reserved).

    A refund never takes the TAT before now (the bucket cannot overfill); an
    overrun is charged, so a key that underestimates still pays its real
    rate, but the debt is capped at one extra period so one huge response
    cannot lock a key out for longer than that.
    """
    tat = max(stored, now)
    if delta > 0:
        return min(tat + math.ceil(float(delta) * float(period) / float(limit)), now + 2 * period)
    return max(tat - math.floor(float(-delta) * float(period) / float(limit)), now)


def remaining(tat: int, now: int, limit: int, period: int) -> int:
    """Whole units that would fit now, between 0 and ``limit``."""
    units = math.floor(float(now + period - tat) * float(limit) / float(period))
    return min(max(units, 0), limit)
