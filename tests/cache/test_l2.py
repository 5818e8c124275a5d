"""The shared tier on every StateStore, and what happens when the store is down."""

from __future__ import annotations

from interlock.cache.l2 import KEY_PREFIX, SharedTier
from interlock.state import RedisStateStore
from tests.cache.support import CountingCall, SwitchableStore, chat_body, make_cache, prepare
from tests.state.harness import StoreHarness


async def test_values_round_trip_under_the_cache_prefix(store_harness: StoreHarness) -> None:
    tier = SharedTier(store_harness.store, max_entry_bytes=1024)
    assert await tier.get("k") is None
    assert await tier.set("k", b"value", ttl_s=60)
    assert await tier.get("k") == b"value"
    assert await store_harness.store.get(KEY_PREFIX + "k") == b"value"
    other_instance = SharedTier(store_harness.new_store(), max_entry_bytes=1024)
    assert await other_instance.get("k") == b"value"


async def test_values_expire(store_harness: StoreHarness) -> None:
    tier = SharedTier(store_harness.store, max_entry_bytes=1024)
    await tier.set("k", b"value", ttl_s=0.08)
    await store_harness.elapse(0.1)
    assert await tier.get("k") is None


async def test_oversized_values_stay_out(store_harness: StoreHarness) -> None:
    tier = SharedTier(store_harness.store, max_entry_bytes=4)
    assert await tier.set("k", b"12345", ttl_s=60) is False
    assert await tier.get("k") is None


async def test_unreachable_redis_is_a_miss_and_a_skipped_fill() -> None:
    store = RedisStateStore("redis://127.0.0.1:1/0", timeout_s=0.2)  # nothing listens there
    try:
        tier = SharedTier(store, max_entry_bytes=1024)
        assert await tier.get("k") is None
        assert await tier.set("k", b"v", ttl_s=60) is False
        assert tier.errors == 2
    finally:
        await store.aclose()


async def test_a_shared_hit_fills_the_local_tier(store_harness: StoreHarness) -> None:
    first = make_cache(store_harness.store, store_harness.clock)
    second = make_cache(store_harness.new_store(), store_harness.clock)
    await first.complete(await prepare(first), CountingCall())
    req = await prepare(second)
    hit = await second.lookup(req)
    assert hit is not None and hit.tier == "l2"
    assert hit.completion()["choices"][0]["message"]["content"] == "Hello there, friend."
    again = await second.lookup(req)
    assert again is not None and again.tier == "l1"
    assert second.stats.hits == 2 and second.stats.hits_l2 == 1


async def test_store_outage_degrades_to_upstream_without_errors(
    store_harness: StoreHarness,
) -> None:
    store = SwitchableStore(store_harness.store)
    cache = make_cache(store, store_harness.clock, l1_max_entries=1)
    call = CountingCall()
    # Generations are read while the store is up; they stay known through the outage.
    req, other = await prepare(cache), await prepare(cache, key="bob")
    store.down = True
    await cache.complete(req, call)
    await cache.complete(other, call)  # pushes req's entry out of the one-entry local tier
    result, status = await cache.complete(req, call)
    assert status == "miss"
    assert result["choices"][0]["message"]["content"] == "Hello there, friend."
    assert call.calls == 3
    assert cache.gauges()["l2_errors"] >= 3
    # With no generation ever read for a tenant, the cache stays out of its way.
    assert await cache.prepare("carol", "sim", chat_body(), {}) is None
    assert cache.stats.skipped == 1
