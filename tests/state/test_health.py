"""The Redis health latch as a plain policy, on a fake clock."""

from __future__ import annotations

import logging

import pytest

from interlock.state import StoreHealth
from tests.state.harness import FakeClock


def latch(clock: FakeClock, **settings: float) -> tuple[StoreHealth, list[bool]]:
    health = StoreHealth(
        trip_after=int(settings.pop("trip_after", 3)),
        probe_after_s=settings.pop("probe_after_s", 0.5),
        probe_max_s=settings.pop("probe_max_s", 5.0),
        clock=clock,
    )
    changes: list[bool] = []
    health.on_change(changes.append)
    return health, changes


def trip(health: StoreHealth) -> None:
    for _ in range(health.trip_after):
        health.failed("TimeoutError: frozen")
    assert not health.available


def test_trips_after_n_failures_in_a_row() -> None:
    health, changes = latch(FakeClock(), trip_after=3)
    health.failed("TimeoutError")
    health.failed("TimeoutError")
    assert health.available and changes == []
    health.failed("TimeoutError")
    assert not health.available and changes == [False]


def test_an_answer_resets_the_count() -> None:
    health, _ = latch(FakeClock(), trip_after=3)
    for _ in range(5):
        health.failed("TimeoutError")
        health.failed("TimeoutError")
        health.succeeded()
    assert health.available


def test_refuses_at_once_while_tripped_whatever_late_calls_report() -> None:
    health, changes = latch(FakeClock())
    trip(health)
    # Calls that were under way when it tripped: neither lifts nor re-trips it.
    health.succeeded()
    health.failed("TimeoutError")
    assert not health.available and changes == [False]


def test_the_first_probe_is_due_probe_after_s_after_the_trip() -> None:
    clock = FakeClock()
    health, _ = latch(clock, probe_after_s=0.5)
    assert health.probe_wait_s() == 0.0  # nothing to probe while available
    trip(health)
    assert health.probe_wait_s() == pytest.approx(0.5)
    clock.advance(0.2)
    assert health.probe_wait_s() == pytest.approx(0.3)
    clock.advance(1.0)
    assert health.probe_wait_s() == 0.0


def test_one_prober_at_a_time() -> None:
    health, _ = latch(FakeClock())
    assert not health.claim_probe()  # available: nothing to probe
    trip(health)
    assert health.claim_probe()
    assert not health.claim_probe()  # the other guard's refused call does not start a second
    health.probe_finished(False)
    assert not health.claim_probe()  # still the same prober's turn
    health.release_probe()  # e.g. its guard closed
    assert health.claim_probe()


def test_an_answered_probe_lifts_the_latch() -> None:
    health, changes = latch(FakeClock(), trip_after=2)
    trip(health)
    assert health.claim_probe()
    health.probe_finished(True)
    health.release_probe()
    assert health.available and changes == [False, True]
    assert not health.claim_probe()
    health.failed("TimeoutError")  # the count starts from zero again
    assert health.available
    health.failed("TimeoutError")
    assert not health.available and changes == [False, True, False]


def test_backoff_doubles_up_to_probe_max_s() -> None:
    clock = FakeClock()
    health, _ = latch(clock, probe_after_s=0.5, probe_max_s=5.0)
    trip(health)
    waits = []
    for _ in range(7):
        waits.append(round(health.probe_wait_s(), 6))
        clock.advance(health.probe_wait_s())
        health.probe_finished(False)
    assert waits == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_backoff_starts_over_after_a_recovery() -> None:
    clock = FakeClock()
    health, _ = latch(clock)
    trip(health)
    for _ in range(4):
        clock.advance(health.probe_wait_s())
        health.probe_finished(False)
    health.probe_finished(True)
    trip(health)
    assert health.probe_wait_s() == pytest.approx(0.5)


def test_each_transition_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    health, _ = latch(clock, trip_after=1)
    with caplog.at_level(logging.WARNING, logger="interlock.state"):
        for _ in range(3):
            health.failed("ConnectionError: refused")
        for _ in range(3):
            clock.advance(health.probe_wait_s())
            health.probe_finished(False)
        clock.advance(health.probe_wait_s())
        health.probe_finished(True)
        health.probe_finished(True)  # a late second answer changes nothing
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "ConnectionError: refused" in messages[0] and "answers again" in messages[1]


@pytest.mark.parametrize(
    "bad",
    [
        {"trip_after": 0},
        {"probe_after_s": 0.0},
        {"probe_after_s": 6.0, "probe_max_s": 5.0},
    ],
)
def test_nonsense_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        StoreHealth(**bad)  # type: ignore[arg-type]
