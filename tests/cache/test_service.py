"""ResponseCache on chat completions: tenancy, expiry, invalidation, coalescing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from interlock.cache import ResponseCache
from interlock.errors import UpstreamTimeout
from interlock.state import MemoryStateStore
from tests.cache.support import (
    CountingCall,
    RecordingSleep,
    chat_body,
    make_cache,
    prepare,
    until,
)
from tests.state.harness import FakeClock, StoreHarness


async def test_second_identical_request_is_a_hit_with_the_original_usage() -> None:
    cache = make_cache(MemoryStateStore(), l2_enabled=False)
    call = CountingCall()
    first, status = await cache.complete(await prepare(cache), call)
    assert status == "miss"
    second, status = await cache.complete(await prepare(cache, chat_body(user="u2")), call)
    assert status == "hit" and call.calls == 1
    assert second["choices"][0]["message"] == first["choices"][0]["message"]
    assert second["usage"] == first["usage"]
    assert second["id"] != first["id"]
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.fills) == (1, 1, 1)
    assert stats.saved_completion_tokens == 7 and stats.saved_usd == 0.5


async def test_one_key_never_reads_another_keys_entry(store_harness: StoreHarness) -> None:
    cache = make_cache(store_harness.store, store_harness.clock)
    call = CountingCall()
    await cache.complete(await prepare(cache, key="alice"), call)
    _, status = await cache.complete(await prepare(cache, key="bob"), call)
    assert status == "miss" and call.calls == 2
    # Not through the shared tier either: a fresh instance, bob's view only.
    other = make_cache(store_harness.new_store(), store_harness.clock)
    assert await other.lookup(await prepare(other, key="carol")) is None


async def test_a_configured_shared_namespace_is_shared(store_harness: StoreHarness) -> None:
    cache = make_cache(store_harness.store, store_harness.clock, shared_namespace="public")
    call = CountingCall()
    await cache.complete(await prepare(cache, key="alice"), call)
    _, status = await cache.complete(await prepare(cache, key="bob"), call)
    assert status == "hit" and call.calls == 1


async def test_entries_expire_on_the_injected_clocks() -> None:
    clock = FakeClock()
    cache = make_cache(MemoryStateStore(clock), clock, ttl_s=10)
    call = CountingCall()
    await cache.complete(await prepare(cache), call)
    clock.advance(9)
    assert (await cache.complete(await prepare(cache), call))[1] == "hit"
    clock.advance(2)  # past the TTL in both tiers
    assert (await cache.complete(await prepare(cache), call))[1] == "miss"
    assert call.calls == 2


async def test_ttl_header_overrides_the_default() -> None:
    clock = FakeClock()
    cache = make_cache(MemoryStateStore(clock), clock, ttl_s=300)
    call = CountingCall()
    await cache.complete(await prepare(cache, headers={"x-interlock-cache-ttl": "5"}), call)
    clock.advance(6)
    assert (await cache.complete(await prepare(cache), call))[1] == "miss"


async def test_no_cache_refreshes_and_no_store_bypasses() -> None:
    cache = make_cache(MemoryStateStore(), l2_enabled=False)
    stale, fresh = CountingCall(), CountingCall()
    await cache.complete(await prepare(cache), stale)
    _, status = await cache.complete(
        await prepare(cache, headers={"cache-control": "no-cache"}), fresh
    )
    assert status == "miss" and fresh.calls == 1
    assert await cache.prepare("alice", "sim", chat_body(), {"cache-control": "no-store"}) is None


async def test_unreplayable_answers_are_served_but_not_stored() -> None:
    cache = make_cache(MemoryStateStore(), l2_enabled=False)
    call = CountingCall()
    call.result["choices"][0]["message"]["audio"] = {"id": "a"}
    await cache.complete(await prepare(cache), call)
    await cache.complete(await prepare(cache), call)
    assert call.calls == 2 and cache.stats.fills_skipped == 2


async def test_invalidation_reaches_every_instance(store_harness: StoreHarness) -> None:
    clock = store_harness.clock
    a = make_cache(store_harness.store, clock, generation_ttl_s=1.0)
    b = make_cache(store_harness.new_store(), clock, generation_ttl_s=1.0)
    call = CountingCall()
    await a.complete(await prepare(a), call)
    assert (await b.complete(await prepare(b), call))[1] == "hit"  # now in b's local tier too

    await a.invalidate(model="sim")
    assert (await a.complete(await prepare(a), call))[1] == "miss"  # at once where bumped
    assert call.calls == 2
    clock.advance(1.0)  # b trusts its generations for generation_ttl_s
    assert await b.lookup(await prepare(b)) is not None  # a's new answer, not the old one
    assert b.stats.hits_l2 == 2

    await b.invalidate(namespace="key:alice")
    clock.advance(1.0)
    assert await a.lookup(await prepare(a)) is None
    assert await a.lookup(await prepare(a, key="bob")) is None  # bob never had one
    await a.complete(await prepare(a, key="bob"), call)
    await a.invalidate(namespace=a.policy.namespace("alice"))
    assert await a.lookup(await prepare(a, key="bob")) is not None  # bob untouched


async def test_invalidation_frees_local_memory_at_once() -> None:
    cache = make_cache(MemoryStateStore(), l2_enabled=False)
    await cache.complete(await prepare(cache), CountingCall())
    assert cache.gauges()["l1_entries"] == 1
    await cache.invalidate(namespace="key:alice")
    assert cache.gauges()["l1_entries"] == 0


async def test_answer_computed_across_an_invalidation_is_not_served() -> None:
    cache = make_cache(MemoryStateStore(), l2_enabled=False)
    gate = asyncio.Event()
    call = CountingCall(gate=gate)
    req = await prepare(cache)
    task = asyncio.create_task(cache.complete(req, call))
    await asyncio.sleep(0)
    await cache.invalidate(model="sim")  # the model changed while answering
    gate.set()
    await task
    assert await cache.lookup(await prepare(cache)) is None


# -- coalescing in one process ------------------------------------------------------


async def test_identical_concurrent_requests_call_upstream_once() -> None:
    cache = make_cache(MemoryStateStore(), l2_enabled=False)
    gate = asyncio.Event()
    call = CountingCall(gate=gate)
    tasks = [asyncio.create_task(cache.complete(await prepare(cache), call)) for _ in range(20)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert call.calls == 1
    assert sorted(status for _, status in results) == ["coalesced"] * 19 + ["miss"]
    texts = {r["choices"][0]["message"]["content"] for r, _ in results}
    assert texts == {"Hello there, friend."}
    assert len({id(r) for r, _ in results}) == 20  # each caller owns its dict
    assert cache.stats.coalesced == 19


class ScriptedCall:
    """Call k waits at ``gates[k-1]``; the first ``failures`` calls then fail."""

    def __init__(self, failures: int):
        self.failures = failures
        self.gates = [asyncio.Event() for _ in range(4)]
        self.inner = CountingCall()

    async def __call__(self) -> dict[str, Any]:
        number = self.inner.calls + 1
        result = await self.inner()
        await self.gates[number - 1].wait()
        if number <= self.failures:
            raise UpstreamTimeout(f"call {number} failed")
        return result


async def start_wave(cache: ResponseCache, call: ScriptedCall, n: int) -> list[asyncio.Task[Any]]:
    """n identical requests: one leading at its gate, n - 1 following."""
    tasks = [asyncio.create_task(cache.complete(await prepare(cache), call)) for _ in range(n)]
    await until(lambda: cache.gauges()["unary_followers_waiting"] == n - 1)
    return tasks


async def fail_first_leader(cache: ResponseCache, call: ScriptedCall, n: int) -> None:
    """Let the first call fail; wait until the fallbacks have regrouped behind one call."""
    call.gates[0].set()
    await until(lambda: call.inner.calls == 2)
    await until(lambda: cache.gauges()["unary_followers_waiting"] == n - 2)


async def test_followers_fall_back_onto_one_new_call_when_the_leader_fails() -> None:
    cache = make_cache(MemoryStateStore(), l2_enabled=False)
    call = ScriptedCall(failures=1)
    leader, *followers = await start_wave(cache, call, 4)
    await fail_first_leader(cache, call, 4)
    with pytest.raises(UpstreamTimeout, match="call 1"):
        await leader
    call.gates[1].set()
    async with asyncio.timeout(2):  # bounded: nobody hangs on a dead leader
        results = await asyncio.gather(*followers)
    assert sorted(status for _, status in results) == ["coalesced", "coalesced", "miss"]
    assert call.inner.calls == 2 and cache.stats.fallbacks == 3


async def test_a_second_failure_reaches_every_follower_as_the_upstream_error() -> None:
    cache = make_cache(MemoryStateStore(), l2_enabled=False)
    call = ScriptedCall(failures=2)
    tasks = await start_wave(cache, call, 4)
    await fail_first_leader(cache, call, 4)
    call.gates[1].set()
    async with asyncio.timeout(2):
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert [str(o) for o in outcomes] == ["call 1 failed"] + ["call 2 failed"] * 3
    assert all(isinstance(o, UpstreamTimeout) for o in outcomes)
    assert call.inner.calls == 2  # not one call per waiting request


# -- coalescing across instances ------------------------------------------------------


async def test_second_instance_waits_for_the_first_instead_of_calling(
    store_harness: StoreHarness,
) -> None:
    gate = asyncio.Event()
    call = CountingCall(gate=gate)
    a = make_cache(store_harness.store, store_harness.clock)
    a_task = asyncio.create_task(a.complete(await prepare(a), call))
    await until(lambda: call.calls == 1)  # a holds the lock and is calling upstream

    async def while_b_waits(polls: int) -> None:
        if polls == 2:
            gate.set()
            await a_task

    sleep = RecordingSleep(while_b_waits)
    b = make_cache(store_harness.new_store(), store_harness.clock, sleep=sleep)
    result, status = await b.complete(await prepare(b), call)
    assert status == "coalesced" and call.calls == 1
    assert result["usage"]["completion_tokens"] == 7
    assert b.stats.coalesced_remote == 1
    assert sleep.slept[:2] == [0.05, 0.1]  # backing off


async def test_the_wait_is_bounded_then_the_instance_calls_itself(
    store_harness: StoreHarness,
) -> None:
    sleep = RecordingSleep()
    b = make_cache(store_harness.store, store_harness.clock, sleep=sleep, remote_wait_s=2.0)
    req = await prepare(b)
    await store_harness.store.set("lock:" + req.key, b"another-instance", ttl_s=30)
    call = CountingCall()
    _, status = await b.complete(req, call)
    assert status == "miss" and call.calls == 1
    assert sum(sleep.slept) == pytest.approx(2.0)
    assert max(sleep.slept) <= 0.5


async def test_a_released_lock_without_an_answer_ends_the_wait(
    store_harness: StoreHarness,
) -> None:
    async def holder_gives_up(polls: int) -> None:
        await store_harness.store.delete("lock:" + req.key)

    sleep = RecordingSleep(holder_gives_up)
    b = make_cache(store_harness.store, store_harness.clock, sleep=sleep)
    req = await prepare(b)
    await store_harness.store.set("lock:" + req.key, b"another-instance", ttl_s=30)
    _, status = await b.complete(req, CountingCall())
    assert status == "miss" and len(sleep.slept) == 1
