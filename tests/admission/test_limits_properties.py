"""Properties of the limiter (hypothesis): whatever the arrival pattern, a key
is never admitted more than its rate allows over any window.

GCRA's bound: over any span of ``w`` seconds, at most ``burst + rate * w``
(the burst is the limit itself: ``rpm: 60`` admits 60 at once, then one a
second). Checked on the in-memory limiter with a fake clock; the Redis one
runs the same script logic and shares its test suite (test_limits.py).
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from interlock.admission.limits import KeyLimits, MemoryLimiter
from tests.support.clock import FakeClock

# Each arrival: seconds after the previous one, tokens it reserves.
arrivals = st.lists(
    st.tuples(st.floats(min_value=0, max_value=5, allow_nan=False), st.integers(1, 400)),
    min_size=1,
    max_size=300,
)


def _admitted(limits: KeyLimits, pattern: list[tuple[float, int]]) -> list[tuple[float, int]]:
    """(time, tokens) of the admitted requests."""
    clock = FakeClock()
    limiter = MemoryLimiter(clock)

    async def run() -> list[tuple[float, int]]:
        admitted = []
        for gap, tokens in pattern:
            clock.now += gap
            decision = await limiter.admit("k", limits, tokens=tokens)
            if decision.allowed:
                admitted.append((clock.now, tokens))
        return admitted

    return asyncio.run(run())


def _worst_window_excess(admitted: list[tuple[float, int]], per_minute: int, cost: bool) -> float:
    """The largest (admitted in [t_i, t_j]) - (burst + rate * (t_j - t_i))."""
    worst = float("-inf")
    for i, (start, _) in enumerate(admitted):
        total = 0
        for end, tokens in admitted[i:]:
            total += tokens if cost else 1
            allowed = per_minute + per_minute * (end - start) / 60
            worst = max(worst, total - allowed)
    return worst


@settings(max_examples=60)
@given(rpm=st.integers(1, 50), pattern=arrivals)
def test_requests_never_exceed_the_rate_over_any_window(
    rpm: int, pattern: list[tuple[float, int]]
) -> None:
    admitted = _admitted(KeyLimits(rpm=rpm), pattern)
    # Microsecond arithmetic may round one request's share: allow a hair.
    assert _worst_window_excess(admitted, rpm, cost=False) <= 1e-3


@settings(max_examples=60)
@given(tpm=st.integers(400, 5_000), pattern=arrivals)
def test_reserved_tokens_never_exceed_the_rate_over_any_window(
    tpm: int, pattern: list[tuple[float, int]]
) -> None:
    admitted = _admitted(KeyLimits(tpm=tpm), pattern)
    assert _worst_window_excess(admitted, tpm, cost=True) <= 1e-3


@settings(max_examples=40)
@given(rpm=st.integers(1, 20), pattern=arrivals)
def test_a_steady_client_within_the_rate_is_never_refused(
    rpm: int, pattern: list[tuple[float, int]]
) -> None:
    """The other side of the bound: requests spaced by at least 60 / rpm
    seconds are all admitted (the limiter is not stricter than it says)."""
    spaced = [(max(gap, 60 / rpm), tokens) for gap, tokens in pattern]
    assert len(_admitted(KeyLimits(rpm=rpm), spaced)) == len(spaced)
