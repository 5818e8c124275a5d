"""The cross-instance lock and its bounded wait, on every StateStore."""

from __future__ import annotations

import pytest

from interlock.cache.remote import InstanceLock
from tests.cache.support import RecordingSleep, SwitchableStore
from tests.state.harness import StoreHarness


def lock_on(harness: StoreHarness, sleep: RecordingSleep, *, new: bool = False) -> InstanceLock:
    store = harness.new_store() if new else harness.store
    return InstanceLock(store, ttl_s=30, wait_s=1.0, poll_s=0.1, poll_max_s=0.4, sleep=sleep)


async def test_one_instance_takes_the_lock(store_harness: StoreHarness) -> None:
    a = lock_on(store_harness, RecordingSleep())
    b = lock_on(store_harness, RecordingSleep(), new=True)
    assert await a.acquire("k")
    assert not await b.acquire("k")
    await a.release("k")
    assert await b.acquire("k")


async def test_wait_returns_the_answer_as_soon_as_it_appears(store_harness: StoreHarness) -> None:
    answers: list[bytes | None] = [None, None, b"answer"]

    async def read() -> bytes | None:
        return answers.pop(0)

    sleep = RecordingSleep()
    waiter = lock_on(store_harness, sleep)
    assert await lock_on(store_harness, RecordingSleep(), new=True).acquire("k")  # held throughout
    assert await waiter.wait_for("k", read) == b"answer"
    assert sleep.slept == [0.1, 0.2, 0.4]


async def test_wait_is_bounded_with_capped_backoff(store_harness: StoreHarness) -> None:
    async def read() -> bytes | None:
        return None

    sleep = RecordingSleep()
    await lock_on(store_harness, RecordingSleep(), new=True).acquire("k")
    assert await lock_on(store_harness, sleep).wait_for("k", read) is None
    assert sleep.slept == pytest.approx([0.1, 0.2, 0.4, 0.3])  # the last one fills the bound


async def test_store_down_means_no_coordination_not_an_error(
    store_harness: StoreHarness,
) -> None:
    store = SwitchableStore(store_harness.store)
    store.down = True
    lock = InstanceLock(store, ttl_s=30, wait_s=1.0, sleep=RecordingSleep())
    assert await lock.acquire("k")  # nobody to wait for: do the work
    await lock.release("k")
