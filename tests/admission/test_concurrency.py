from __future__ import annotations

import asyncio

import pytest

from interlock.admission.concurrency import InFlightLimiter
from interlock.errors import Overloaded


async def test_slots_then_queue_then_fast_rejection() -> None:
    rejected: list[str] = []
    limiter = InFlightLimiter(2, max_queue=1, queue_timeout_s=5, on_reject=rejected.append)
    await limiter.acquire()
    await limiter.acquire()
    waiting = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    assert limiter.queued == 1
    with pytest.raises(Overloaded) as info:
        await limiter.acquire()  # queue full: no waiting at all
    assert info.value.retry_after_s == 1.0 and rejected == ["overloaded"]
    limiter.release()  # hands the slot to the waiter
    await waiting
    assert limiter.in_flight == 2 and limiter.queued == 0


async def test_queue_deadline_rejects() -> None:
    limiter = InFlightLimiter(1, max_queue=5, queue_timeout_s=0.01)
    await limiter.acquire()
    with pytest.raises(Overloaded):
        await limiter.acquire()
    assert limiter.queued == 0
    limiter.release()
    assert limiter.in_flight == 0


async def test_higher_priority_waits_less() -> None:
    limiter = InFlightLimiter(1, max_queue=5, queue_timeout_s=5)
    await limiter.acquire()
    order: list[str] = []

    async def wait(name: str, priority: int) -> None:
        await limiter.acquire(priority)
        order.append(name)

    low = asyncio.ensure_future(wait("low", 0))
    high = asyncio.ensure_future(wait("high", 5))
    await asyncio.sleep(0)
    limiter.release()
    await high
    limiter.release()
    await low
    assert order == ["high", "low"]


async def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    limiter = InFlightLimiter(1, max_queue=5, queue_timeout_s=5)
    await limiter.acquire()
    waiter = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    limiter.release()
    assert limiter.in_flight == 0
