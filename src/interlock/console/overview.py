"""The overview's live figures, read from the gateway's own Prometheus
metrics (the values ``/metrics`` serves, summed over workers), not a second
set of counters. Only the five families it shows are read
(``Metrics.families``): writing and parsing the whole scrape cost 100 ms of
the event loop per poll on a gateway with a few thousand series.

Counters and histograms only ever grow, so a rate or a percentile "now" is
the difference between two scrapes. ``MetricsWindow`` keeps the scrapes of
the last ``window_s`` seconds (taken when the overview is polled, bounded)
and compares the newest with the oldest; with none older yet, the figures
are since the gateway started, and say so.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics_core import Metric

__all__ = ["MetricsWindow", "Scrape", "histogram_quantile", "read_scrape"]

ADDED = "interlock_gateway_added_seconds"
TTFT = "gen_ai_server_time_to_first_token_seconds"
_REQUESTS = "interlock_requests_total"
_CACHE = "interlock_cache_requests_total"
_IN_FLIGHT = "interlock_in_flight_requests"
_CACHE_SERVED = frozenset({"hit", "coalesced"})
_HISTOGRAMS = (ADDED, TTFT)


@dataclass(slots=True)
class Scrape:
    """The counters the overview reads, summed over their labels."""

    at: float  # the window's clock
    requests: float = 0.0
    server_errors: float = 0.0  # status 5xx
    refused: float = 0.0  # status 429
    cache_served: float = 0.0
    cache_lookups: float = 0.0
    in_flight: float = 0.0
    # histogram name -> {upper bound: cumulative count}
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)


def read_scrape(families: Iterable[Metric], at: float) -> Scrape:
    """The figures of one reading of the metric families."""
    scrape = Scrape(at, buckets={name: {} for name in _HISTOGRAMS})
    for family in families:
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == _REQUESTS:
                scrape.requests += value
                status = labels.get("status", "")
                if status.startswith("5"):
                    scrape.server_errors += value
                elif status == "429":
                    scrape.refused += value
            elif name == _CACHE:
                scrape.cache_lookups += value
                if labels.get("result") in _CACHE_SERVED:
                    scrape.cache_served += value
            elif name == _IN_FLIGHT:
                scrape.in_flight += value
            elif name.endswith("_bucket"):
                histogram = scrape.buckets.get(name.removesuffix("_bucket"))
                if histogram is not None:
                    bound = float(labels["le"])
                    histogram[bound] = histogram.get(bound, 0.0) + value
    return scrape


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The ``q`` quantile of cumulative ``buckets`` (upper bound -> count), by
    linear interpolation inside the bucket, as PromQL's histogram_quantile.
    None with no observations."""
    bounds = sorted(buckets)
    if not bounds:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # the highest finite bound: all one can say
            inside = count - below
            share = (rank - below) / inside if inside > 0 else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


def _minus(newer: dict[float, float], older: dict[float, float]) -> dict[float, float]:
    return {bound: count - older.get(bound, 0.0) for bound, count in newer.items()}


class MetricsWindow:
    """Rates and percentiles over the last ``window_s`` seconds of polls."""

    def __init__(
        self,
        window_s: float = 60.0,
        keep: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.window_s = window_s
        self._clock = clock
        self._scrapes: deque[Scrape] = deque(maxlen=keep)

    def observe(self, families: Iterable[Metric]) -> dict[str, Any]:
        """Take a reading and answer the live figures."""
        now = self._clock()
        newest = read_scrape(families, now)
        self._scrapes.append(newest)
        while self._scrapes and self._scrapes[0].at < now - self.window_s:
            self._scrapes.popleft()
        oldest = self._scrapes[0]
        if oldest is newest:
            return _figures(newest, Scrape(now), None)
        return _figures(newest, oldest, newest.at - oldest.at)


def _figures(newest: Scrape, oldest: Scrape, seconds: float | None) -> dict[str, Any]:
    requests = newest.requests - oldest.requests
    lookups = newest.cache_lookups - oldest.cache_lookups

    def share(part: float, whole: float) -> float | None:
        return part / whole if whole > 0 else None

    def quantiles(name: str) -> dict[str, float | None]:
        buckets = _minus(newest.buckets.get(name, {}), oldest.buckets.get(name, {}))
        return {
            "p50_ms": _ms(histogram_quantile(0.5, buckets)),
            "p99_ms": _ms(histogram_quantile(0.99, buckets)),
        }

    return {
        "window_s": round(seconds, 1) if seconds is not None else None,
        "requests": int(requests),
        "requests_per_s": round(requests / seconds, 2) if seconds else None,
        "error_rate": share(newest.server_errors - oldest.server_errors, requests),
        "refused_rate": share(newest.refused - oldest.refused, requests),
        "cache_hit_rate": share(newest.cache_served - oldest.cache_served, lookups),
        "in_flight": int(newest.in_flight),
        "added_latency": quantiles(ADDED),
        "time_to_first_token": quantiles(TTFT),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def totals_of(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Today's ledger totals in the overview's terms."""
    for row in rows:
        return {
            "requests": row["requests"],
            "tokens": row["prompt_tokens"] + row["completion_tokens"],
            "cost_usd": round(row["cost_usd"], 6),
        }
    return {"requests": 0, "tokens": 0, "cost_usd": 0.0}
