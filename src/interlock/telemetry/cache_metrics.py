"""Cache figures read at scrape time, so the request path pays nothing for them.

The cache keeps plain counters (``CacheStats``) and sizes (``gauges()``);
this collector turns them into Prometheus families when ``/metrics`` is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CacheCollector"]


class CacheCollector(Collector):
    def __init__(self, cache: Any):
        self._cache = cache

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self._cache.stats
        saved = CounterMetricFamily(
            "interlock_cache_saved_tokens",
            "Tokens not sent upstream thanks to the cache.",
            labels=["type"],
        )
        saved.add_metric(["input"], stats.saved_prompt_tokens)
        saved.add_metric(["output"], stats.saved_completion_tokens)
        yield saved
        yield CounterMetricFamily(
            "interlock_cache_saved_usd",
            "Estimated upstream cost the cache saved (USD).",
            value=stats.saved_usd,
        )
        sizes = self._cache.gauges()
        yield GaugeMetricFamily(
            "interlock_cache_bytes",
            "Bytes held by the in-process cache tier.",
            value=sizes["l1_bytes"],
        )
        yield GaugeMetricFamily(
            "interlock_cache_entries",
            "Entries held by the in-process cache tier.",
            value=sizes["l1_entries"],
        )
