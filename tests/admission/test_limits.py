"""Per-key limits, one suite for the memory and Redis limiters.

Both run on the harness's fake clock: the Redis limiter takes "now" from an
injected clock instead of the server's ``TIME`` (its test mode), so the
same timeline drives both and nothing sleeps. The ``test_server_time_*``
tests use Redis's own clock, as production does (one waits 50 ms of it).
Several ``RedisLimiter`` instances with their own connections stand for
several gateways; failover tests cut a relay to Redis to make an outage.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from contextlib import suppress

import pytest

from interlock.admission.limits import (
    Decision,
    FailoverLimiter,
    KeyLimits,
    MemoryLimiter,
    RedisLimiter,
    Reservation,
    format_duration,
)
from interlock.admission.limits.core import LimiterCore
from interlock.state import StateStoreUnavailable, StoreHealth
from tests.state.harness import REDIS_URL, FakeClock, StoreHarness, open_harness

DEAD_REDIS = "redis://127.0.0.1:1/15"  # nothing listens on port 1: refused at once


class World:
    """Limiters sharing one state (memory: one object; Redis: one prefix) and one clock."""

    def __init__(self, harness: StoreHarness):
        self.backend = harness.backend
        self.clock = harness.clock
        self._prefix = harness.prefix
        self._memory: MemoryLimiter | None = None
        self._opened: list[RedisLimiter] = []

    def limiter(self, lease_s: float = 600.0) -> LimiterCore:
        """Another gateway instance on the shared state."""
        if self.backend == "memory":
            if self._memory is None:
                self._memory = MemoryLimiter(self.clock, lease_s=lease_s)
            return self._memory
        limiter = RedisLimiter.from_url(
            REDIS_URL, prefix=self._prefix, timeout_s=2.0, clock=self.clock, lease_s=lease_s
        )
        self._opened.append(limiter)
        return limiter

    async def aclose(self) -> None:
        for limiter in self._opened:
            await limiter.aclose()


@pytest.fixture
async def world(store_harness: StoreHarness) -> AsyncIterator[World]:
    world = World(store_harness)
    yield world
    await world.aclose()


async def admit_many(
    limiters: list[LimiterCore], attempts: int, limits: KeyLimits, tokens: int = 0
) -> list[Decision]:
    """``attempts`` admissions at once, spread over ``limiters``."""
    calls = [limiters[i % len(limiters)].admit("k", limits, tokens=tokens) for i in range(attempts)]
    return await asyncio.gather(*calls)


def allowed(decisions: list[Decision]) -> int:
    return sum(d.allowed for d in decisions)


def held(decision: Decision) -> Reservation:
    assert decision.allowed and decision.reservation is not None, decision
    return decision.reservation


# --- rates -------------------------------------------------------------------------------


async def test_rpm_admits_exactly_the_limit_of_many_concurrent_attempts(world: World) -> None:
    limiters = [world.limiter() for _ in range(3)]
    decisions = await admit_many(limiters, 300, KeyLimits(rpm=60))
    assert allowed(decisions) == 60
    refused = [d for d in decisions if not d.allowed]
    assert {(d.reason, d.retry_after_s, d.status_code) for d in refused} == {("rpm", 1.0, 429)}


async def test_rate_refills_continuously(world: World) -> None:
    limiter, limits = world.limiter(), KeyLimits(rpm=60)
    assert allowed(await admit_many([limiter], 60, limits)) == 60
    world.clock.advance(1.0)
    assert allowed(await admit_many([limiter], 5, limits)) == 1
    world.clock.advance(0.25)
    refused = await limiter.admit("k", limits)
    assert not refused.allowed and refused.retry_after_s == 0.75


async def test_no_boundary_burst(world: World) -> None:
    """A full burst at 0:59 leaves only 2 s of refill at 1:01, where fixed windows allow 60."""
    limiter, limits = world.limiter(), KeyLimits(rpm=60)
    world.clock.advance(59.0)
    assert allowed(await admit_many([limiter], 100, limits)) == 60
    world.clock.advance(2.0)
    assert allowed(await admit_many([limiter], 100, limits)) == 2


async def test_sustained_traffic_never_exceeds_the_rate(world: World) -> None:
    limiter, limits = world.limiter(), KeyLimits(rpm=60)
    assert allowed(await admit_many([limiter], 60, limits)) == 60  # the burst
    start, ticks = world.clock.now, []  # ticks of 0.1 s, counted exactly
    for tick in range(1, 1201):  # then an attempt every 0.1 s for two minutes
        world.clock.now = start + tick / 10
        if (await limiter.admit("k", limits)).allowed:
            ticks.append(tick)
    assert len(ticks) == 120  # one a second
    for i, first in enumerate(ticks):
        assert len([t for t in ticks[i:] if t < first + 600]) <= 60


async def test_a_refusal_charges_nothing(world: World) -> None:
    limiter, limits = world.limiter(), KeyLimits(rpm=2, tpm=100)
    assert (await limiter.admit("k", limits, tokens=80)).allowed
    refused = await limiter.admit("k", limits, tokens=50)
    assert refused.reason == "tpm" and refused.reservation is None
    assert (await limiter.admit("k", limits, tokens=20)).allowed  # rpm and tpm untouched
    assert (await limiter.admit("k", limits)).reason == "rpm"


async def test_keys_are_independent(world: World) -> None:
    limiter, limits = world.limiter(), KeyLimits(rpm=1)
    assert (await limiter.admit("a", limits)).allowed
    assert (await limiter.admit("b", limits)).allowed
    assert not (await limiter.admit("a", limits)).allowed


async def test_the_reason_is_the_longest_wait(world: World) -> None:
    limiter = world.limiter()
    both = KeyLimits(rpm=1, tpm=60)  # 1 request a minute, 1 token a second
    held(await limiter.admit("k", both, tokens=60))
    refused = await limiter.admit("k", both, tokens=30)
    assert (refused.reason, refused.retry_after_s) == ("rpm", 60.0)
    loose = KeyLimits(rpm=60, tpm=60)
    held(await limiter.admit("j", loose, tokens=60))
    refused = await limiter.admit("j", loose, tokens=30)
    assert (refused.reason, refused.retry_after_s) == ("tpm", 30.0)


async def test_a_request_larger_than_the_budget_never_fits(world: World) -> None:
    limiter, limits = world.limiter(), KeyLimits(tpm=100)
    refused = await limiter.admit("k", limits, tokens=101)
    assert (refused.allowed, refused.reason, refused.retry_after_s) == (False, "tpm", None)
    assert (await limiter.admit("k", limits, tokens=100)).allowed


# --- token reservations ------------------------------------------------------------------


async def test_an_early_end_returns_the_unused_reservation(world: World) -> None:
    limiter, limits = world.limiter(), KeyLimits(tpm=1000)
    first = held(await limiter.admit("k", limits, tokens=800))
    refused = await limiter.admit("k", limits, tokens=800)
    assert refused.reason == "tpm" and refused.retry_after_s == 36.0  # 600 tokens at 1000/min
    await limiter.reconcile(first, 100)  # the stream stopped after 100 tokens
    second = await limiter.admit("k", limits, tokens=800)
    assert second.allowed and second.headers["x-ratelimit-remaining-tokens"] == "100"


async def test_an_overrun_is_charged(world: World) -> None:
    limiter, limits = world.limiter(), KeyLimits(tpm=1000)
    await limiter.reconcile(held(await limiter.admit("k", limits, tokens=100)), 900)
    probe = await limiter.admit("k", limits, tokens=0)
    assert probe.headers["x-ratelimit-remaining-tokens"] == "100"
    assert (await limiter.admit("k", limits, tokens=101)).reason == "tpm"


async def test_a_huge_overrun_costs_at_most_one_extra_period(world: World) -> None:
    limiter, limits = world.limiter(), KeyLimits(tpm=1000)
    await limiter.reconcile(held(await limiter.admit("k", limits, tokens=100)), 1_000_000)
    refused = await limiter.admit("k", limits, tokens=1)
    assert refused.retry_after_s == 60.06  # a full period of debt, then 1 token's 60 ms
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refused.headers["x-ratelimit-reset-tokens"] == "2m0s"


async def test_settling_twice_changes_nothing(world: World) -> None:
    limiter, limits = world.limiter(), KeyLimits(tpm=1000, max_concurrent=2)
    first = held(await limiter.admit("k", limits, tokens=500))
    second = held(await limiter.admit("k", limits, tokens=300))
    await limiter.reconcile(first, 0)
    await limiter.reconcile(first, 0)  # no second refund: 700 left, not 1000
    await limiter.release_concurrency(first)
    third = held(await limiter.admit("k", limits, tokens=700))
    await limiter.release_concurrency(first)  # must not free another request's slot
    assert (await limiter.admit("k", limits)).reason == "concurrency"
    await limiter.finish(second, 300)
    assert (await limiter.admit("k", limits, tokens=1)).reason == "tpm"
    await limiter.finish(third, 700)


async def test_tokens_per_day_is_a_rolling_day(world: World) -> None:
    limiter, limits = world.limiter(), KeyLimits(tokens_per_day=86_400)  # 1 token a second
    spent = await limiter.admit("k", limits, tokens=86_400)
    assert spent.headers["x-ratelimit-reset-tokens"] == "24h0m0s"
    refused = await limiter.admit("k", limits, tokens=10)
    assert (refused.reason, refused.retry_after_s) == ("tokens_per_day", 10.0)
    world.clock.advance(10.0)
    assert (await limiter.admit("k", limits, tokens=10)).allowed


async def test_the_day_budget_binds_under_a_looser_tpm(world: World) -> None:
    limiter, limits = world.limiter(), KeyLimits(tpm=10_000, tokens_per_day=15_000)
    assert (await limiter.admit("k", limits, tokens=10_000)).allowed
    world.clock.advance(60.0)
    refused = await limiter.admit("k", limits, tokens=10_000)
    assert refused.reason == "tokens_per_day"
    assert refused.retry_after_s == pytest.approx(86_400 * 5_000 / 15_000 - 60.0)


# --- concurrency -------------------------------------------------------------------------


async def test_concurrency_admits_n_and_a_release_frees_a_slot(world: World) -> None:
    limiters = [world.limiter() for _ in range(2)]
    limits = KeyLimits(max_concurrent=5)
    decisions = await admit_many(limiters, 50, limits)
    assert allowed(decisions) == 5
    assert {(d.reason, d.retry_after_s) for d in decisions if not d.allowed} == {
        ("concurrency", 1.0)
    }
    first = next(d for d in decisions if d.allowed)
    await limiters[1].release_concurrency(held(first))  # any instance may release
    assert allowed(await admit_many(limiters, 10, limits)) == 1


async def test_a_lost_lease_lapses(world: World) -> None:
    limiter, limits = world.limiter(lease_s=30.0), KeyLimits(max_concurrent=1)
    held(await limiter.admit("k", limits))  # its instance dies: never released
    world.clock.advance(29.0)
    assert not (await limiter.admit("k", limits)).allowed
    world.clock.advance(1.0)
    assert (await limiter.admit("k", limits)).allowed


async def test_in_flight_counts_every_instances_live_leases(world: World) -> None:
    limiters = [world.limiter(lease_s=30.0) for _ in range(2)]
    limits = KeyLimits(max_concurrent=5)
    decisions = await admit_many(limiters, 3, limits)
    other = held(await limiters[1].admit("other", limits))
    assert await limiters[0].in_flight(["k", "other", "idle"]) == {"k": 3, "other": 1, "idle": 0}
    await limiters[0].finish(held(decisions[0]), 0)
    await limiters[1].release_concurrency(other)
    assert await limiters[1].in_flight(["k", "other"]) == {"k": 2, "other": 0}
    world.clock.advance(30.0)  # the instance holding them died: they lapse
    assert await limiters[0].in_flight(["k"]) == {"k": 0}
    assert await limiters[0].in_flight([]) == {}


# --- headers -----------------------------------------------------------------------------


async def test_headers_on_admission_and_refusal(world: World) -> None:
    limiter, limits = world.limiter(), KeyLimits(rpm=60, tpm=1000)
    first = await limiter.admit("k", limits, tokens=100)
    assert first.headers == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "900",
        "x-ratelimit-reset-tokens": "6s",
    }
    await limiter.admit("k", limits, tokens=900)
    world.clock.advance(0.5)
    refused = await limiter.admit("k", limits, tokens=100)
    assert refused.retry_after_s == 5.5
    assert refused.headers["x-ratelimit-remaining-requests"] == "58"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "8"  # 0.5 s of refill
    assert refused.headers["x-ratelimit-reset-tokens"] == "59.5s"


async def test_no_headers_without_rate_limits(world: World) -> None:
    limiter = world.limiter()
    assert (await limiter.admit("k", KeyLimits())).headers == {}
    assert (await limiter.admit("k", KeyLimits(max_concurrent=2))).headers == {}
    only_requests = await limiter.admit("k", KeyLimits(rpm=10))
    assert set(only_requests.headers) == {
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    }


@pytest.mark.parametrize(
    ("us", "text"),
    [
        (0, "0s"),
        (1, "1ms"),
        (120_000, "120ms"),
        (999_999, "1s"),
        (1_000_000, "1s"),
        (1_500_000, "1.5s"),
        (59_999_000, "59.999s"),
        (360_000_000, "6m0s"),
        (3_725_250_000, "1h2m5.25s"),
    ],
)
def test_format_duration_writes_openai_durations(us: int, text: str) -> None:
    assert format_duration(us) == text


def test_limits_reject_nonsense() -> None:
    for bad in ({"rpm": 0}, {"tpm": -5}, {"max_concurrent": True}):
        with pytest.raises(ValueError):
            KeyLimits(**bad)
    assert KeyLimits(rpm=10, tpm=3).scaled(0.5) == KeyLimits(rpm=5, tpm=2)


async def test_arguments_are_checked(world: World) -> None:
    limiter = world.limiter()
    with pytest.raises(ValueError):
        await limiter.admit("k", KeyLimits(tpm=10), tokens=-1)
    reservation = held(await limiter.admit("k", KeyLimits(tpm=10), tokens=5))
    with pytest.raises(ValueError):
        await limiter.reconcile(reservation, -1)
    foreign = Reservation("k", KeyLimits(tpm=10), 5, None, backend="elsewhere")
    with pytest.raises(ValueError):
        await limiter.reconcile(foreign, 1)


def test_the_memory_limiter_forgets_full_buckets() -> None:
    clock = FakeClock()
    limiter = MemoryLimiter(clock, purge_every_s=10.0)

    async def scenario() -> None:
        for key in "abc":
            await limiter.admit(key, KeyLimits(rpm=60, max_concurrent=1))
        assert len(limiter) == 6
        clock.advance(601.0)  # buckets full again, leases lapsed
        await limiter.admit("d", KeyLimits(rpm=60))
        assert len(limiter) == 1

    asyncio.run(scenario())


# --- memory and Redis agree --------------------------------------------------------------


async def test_memory_and_redis_agree_on_a_random_workload() -> None:
    """Decision for decision, header for header, on one timeline."""
    async with open_harness("redis") as harness:
        clock, rng = harness.clock, random.Random(7)
        memory = MemoryLimiter(clock, lease_s=20.0)
        shared = RedisLimiter.from_url(REDIS_URL, prefix=harness.prefix, clock=clock, lease_s=20.0)
        limits = [
            KeyLimits(rpm=7, tpm=900, max_concurrent=3),
            KeyLimits(tpm=333, tokens_per_day=5_000),
            KeyLimits(rpm=3, tokens_per_day=2_000, max_concurrent=2),
            KeyLimits(rpm=5),
        ]
        open_: list[tuple[Reservation, Reservation]] = []
        seen: set[str | None] = set()
        try:
            for _ in range(400):
                clock.advance(rng.choice([0.0, 0.0, 0.013, 0.5, 3.7, 21.0]))
                seen.add(await _random_step(rng, memory, shared, limits, open_))
        finally:
            await shared.aclose()
    # The workload reached every outcome, so agreeing on it means something.
    assert seen >= {"allowed", "rpm", "tpm", "tokens_per_day", "concurrency"}


async def _random_step(
    rng: random.Random,
    memory: MemoryLimiter,
    shared: RedisLimiter,
    limits: list[KeyLimits],
    open_: list[tuple[Reservation, Reservation]],
) -> str | None:
    """Settle an open pair or admit on both; the outcome of an admission, else None."""
    if open_ and rng.random() < 0.4:
        mine, theirs = open_.pop(rng.randrange(len(open_)))
        actual = rng.randrange(0, 700)
        await memory.finish(mine, actual)
        await shared.finish(theirs, actual)
        return None
    index = rng.randrange(len(limits))
    tokens = rng.randrange(0, 600)
    a = await memory.admit(f"k{index}", limits[index], tokens=tokens)
    b = await shared.admit(f"k{index}", limits[index], tokens=tokens)
    assert (a.allowed, a.reason, a.retry_after_s, a.headers) == (
        b.allowed,
        b.reason,
        b.retry_after_s,
        b.headers,
    )
    if a.reservation is not None and b.reservation is not None:
        open_.append((a.reservation, b.reservation))
    return a.reason or "allowed"


# --- Redis on its own clock (server time) ------------------------------------------------


async def test_server_time_instances_admit_exactly_the_limit() -> None:
    async with open_harness("redis") as harness:
        limiters = [
            RedisLimiter.from_url(REDIS_URL, prefix=harness.prefix, timeout_s=2.0) for _ in range(3)
        ]
        try:
            decisions = await admit_many(list(limiters), 300, KeyLimits(rpm=60))
        finally:
            for limiter in limiters:
                await limiter.aclose()
    assert allowed(decisions) == 60
    waits = [d.retry_after_s for d in decisions if not d.allowed]
    assert all(w is not None and 0.5 < w <= 1.0 for w in waits)


async def test_server_time_refills_as_the_server_clock_moves() -> None:
    async with open_harness("redis") as harness:
        limiter = RedisLimiter.from_url(REDIS_URL, prefix=harness.prefix, timeout_s=2.0)
        limits = KeyLimits(tpm=60_000)  # one token a millisecond
        try:
            assert (await limiter.admit("k", limits, tokens=60_000)).allowed
            refused = await limiter.admit("k", limits, tokens=30)
            assert refused.retry_after_s is not None and 0.0 < refused.retry_after_s <= 0.03
            await asyncio.sleep(0.05)  # Redis's clock cannot be faked; 50 ms of it
            assert (await limiter.admit("k", limits, tokens=30)).allowed
        finally:
            await limiter.aclose()


# --- failover ----------------------------------------------------------------------------


class RedisLink:
    """A TCP relay to the real Redis that the test can cut and restore: an outage."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/15"

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        """Refuse new connections and drop the open ones."""
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self._writers.append(up_writer)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


