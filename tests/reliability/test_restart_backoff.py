"""The supervisor's restart pause, on an injected clock."""

from __future__ import annotations

from interlock.supervisor import RestartBackoff
from tests.support.clock import FakeClock


def test_a_worker_that_served_a_while_is_replaced_at_once() -> None:
    clock = FakeClock()
    backoff = RestartBackoff(stable_s=30, clock=clock)
    started = clock.now
    clock.now += 45
    assert backoff.delay(started) == 0.0


def test_workers_dying_young_wait_longer_each_time_up_to_the_cap() -> None:
    clock = FakeClock()
    backoff = RestartBackoff(first_s=0.5, max_s=4, stable_s=30, clock=clock)
    delays = []
    for _ in range(6):
        started = clock.now
        clock.now += 1  # dies a second after starting
        delays.append(backoff.delay(started))
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    started = clock.now
    clock.now += 60  # then one serves long enough: the count starts over
    assert backoff.delay(started) == 0.0
    started = clock.now
    clock.now += 1
    assert backoff.delay(started) == 0.5
