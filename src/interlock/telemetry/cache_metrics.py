"""Cache figures read at scrape time, so the request path pays nothing for them.

The cache keeps plain counters (``CacheStats``) and sizes (``gauges()``);
``CacheCollector`` turns them into Prometheus families when ``/metrics`` is
read, and ``CacheMetricsMirror`` copies them into the metric files that
worker processes share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CacheCollector", "CacheMetricsMirror"]


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


class CacheMetricsMirror:
    """The same figures as ``CacheCollector``, for worker processes
    (``PROMETHEUS_MULTIPROC_DIR``), where only metrics kept in the shared
    files reach a scrape: each worker copies its cache's figures into them
    when it is scraped and every ``interval_s`` (``run``), so a scrape of
    any worker sums every worker's, at most ``interval_s`` old."""

    def __init__(self, cache: Any, registry: CollectorRegistry):
        self._cache = cache
        self._saved_tokens = Counter(
            "interlock_cache_saved_tokens",
            "Tokens not sent upstream thanks to the cache.",
            ["type"],
            registry=registry,
        )
        self._saved_usd = Counter(
            "interlock_cache_saved_usd",
            "Estimated upstream cost the cache saved (USD).",
            registry=registry,
        )
        self._bytes = Gauge(
            "interlock_cache_bytes",
            "Bytes held by the in-process cache tier.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self._entries = Gauge(
            "interlock_cache_entries",
            "Entries held by the in-process cache tier.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self._copied = (0, 0, 0.0)

    def sync(self) -> None:
        stats = self._cache.stats
        now = (stats.saved_prompt_tokens, stats.saved_completion_tokens, stats.saved_usd)
        before = self._copied
        # Counters only take increments: add what was saved since the last copy.
        if now[0] > before[0]:
            self._saved_tokens.labels("input").inc(now[0] - before[0])
        if now[1] > before[1]:
            self._saved_tokens.labels("output").inc(now[1] - before[1])
        if now[2] > before[2]:
            self._saved_usd.inc(now[2] - before[2])
        self._copied = now
        sizes = self._cache.gauges()
        self._bytes.set(sizes["l1_bytes"])
        self._entries.set(sizes["l1_entries"])

    async def run(self, interval_s: float = 1.0) -> None:
        while True:
            self.sync()
            await asyncio.sleep(interval_s)
