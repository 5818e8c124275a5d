"""``CacheMetricsMirror`` copies the cache's own figures into Prometheus
metrics (the ones worker processes share): increments for counters, values
for sizes, nothing twice."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from interlock.telemetry.cache_metrics import CacheMetricsMirror


@dataclass
class Stats:
    saved_prompt_tokens: int = 0
    saved_completion_tokens: int = 0
    saved_usd: float = 0.0


@dataclass
class FakeCache:
    stats: Stats = field(default_factory=Stats)
    sizes: dict[str, int] = field(default_factory=lambda: {"l1_bytes": 0, "l1_entries": 0})

    def gauges(self) -> dict[str, int]:
        return self.sizes


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_sync_adds_what_was_saved_since_the_last_copy() -> None:
    registry = CollectorRegistry()
    cache = FakeCache()
    mirror = CacheMetricsMirror(cache, registry)
    cache.stats.saved_prompt_tokens = 100
    cache.stats.saved_completion_tokens = 40
    cache.stats.saved_usd = 0.25
    cache.sizes = {"l1_bytes": 2048, "l1_entries": 3}
    mirror.sync()
    mirror.sync()  # nothing new: nothing added
    cache.stats.saved_prompt_tokens = 130
    mirror.sync()
    assert _value(registry, "interlock_cache_saved_tokens_total", type="input") == 130
    assert _value(registry, "interlock_cache_saved_tokens_total", type="output") == 40
    assert _value(registry, "interlock_cache_saved_usd_total") == 0.25
    assert _value(registry, "interlock_cache_bytes") == 2048
    assert _value(registry, "interlock_cache_entries") == 3