class Failover:
    """A failover limiter on a fake clock, recording its transitions (True:
    degraded). Its Redis latch trips at the first failure; by default it
    probes only once the fake clock has moved 5 s."""

    def __init__(
        self,
        shared_url: str,
        prefix: str = "test:",
        health: StoreHealth | None = None,
        **kwargs: object,
    ) -> None:
        self.clock = FakeClock()
        self.changes: list[bool] = []
        self.health = health or StoreHealth(
            trip_after=1, probe_after_s=5.0, probe_max_s=5.0, clock=self.clock
        )
        self.health.on_change(lambda available: self.changes.append(not available))
        self.shared = RedisLimiter.from_url(
            shared_url, prefix=prefix, timeout_s=0.5, clock=self.clock, health=self.health
        )
        self.local = MemoryLimiter(self.clock)
        self.limiter = FailoverLimiter(
            self.shared,
            self.local,
            health=self.health,
            **kwargs,  # type: ignore[arg-type]
        )


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def test_failover_applies_local_limits_while_redis_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = Failover(DEAD_REDIS)
    limits = KeyLimits(rpm=2, tpm=100, max_concurrent=5)
    decisions = [await world.limiter.admit("k", limits, tokens=10) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert decisions[2].reason == "rpm" and decisions[2].headers  # local limits, local headers
    assert world.limiter.degraded and world.changes == [True]
    assert len(warnings_logged(caplog)) == 1  # once per transition, not per request
    for decision in decisions[:2]:
        await world.limiter.finish(held(decision), 5)  # settles locally, raises nothing
    await world.limiter.aclose()


async def test_failover_counts_in_flight_where_the_slots_were_taken() -> None:
    link = RedisLink()
    await link.up()
    world = Failover(link.url, prefix=f"test:{random.getrandbits(32)}:")
    limits = KeyLimits(max_concurrent=5)
    shared = held(await world.limiter.admit("k", limits))
    assert await world.limiter.in_flight(["k"]) == {"k": 1}
    await link.down()
    local = held(await world.limiter.admit("k", limits))  # degraded: this instance's slot
    assert local.backend == "memory"
    assert await world.limiter.in_flight(["k"]) == {"k": 1}
    await world.limiter.finish(local, 0)
    assert await world.limiter.in_flight(["k"]) == {"k": 0}
    await world.limiter.finish(shared, 0)  # dropped: its lease lapses in Redis
    await world.limiter.aclose()


async def test_failover_can_fail_closed() -> None:
    world = Failover(DEAD_REDIS, mode="fail_closed")
    refused = await world.limiter.admit("k", KeyLimits(rpm=100))
    assert (refused.allowed, refused.reason, refused.status_code) == (False, "unavailable", 503)
    assert refused.retry_after_s == 5.0  # the next probe
    assert world.limiter.degraded
    assert (await world.limiter.admit("k", KeyLimits())).allowed  # unlimited needs no Redis
    await world.limiter.aclose()


async def test_failover_scales_local_limits() -> None:
    world = Failover(DEAD_REDIS, local_fraction=0.25)  # four instances
    decisions = [await world.limiter.admit("k", KeyLimits(rpm=8)) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    await world.limiter.aclose()


async def test_failover_treats_a_silent_redis_as_down() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()  # accepts and reads, never answers

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    health = StoreHealth(trip_after=1)
    shared = RedisLimiter.from_url(f"redis://127.0.0.1:{port}/0", timeout_s=0.05, health=health)
    limiter = FailoverLimiter(shared, MemoryLimiter(FakeClock()), health=health)
    try:
        assert (await limiter.admit("k", KeyLimits(rpm=1))).allowed  # after one 50 ms timeout
        assert limiter.degraded
        with pytest.raises(StateStoreUnavailable):
            await shared.admit("k", KeyLimits(rpm=1))  # at once: the latch has tripped
    finally:
        await limiter.aclose()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_failover_refuses_nonsense() -> None:
    clock, health = FakeClock(), StoreHealth()
    with pytest.raises(ValueError):
        FailoverLimiter(MemoryLimiter(clock), MemoryLimiter(clock), health=health)
    shared = RedisLimiter.from_url(DEAD_REDIS, health=health)
    with pytest.raises(ValueError):
        FailoverLimiter(shared, MemoryLimiter(clock), health=health, mode="fail_sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FailoverLimiter(shared, MemoryLimiter(clock), health=health, local_fraction=0)
    await shared.aclose()


async def test_failover_returns_to_shared_limits_when_redis_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with open_harness("redis") as harness:
        link = RedisLink()
        await link.up()
        # The latch on the real clock: it probes Redis every 50 ms while out.
        health = StoreHealth(trip_after=1, probe_after_s=0.05, probe_max_s=0.05)
        world = Failover(link.url, prefix=harness.prefix, health=health)
        limiter, limits = world.limiter, KeyLimits(rpm=10, max_concurrent=10)
        try:
            before = held(await limiter.admit("k", limits))
            assert before.backend == "redis" and not limiter.degraded

            await link.down()
            during = held(await limiter.admit("k", limits))
            assert during.backend == "memory" and limiter.degraded
            await limiter.finish(before, 0)  # a shared reservation mid-outage: no exception
            await asyncio.sleep(0.2)  # a few probes, none answered
            assert held(await limiter.admit("k", limits)).backend == "memory"

            await link.up()
            for _ in range(500):  # the background probe lifts the latch; no admission needed
                if not limiter.degraded:
                    break
                await asyncio.sleep(0.01)
            back = await limiter.admit("k", limits)
            assert held(back).backend == "redis" and not limiter.degraded
            assert back.headers["x-ratelimit-remaining-requests"] == "8"  # shared count kept
            await limiter.finish(during, 0)  # local reservations still settle locally
            assert world.changes == [True, False]
            assert len(warnings_logged(caplog)) == 2
        finally:
            await limiter.aclose()
            await link.down()
