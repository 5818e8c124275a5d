"""Properties of the circuit breaker (hypothesis): any interleaving of
requests that start, succeed, fail and time passing keeps the state machine's
promises. One instance on the memory store, fake clocks.

- While open, nothing is let through until the open period has passed.
- Half-open lets at most ``half_open_probes`` requests through at once.
- Closed is reached only from half-open, after ``close_after`` probe
  successes in a row; open only from closed (a trip) or half-open (a failed
  probe).
- Closed with ``consecutive_failures`` failures in a row trips.
"""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from interlock.routing.breaker import BreakerConfig, BreakerState, CircuitBreaker
from interlock.state import MemoryStateStore
from tests.support.clock import FakeClock

CONFIG = BreakerConfig(
    consecutive_failures=3,
    min_requests=1_000_000,  # trips by the consecutive count only: simpler to model
    open_s=5.0,
    max_open_s=40.0,
    half_open_probes=2,
    close_after=2,
    refresh_s=0.5,
    probe_timeout_s=1e9,  # held probes never lapse within a test
)

# start: ask allow() and hold the request; succeed/fail: finish the oldest held.
operations = st.lists(
    st.one_of(
        st.just(("start", 0.0)),
        st.just(("succeed", 0.0)),
        st.just(("fail", 0.0)),
        st.tuples(st.just("wait"), st.floats(min_value=0.01, max_value=20, allow_nan=False)),
    ),
    max_size=120,
)


@settings(max_examples=200)
@given(ops=operations)
def test_the_state_machine_keeps_its_promises(ops: list[tuple[str, float]]) -> None:
    asyncio.run(_run(ops))


async def _run(ops: list[tuple[str, float]]) -> None:
    clock, wall = FakeClock(1000.0), FakeClock(1_700_000_000.0)
    transitions: list[tuple[BreakerState, BreakerState]] = []
    breaker = CircuitBreaker(
        "d",
        MemoryStateStore(clock),
        CONFIG,
        clock=clock,
        wall=wall,
        on_transition=lambda _, before, after: transitions.append((before, after)),
    )
    held: list[BreakerState] = []  # the state each held request was let through in
    failures_in_a_row = 0
    probe_successes = 0
    for op, seconds in ops:
        if op == "wait":
            clock.now += seconds
            wall.now += seconds
            continue
        if op == "start":
            before = breaker.state
            allowed = await breaker.allow()
            if before is BreakerState.OPEN:
                assert not allowed, "let through while open"
            if allowed:
                held.append(breaker.state if before is BreakerState.CLOSED else before)
                probes = sum(1 for s in held if s is BreakerState.HALF_OPEN)
                assert probes <= CONFIG.half_open_probes, "too many probes at once"
            continue
        if not held:
            continue
        # The breaker matches outcomes to probes by count, not by request
        # (breaker.py): while it holds probe slots, the next outcome is a
        # probe's, whichever request it came from. The model does the same.
        probe_at = next((i for i, s in enumerate(held) if s is BreakerState.HALF_OPEN), 0)
        let_through_in = held.pop(probe_at)
        state_before = breaker.state
        if op == "succeed":
            await breaker.record_success()
            failures_in_a_row = 0
            if let_through_in is BreakerState.HALF_OPEN:
                probe_successes += 1
            if state_before is not BreakerState.CLOSED and breaker.state is BreakerState.CLOSED:
                assert probe_successes >= CONFIG.close_after, "closed too soon"
                probe_successes = 0
        else:
            await breaker.record_failure()
            failures_in_a_row += 1
            if state_before is BreakerState.CLOSED and failures_in_a_row >= 3:
                assert breaker.state is BreakerState.OPEN, "did not trip"
        if breaker.state is BreakerState.OPEN:
            failures_in_a_row = probe_successes = 0
            held = [s for s in held if s is not BreakerState.HALF_OPEN]
    for before, after in transitions:
        if after is BreakerState.CLOSED:
            assert before is BreakerState.HALF_OPEN, f"{before} -> closed"
        if after is BreakerState.OPEN:
            assert before in (BreakerState.CLOSED, BreakerState.HALF_OPEN)
