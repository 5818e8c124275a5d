"""The in-process tier: bounded by count and by bytes, expiring on a fake clock."""

from __future__ import annotations

import gc

from interlock.cache.l1 import LocalTier
from tests.state.harness import FakeClock


def test_count_bound_evicts_least_recently_used() -> None:
    tier = LocalTier(max_entries=3, max_bytes=10_000, clock=FakeClock())
    for key in "abc":
        tier.put(key, b"v", 60)
    assert tier.get("a") == b"v"  # now b is the least recently used
    tier.put("d", b"v", 60)
    assert len(tier) == 3
    assert tier.get("b") is None
    assert {k for k in "acd" if tier.get(k)} == {"a", "c", "d"}
    assert tier.evictions == 1


def test_byte_bound_evicts_until_the_total_fits() -> None:
    tier = LocalTier(max_entries=100, max_bytes=100, clock=FakeClock())
    for key in "abcd":
        tier.put(key, b"x" * 30, 60)  # the 4th would make 120 bytes
    assert tier.total_bytes == 90
    assert tier.get("a") is None
    tier.put("big", b"x" * 80, 60)  # needs three of the 30-byte entries gone
    assert tier.total_bytes == 80 and len(tier) == 1
    assert tier.get("big") is not None


def test_a_value_bigger_than_the_whole_budget_is_refused_not_stored() -> None:
    tier = LocalTier(max_entries=10, max_bytes=100, clock=FakeClock())
    tier.put("small", b"x" * 10, 60)
    assert tier.put("huge", b"x" * 101, 60) is False
    assert tier.get("huge") is None
    assert tier.get("small") is not None  # nothing was evicted for it


def test_replacing_a_key_keeps_the_byte_count_exact() -> None:
    tier = LocalTier(max_entries=10, max_bytes=100, clock=FakeClock())
    tier.put("k", b"x" * 40, 60)
    tier.put("k", b"x" * 10, 60)
    assert tier.total_bytes == 10 and len(tier) == 1


def test_entries_expire_on_the_injected_clock() -> None:
    clock = FakeClock()
    tier = LocalTier(max_entries=10, max_bytes=100, clock=clock)
    tier.put("k", b"v", 10)
    clock.advance(9.9)
    assert tier.get("k") == b"v"
    clock.advance(0.1)
    assert tier.get("k") is None
    assert tier.total_bytes == 0 and len(tier) == 0
    assert tier.put("k", b"v", 0) is False


def test_drop_by_namespace_or_model() -> None:
    tier = LocalTier(max_entries=10, max_bytes=1000, clock=FakeClock())
    tier.put("1", b"a", 60, namespace="alice", model="sim")
    tier.put("2", b"b", 60, namespace="alice", model="other")
    tier.put("3", b"c", 60, namespace="bob", model="sim")
    assert tier.drop(namespace="alice") == 2
    assert tier.get("3") == b"c"
    assert tier.drop(model="sim") == 1
    assert len(tier) == 0 and tier.total_bytes == 0


def test_entries_leave_the_garbage_collector_s_sight() -> None:
    """A full cache must not make every full collection walk each entry."""
    tier = LocalTier(max_entries=100, max_bytes=1 << 20)
    for i in range(100):
        tier.put(f"k{i}", b"v" * i, 60.0, namespace="chat", model="m")
    gc.collect()
    assert not any(gc.is_tracked(slot) for slot in tier._slots.values())
