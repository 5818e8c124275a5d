"""The sweeper's pace: short while a batch is open, long while none is,
short again at once when work is taken. A fake clock; no sleeping."""

from __future__ import annotations

import pytest

from interlock.batch.pace import SweepPace
from tests.support.clock import FakeClock as Clock


def test_the_first_sweep_is_due_at_once() -> None:
    assert SweepPace(1.0, 30.0, Clock()).due()


def test_an_open_batch_keeps_the_short_pace() -> None:
    clock = Clock()
    pace = SweepPace(1.0, 30.0, clock)
    pace.swept(anything_open=True)
    clock.advance(0.9)
    assert not pace.due()
    clock.advance(0.1)
    assert pace.due()


def test_nothing_open_slows_sweeps_to_the_idle_pace() -> None:
    clock = Clock()
    pace = SweepPace(1.0, 30.0, clock)
    pace.swept(anything_open=False)
    clock.advance(29.9)
    assert not pace.due()
    clock.advance(0.1)
    assert pace.due()
    pace.swept(anything_open=True)  # a batch was opened elsewhere: short again
    clock.advance(1.0)
    assert pace.due()


def test_work_taken_makes_the_next_sweep_due_and_the_sweep_clears_it() -> None:
    clock = Clock()
    pace = SweepPace(1.0, 30.0, clock)
    pace.swept(anything_open=False)
    clock.advance(2.0)
    pace.wake()
    assert pace.due()
    pace.swept(anything_open=False)  # the batch finished meanwhile: idle again
    clock.advance(2.0)
    assert not pace.due()


def test_an_idle_pace_shorter_than_the_short_one_is_the_short_one() -> None:
    clock = Clock()
    pace = SweepPace(5.0, 1.0, clock)
    pace.swept(anything_open=False)
    clock.advance(4.9)
    assert not pace.due()
    clock.advance(0.1)
    assert pace.due()


def test_a_pace_must_be_positive() -> None:
    with pytest.raises(ValueError, match="every_s"):
        SweepPace(0.0, 30.0, Clock())


def test_a_wake_while_a_sweep_runs_is_not_lost() -> None:
    # The sweep read the store before the batch was opened: the wake that
    # came meanwhile still makes the next tick sweep.
    clock = Clock()
    pace = SweepPace(1.0, 3600.0, clock)
    assert pace.due()  # a sweep starts
    pace.wake()  # a batch is opened through the API while it runs
    pace.swept(anything_open=False)  # it found nothing
    assert pace.due()
    pace.swept(anything_open=True)
    assert not pace.due()
