"""The StateStore contract, run against every implementation (memory, Redis)."""

from __future__ import annotations

import asyncio

import pytest

from interlock.state import StateStore
from tests.state.harness import StoreHarness

# Short enough that Redis tests wait at most ~0.1 s; the memory store's clock is fake.
TTL = 0.08
PAST_TTL = 0.1


async def test_get_set_delete(store_harness: StoreHarness) -> None:
    store = store_harness.store
    assert await store.get("k") is None
    await store.set("k", b"one")
    assert await store.get("k") == b"one"
    await store.set("k", b"two")
    assert await store.get("k") == b"two"
    await store.delete("k")
    assert await store.get("k") is None
    await store.delete("k")  # absent is fine


async def test_values_are_bytes_verbatim(store_harness: StoreHarness) -> None:
    value = bytes(range(256))
    await store_harness.store.set("bin", value)
    assert await store_harness.store.get("bin") == value


async def test_set_with_ttl_expires(store_harness: StoreHarness) -> None:
    store = store_harness.store
    await store.set("k", b"v", ttl_s=TTL)
    assert await store.get("k") == b"v"
    await store_harness.elapse(PAST_TTL)
    assert await store.get("k") is None


async def test_set_without_ttl_clears_an_old_ttl(store_harness: StoreHarness) -> None:
    store = store_harness.store
    await store.set("k", b"v", ttl_s=TTL)
    await store.set("k", b"w")
    await store_harness.elapse(PAST_TTL)
    assert await store.get("k") == b"w"


async def test_incr_counts_and_reads_back_as_digits(store_harness: StoreHarness) -> None:
    store = store_harness.store
    assert await store.incr("n") == 1
    assert await store.incr("n", 5) == 6
    assert await store.incr("n", -10) == -4
    assert await store.get("n") == b"-4"
    await store.set("m", b"41")
    assert await store.incr("m") == 42


async def test_incr_sets_ttl_only_when_creating(store_harness: StoreHarness) -> None:
    store = store_harness.store
    await store.incr("n", ttl_s=TTL)
    await store.incr("n", ttl_s=60)  # must not extend the window
    await store_harness.elapse(PAST_TTL)
    assert await store.get("n") is None
    assert await store.incr("n", ttl_s=TTL) == 1  # a new window starts from zero


async def test_incr_keeps_an_existing_key_without_ttl(store_harness: StoreHarness) -> None:
    store = store_harness.store
    await store.set("n", b"1")
    await store.incr("n", ttl_s=TTL)
    await store_harness.elapse(PAST_TTL)
    assert await store.get("n") == b"2"


async def test_incr_on_a_non_integer_is_a_value_error(store_harness: StoreHarness) -> None:
    await store_harness.store.set("s", b"abc")
    with pytest.raises(ValueError):
        await store_harness.store.incr("s")
    assert await store_harness.store.get("s") == b"abc"


async def test_set_if_absent(store_harness: StoreHarness) -> None:
    store = store_harness.store
    assert await store.set_if_absent("lock", b"a", ttl_s=TTL)
    assert not await store.set_if_absent("lock", b"b", ttl_s=TTL)
    assert await store.get("lock") == b"a"
    await store_harness.elapse(PAST_TTL)
    assert await store.set_if_absent("lock", b"c")
    assert await store.get("lock") == b"c"


async def test_compare_and_set(store_harness: StoreHarness) -> None:
    store = store_harness.store
    assert not await store.compare_and_set("k", b"x", b"1")  # absent is not b"x"
    assert await store.get("k") is None
    assert await store.compare_and_set("k", None, b"1")  # None: expect absent
    assert not await store.compare_and_set("k", None, b"2")
    assert not await store.compare_and_set("k", b"other", b"2")
    assert await store.get("k") == b"1"
    assert await store.compare_and_set("k", b"1", b"2", ttl_s=TTL)
    assert await store.get("k") == b"2"
    await store_harness.elapse(PAST_TTL)
    assert await store.get("k") is None


@pytest.mark.parametrize("bad", [0, -1.0])
async def test_non_positive_ttl_is_rejected(store_harness: StoreHarness, bad: float) -> None:
    store = store_harness.store
    with pytest.raises(ValueError):
        await store.set("k", b"v", ttl_s=bad)
    with pytest.raises(ValueError):
        await store.incr("k", ttl_s=bad)
    with pytest.raises(ValueError):
        await store.set_if_absent("k", b"v", ttl_s=bad)
    with pytest.raises(ValueError):
        await store.compare_and_set("k", None, b"v", ttl_s=bad)
    assert await store.get("k") is None


async def test_ping(store_harness: StoreHarness) -> None:
    assert await store_harness.store.ping()


def _stores(harness: StoreHarness, n: int) -> list[StateStore]:
    """Spread contenders over several handles (connections, for Redis)."""
    handles = [harness.store, harness.new_store(), harness.new_store()]
    return [handles[i % len(handles)] for i in range(n)]


async def test_concurrent_compare_and_set_has_exactly_one_winner(
    store_harness: StoreHarness,
) -> None:
    await store_harness.store.set("cas", b"v0")
    stores = _stores(store_harness, 50)
    results = await asyncio.gather(
        *(s.compare_and_set("cas", b"v0", f"v{i + 1}".encode()) for i, s in enumerate(stores))
    )
    assert results.count(True) == 1
    winner = results.index(True)
    assert await store_harness.store.get("cas") == f"v{winner + 1}".encode()


async def test_concurrent_set_if_absent_has_exactly_one_winner(
    store_harness: StoreHarness,
) -> None:
    stores = _stores(store_harness, 50)
    results = await asyncio.gather(
        *(s.set_if_absent("lock", str(i).encode(), ttl_s=10) for i, s in enumerate(stores))
    )
    assert results.count(True) == 1
    assert await store_harness.store.get("lock") == str(results.index(True)).encode()


async def test_concurrent_incr_loses_no_update(store_harness: StoreHarness) -> None:
    stores = _stores(store_harness, 50)
    values = await asyncio.gather(*(s.incr("n", ttl_s=10) for s in stores))
    assert sorted(values) == list(range(1, 51))
