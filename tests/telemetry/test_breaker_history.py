"""A deployment's health snapshot reports its breaker's state and a bounded
history of the transitions this instance saw. Fake clocks; nothing sleeps."""

from __future__ import annotations

import asyncio

from interlock.routing.breaker import BreakerConfig, BreakerState, CircuitBreaker
from interlock.state import MemoryStateStore
from interlock.telemetry.health import BREAKER_HISTORY, DeploymentHealth, HealthBoard
from tests.state.harness import FakeClock

CLOSED, OPEN, HALF_OPEN = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN
CONFIG = BreakerConfig(consecutive_failures=2, open_s=10, max_open_s=60, close_after=1)


class Instance:
    """One gateway instance's breaker for ``dep-1`` and the health it reports to."""

    def __init__(self, store: MemoryStateStore, clock: FakeClock, wall: FakeClock):
        self.health = DeploymentHealth("dep-1", "openai", wall=wall)
        self.breaker = CircuitBreaker(
            "dep-1",
            store,
            CONFIG,
            clock=clock,
            wall=wall,
            on_transition=lambda _, before, after: self.health.breaker_changed(before, after),
        )
        self.health.follow_breaker(self.breaker)

    def snapshot(self) -> dict[str, object]:
        return self.health.snapshot(unhealthy_after=5)


async def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert await breaker.allow()
        await breaker.record_failure()


def test_a_deployment_starts_closed_with_no_history() -> None:
    snapshot = DeploymentHealth("dep-1", "openai").snapshot(unhealthy_after=5)
    assert snapshot["breaker"] == "closed"
    assert snapshot["breaker_history"] == []


def test_history_is_oldest_first_and_keeps_the_last_twenty() -> None:
    wall = FakeClock(1_700_000_000.0)
    health = DeploymentHealth("dep-1", "openai", wall=wall)
    states = [CLOSED, OPEN, HALF_OPEN]
    for i in range(BREAKER_HISTORY + 5):
        wall.advance(1)
        health.breaker_changed(states[i % 3], states[(i + 1) % 3])
    history = health.snapshot(unhealthy_after=5)["breaker_history"]
    assert BREAKER_HISTORY == 20 and len(history) == 20
    assert [entry["at"] for entry in history] == [1_700_000_000.0 + i for i in range(6, 26)]
    assert history[-1] == {"at": 1_700_000_025.0, "from": "closed", "to": "open"}
    assert all(set(entry) == {"at", "from", "to"} for entry in history)
    assert all(type(entry["to"]) is str for entry in history)  # plain JSON, not the enum
    # Without a breaker to read, the state is the last one reported.
    assert health.breaker_state == "open"


def test_the_snapshot_follows_a_real_breaker_through_its_states() -> None:
    clock, wall = FakeClock(), FakeClock(1_700_000_000.0)
    one = Instance(MemoryStateStore(clock), clock, wall)

    async def scenario() -> None:
        await fail(one.breaker, 2)
        assert one.snapshot()["breaker"] == "open"
        assert one.snapshot()["breaker_history"] == [
            {"at": 1_700_000_000.0, "from": "closed", "to": "open"}
        ]
        # The open period ends with no traffic at all: the router (which reads
        # the same view) would probe now, and the snapshot says so.
        clock.advance(11)
        wall.advance(11)
        assert one.snapshot()["breaker"] == "half_open"
        assert len(one.snapshot()["breaker_history"]) == 1  # no request observed it yet
        assert await one.breaker.allow()
        await one.breaker.record_success()

    asyncio.run(scenario())
    snapshot = one.snapshot()
    assert snapshot["breaker"] == "closed"
    assert [(e["from"], e["to"]) for e in snapshot["breaker_history"]] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert snapshot["breaker_history"][-1]["at"] == 1_700_000_011.0


def test_another_instance_shows_a_shared_trip_once_it_has_read_it() -> None:
    clock, wall = FakeClock(), FakeClock(1_700_000_000.0)
    store = MemoryStateStore(clock)
    one, two = Instance(store, clock, wall), Instance(store, clock, wall)

    async def scenario() -> None:
        assert await two.breaker.allow()  # two has read the closed record
        await two.breaker.record_success()
        await fail(one.breaker, 2)
        assert two.snapshot()["breaker"] == "closed"  # its cached copy is fresh enough
        clock.advance(CONFIG.refresh_s)
        wall.advance(CONFIG.refresh_s)
        assert not await two.breaker.allow()  # refreshed from the store: open

    asyncio.run(scenario())
    assert one.snapshot()["breaker"] == two.snapshot()["breaker"] == "open"
    assert two.snapshot()["breaker_history"] == [
        {"at": 1_700_000_000.0 + CONFIG.refresh_s, "from": "closed", "to": "open"}
    ]


def test_the_board_lists_each_deployments_breaker() -> None:
    first, second = DeploymentHealth("a", "openai"), DeploymentHealth("b", "openai")
    second.breaker_changed(CLOSED, OPEN)
    board = HealthBoard({"chat": [first, second]})
    assert {d["deployment"]: d["breaker"] for d in board.deployments()} == {
        "a": "closed",
        "b": "open",
    }
