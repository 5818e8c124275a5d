"""Circuit breaker policy on fake clocks, against both state stores (memory, Redis).

Two breaker objects on one shared store stand for two gateway instances.
Nothing sleeps: the monotonic clock and the wall clock are fakes advanced together.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from interlock.routing.breaker import (
    STATE_GAUGE,
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
)
from interlock.state import MemoryStateStore, RedisStateStore, StateStore, StateStoreUnavailable
from tests.state.harness import FakeClock, StoreHarness

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
T = TypeVar("T")


class World:
    """Shared time and store for the breakers of one test."""

    def __init__(self, harness: StoreHarness):
        self.harness = harness
        self.clock = harness.clock  # the memory store ages keys on the same clock
        self.wall = FakeClock(1_700_000_000.0)
        self.transitions: list[tuple[str, str, str]] = []

    def breaker(
        self, config: BreakerConfig | None = None, *, store: StateStore | None = None
    ) -> CircuitBreaker:
        return CircuitBreaker(
            "dep-1",
            store or self.harness.new_store(),
            config,
            clock=self.clock,
            wall=self.wall,
            on_transition=lambda d, a, b: self.transitions.append((d, a, b)),
        )

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.wall.advance(seconds)


@pytest.fixture
def world(store_harness: StoreHarness) -> World:
    return World(store_harness)


async def fail(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert await breaker.allow()
        await breaker.record_failure()


async def succeed(breaker: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        assert await breaker.allow()
        await breaker.record_success()


async def test_trips_on_consecutive_failures(world: World) -> None:
    breaker = world.breaker()  # defaults: 5 in a row
    await fail(breaker, 4)
    assert breaker.state is CLOSED
    await fail(breaker)
    assert breaker.state is OPEN
    assert not await breaker.allow()


async def test_a_success_restarts_the_consecutive_count(world: World) -> None:
    breaker = world.breaker()
    await fail(breaker, 4)
    await succeed(breaker)
    await fail(breaker, 4)
    assert breaker.state is CLOSED


async def test_trips_on_error_rate_once_min_requests_are_seen(world: World) -> None:
    breaker = world.breaker(BreakerConfig(consecutive_failures=100, min_requests=20))
    for _ in range(9):
        await succeed(breaker)
        await fail(breaker)
    await succeed(breaker)  # 19 requests, 9 failed
    assert breaker.state is CLOSED
    await fail(breaker)  # 20 requests, 10 failed: 50 %
    assert breaker.state is OPEN


async def test_stays_closed_below_the_minimum_request_count(world: World) -> None:
    breaker = world.breaker(BreakerConfig(consecutive_failures=100, min_requests=20))
    await succeed(breaker)
    await fail(breaker, 18)  # 95 % failed, but only 19 requests
    assert breaker.state is CLOSED
    await fail(breaker)
    assert breaker.state is OPEN


async def test_stays_closed_below_the_error_rate(world: World) -> None:
    breaker = world.breaker(BreakerConfig(consecutive_failures=100, min_requests=20))
    await succeed(breaker, 2)
    for _ in range(9):
        await fail(breaker)
        await succeed(breaker)
    assert breaker.state is CLOSED  # 9 of 20 failed: 45 %
    await fail(breaker, 2)  # 11 of 22: 50 %
    assert breaker.state is OPEN


async def test_old_outcomes_leave_the_window(world: World) -> None:
    breaker = world.breaker(BreakerConfig(consecutive_failures=100, min_requests=20, window_s=30))
    await fail(breaker, 15)
    world.advance(31)
    await fail(breaker, 5)  # 20 failures, but only 5 inside the last 30 s
    assert breaker.state is CLOSED


async def test_half_open_after_the_open_period_then_closes_after_successes(
    world: World,
) -> None:
    breaker = world.breaker(BreakerConfig(open_s=5, half_open_probes=1, close_after=2))
    await fail(breaker, 5)
    world.advance(4.5)
    assert not await breaker.allow()
    world.advance(0.5)
    assert breaker.state is HALF_OPEN
    assert await breaker.allow()  # the probe
    assert not await breaker.allow()  # one probe at a time
    await breaker.record_success()
    assert breaker.state is HALF_OPEN  # one success of two
    await succeed(breaker)
    assert breaker.state is CLOSED
    await succeed(breaker, 3)


async def test_open_period_grows_on_failed_probes_is_capped_and_resets(world: World) -> None:
    breaker = world.breaker(BreakerConfig(open_s=5, max_open_s=30, close_after=1))

    async def open_for(seconds: float) -> None:
        world.advance(seconds - 0.5)
        assert breaker.state is OPEN
        world.advance(0.5)
        assert breaker.state is HALF_OPEN

    await fail(breaker, 5)
    for period in (5, 10, 20, 30, 30):
        await open_for(period)
        await fail(breaker)  # the probe fails: open again, for longer
    await open_for(30)
    await succeed(breaker)
    assert breaker.state is CLOSED
    await fail(breaker, 5)
    await open_for(5)  # closing reset the backoff


async def test_failures_reported_while_open_are_ignored(world: World) -> None:
    breaker = world.breaker(BreakerConfig(open_s=5))
    await fail(breaker, 5)
    for _ in range(10):  # late answers to requests sent before the trip
        await breaker.record_failure()
        await breaker.record_success()
    world.advance(5)
    assert breaker.state is HALF_OPEN


async def test_half_open_probes_are_bounded_across_instances(world: World) -> None:
    config = BreakerConfig(open_s=5, half_open_probes=2, close_after=3)
    a, b, c = world.breaker(config), world.breaker(config), world.breaker(config)
    await fail(a, 5)
    world.advance(5)
    allowed = [await a.allow(), await b.allow(), await c.allow(), await a.allow()]
    assert allowed == [True, True, False, False]
    await a.record_success()  # a's probe is back: its slot frees
    assert await c.allow()
    assert not await b.allow()


async def test_a_dead_instances_probe_slot_expires(world: World) -> None:
    config = BreakerConfig(open_s=5, half_open_probes=1, probe_timeout_s=0.08)
    a, b = world.breaker(config), world.breaker(config)
    await fail(a, 5)
    world.advance(5)
    assert await a.allow()  # ...and a never reports back
    assert not await b.allow()
    await world.harness.elapse(0.1)  # store time: a real wait on Redis
    world.advance(config.refresh_s)
    assert await b.allow()


async def test_a_trip_reaches_other_instances_within_refresh_s(world: World) -> None:
    a, b = world.breaker(), world.breaker()
    assert await b.allow()  # b has a fresh copy: closed
    await fail(a, 5)
    assert a.state is OPEN
    world.advance(0.49)
    assert await b.allow()  # still b's cached copy: no store trip per request
    world.advance(0.01)
    assert not await b.allow()
    assert b.state is OPEN


async def test_closing_reaches_other_instances(world: World) -> None:
    config = BreakerConfig(open_s=5, close_after=2)
    a, b = world.breaker(config), world.breaker(config)
    await fail(a, 5)
    world.advance(5)
    assert await b.allow()  # b probes...
    await b.record_success()
    assert await a.allow()  # ...then a: successes count across instances
    await a.record_success()
    assert a.state is CLOSED
    world.advance(0.5)
    assert await b.allow()
    assert b.state is CLOSED


async def test_a_failed_probe_anywhere_reopens_for_everyone(world: World) -> None:
    config = BreakerConfig(open_s=5, half_open_probes=2)
    a, b = world.breaker(config), world.breaker(config)
    await fail(a, 5)
    world.advance(5)
    assert await a.allow()
    assert await b.allow()
    await a.record_failure()  # reopens for 10 s
    await b.record_success()  # a stale probe: does not count towards closing
    world.advance(0.5)
    assert not await b.allow()
    world.advance(9.5)
    assert b.state is HALF_OPEN


class CountingStore:
    """Delegates to a real store, counting reads."""

    def __init__(self, inner: StateStore):
        self.inner = inner
        self.gets = 0

    async def get(self, key: str) -> bytes | None:
        self.gets += 1
        return await self.inner.get(key)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_the_store_is_read_at_most_once_per_refresh(world: World) -> None:
    store = CountingStore(world.harness.new_store())
    breaker = world.breaker(store=store)  # type: ignore[arg-type]
    for _ in range(1000):
        assert await breaker.allow()
    assert store.gets == 1
    world.advance(0.5)
    assert await breaker.allow()
    assert store.gets == 2


async def test_transitions_are_reported(world: World) -> None:
    breaker = world.breaker(BreakerConfig(open_s=5, close_after=1))
    await fail(breaker, 5)
    world.advance(5)
    await fail(breaker)
    world.advance(10)
    await succeed(breaker)
    assert world.transitions == [
        ("dep-1", "closed", "open"),
        ("dep-1", "open", "half_open"),
        ("dep-1", "half_open", "open"),
        ("dep-1", "open", "half_open"),
        ("dep-1", "half_open", "closed"),
    ]
    assert [STATE_GAUGE[s] for s in (CLOSED, HALF_OPEN, OPEN)] == [0, 1, 2]


class SwitchableStore:
    """A real store whose connection can be cut: every call raises while ``down``."""

    def __init__(self, inner: StateStore):
        self.inner = inner
        self.down = False

    def __getattr__(self, name: str) -> Callable[..., Awaitable[object]]:
        method = getattr(self.inner, name)

        async def call(*args: object, **kwargs: object) -> object:
            if self.down:
                raise StateStoreUnavailable("cut")
            return await method(*args, **kwargs)

        return call


async def test_a_decision_made_during_an_outage_reaches_the_store_after(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    config = BreakerConfig(open_s=30, store_retry_s=5)
    flaky = SwitchableStore(world.harness.new_store())
    a = world.breaker(config, store=flaky)  # type: ignore[arg-type]
    b = world.breaker(config)
    flaky.down = True
    with caplog.at_level(logging.WARNING, logger="interlock.breaker"):
        await fail(a, 5)  # trips locally
        assert not await a.allow()
        world.advance(5)
        assert not await a.allow()  # retries the store, still down: no second log
    assert len(caplog.records) == 1
    assert await b.allow()  # b never heard
    flaky.down = False
    world.advance(5)
    assert not await a.allow()  # a's refresh offers its decision to the store
    world.advance(0.5)
    assert not await b.allow()


async def test_without_a_store_the_breaker_works_locally(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, wall = FakeClock(), FakeClock(1_700_000_000.0)
    store = RedisStateStore("redis://127.0.0.1:1/0", timeout_s=0.05)  # nothing listens
    breaker = CircuitBreaker(
        "dep-1", store, BreakerConfig(open_s=5, close_after=2), clock=clock, wall=wall
    )
    try:
        with caplog.at_level(logging.WARNING, logger="interlock.breaker"):
            await fail(breaker, 5)
            assert not await breaker.allow()
            clock.advance(5)
            wall.advance(5)
            assert await breaker.allow()  # a local probe
            assert not await breaker.allow()
            await breaker.record_success()
            await succeed(breaker)
            assert breaker.state is CLOSED
        assert len(caplog.records) == 1
    finally:
        await store.aclose()


async def test_deployments_do_not_share_a_breaker() -> None:
    store = MemoryStateStore()
    first = CircuitBreaker("dep-1", store)
    second = CircuitBreaker("dep-2", store)
    await fail(first, 5)
    assert await second.allow()


@pytest.mark.parametrize(
    "bad",
    [
        {"consecutive_failures": 0},
        {"error_rate": 0.0},
        {"error_rate": 1.5},
        {"open_s": 10, "max_open_s": 5},
        {"half_open_probes": 0},
        {"close_after": 0},
        {"refresh_s": 0},
    ],
)
def test_config_rejects_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerConfig(**bad)  # type: ignore[arg-type]


async def test_an_ignored_outcome_frees_the_probe_slot(world: World) -> None:
    breaker = world.breaker(BreakerConfig(open_s=5, close_after=1))
    await fail(breaker, 5)
    world.advance(5)
    assert await breaker.allow()
    await breaker.record_ignored()  # the client hung up: no verdict
    assert breaker.state is HALF_OPEN
    await succeed(breaker)  # the slot is free for the next probe
    assert breaker.state is CLOSED


class DelayedReads:
    """A real store whose reads return only when ``release`` is set: a slow answer."""

    def __init__(self, inner: StateStore):
        self.inner = inner
        self.release = asyncio.Event()
        self.release.set()
        self.stalled = asyncio.Event()

    async def get(self, key: str) -> bytes | None:
        value = await self.inner.get(key)
        if not self.release.is_set():
            self.stalled.set()
            await self.release.wait()
        return value

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_a_slow_read_does_not_undo_a_newer_trip(world: World) -> None:
    store = DelayedReads(world.harness.new_store())
    breaker = world.breaker(store=store)  # type: ignore[arg-type]
    assert await breaker.allow()
    world.advance(0.5)
    store.release.clear()
    refreshing = asyncio.create_task(breaker.allow())  # reads "closed", then stalls
    await store.stalled.wait()
    for _ in range(5):
        await breaker.record_failure()  # trips while that read is in flight
    store.release.set()
    assert not await refreshing
    assert breaker.state is OPEN
    assert world.transitions == [("dep-1", "closed", "open")]
