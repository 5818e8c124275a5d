"""What only the in-memory store promises: bounded memory on a fake clock."""

from __future__ import annotations

import pytest

from interlock.state import MemoryStateStore, build_state_store
from tests.state.harness import FakeClock


async def test_expired_keys_nobody_reads_are_purged() -> None:
    clock = FakeClock()
    store = MemoryStateStore(clock, purge_every_s=10)
    for i in range(100):
        await store.set(f"k{i}", b"v", ttl_s=1)
    assert len(store) == 100
    clock.advance(11)
    await store.set("fresh", b"v")  # writes run the periodic sweep
    assert len(store) == 1


async def test_key_count_is_bounded_by_evicting_the_oldest() -> None:
    store = MemoryStateStore(FakeClock(), max_keys=3)
    for key in ("a", "b", "c", "d"):
        await store.set(key, b"v")
    assert len(store) == 3
    assert await store.get("a") is None
    assert await store.get("d") == b"v"
    await store.set("d", b"w")  # overwriting an existing key evicts nothing
    assert len(store) == 3


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError):
        MemoryStateStore(max_keys=0)


def test_chooser_builds_the_memory_store_with_the_given_clock() -> None:
    store = build_state_store("memory", clock=FakeClock())
    assert isinstance(store, MemoryStateStore)


def test_chooser_requires_a_url_for_redis_and_a_known_backend() -> None:
    with pytest.raises(ValueError):
        build_state_store("redis")
    with pytest.raises(ValueError):
        build_state_store("etcd")  # type: ignore[arg-type]
