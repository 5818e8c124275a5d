"""The overview's live figures: differences between scrapes of the
gateway's own metrics over a window, on an injected clock."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric

from interlock.console.overview import MetricsWindow, histogram_quantile, read_scrape
from tests.support.clock import FakeClock


class FakeGateway:
    """The metric families the overview reads, under their real names."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "interlock_requests", "", ["route", "model", "deployment", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.cache = Counter("interlock_cache_requests", "", ["result"], registry=self.registry)
        self.added = Histogram(
            "interlock_gateway_added_seconds", "", buckets=(0.001, 0.002, 0.004, 0.008),
            registry=self.registry,
        )  # fmt: skip

    def scrape(self) -> list[Metric]:
        return list(self.registry.collect())

    def serve(self, n: int, status: str = "200", added_s: float = 0.0015) -> None:
        for _ in range(n):
            self.requests.labels("/v1/chat/completions", "m", "d", status).inc()
            self.added.observe(added_s)


def test_quantiles_interpolate_inside_the_bucket() -> None:
    buckets = {0.001: 0.0, 0.002: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.0015)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.00199)
    assert histogram_quantile(0.5, {0.001: 0.0, math.inf: 0.0}) is None
    # Beyond the highest finite bound, the bound is all one can say.
    assert histogram_quantile(0.99, {0.001: 0.0, math.inf: 5.0}) == pytest.approx(0.001)


def test_the_first_poll_is_since_start_then_a_window() -> None:
    gateway, clock = FakeGateway(), FakeClock(100.0)
    window = MetricsWindow(window_s=60, clock=clock)
    gateway.serve(10)
    first = window.observe(gateway.scrape())
    assert first["window_s"] is None and first["requests"] == 10
    assert first["requests_per_s"] is None  # no interval yet

    clock.now += 10
    gateway.serve(40)
    gateway.serve(10, status="503", added_s=0.006)
    gateway.serve(5, status="429")
    figures = window.observe(gateway.scrape())
    assert figures["window_s"] == 10
    assert figures["requests"] == 55
    assert figures["requests_per_s"] == pytest.approx(5.5)
    assert figures["error_rate"] == pytest.approx(10 / 55)
    assert figures["refused_rate"] == pytest.approx(5 / 55)
    assert 1.0 < figures["added_latency"]["p50_ms"] < 2.0
    assert 4.0 < figures["added_latency"]["p99_ms"] <= 8.0


def test_old_scrapes_leave_the_window() -> None:
    gateway, clock = FakeGateway(), FakeClock(100.0)
    window = MetricsWindow(window_s=60, clock=clock)
    gateway.serve(1000)  # long ago
    window.observe(gateway.scrape())
    clock.now += 120
    window.observe(gateway.scrape())
    clock.now += 30
    gateway.serve(30)
    figures = window.observe(gateway.scrape())
    assert figures["requests"] == 30 and figures["window_s"] == 30
    assert figures["requests_per_s"] == pytest.approx(1.0)


def test_cache_hit_rate_counts_hits_and_coalesced() -> None:
    gateway, clock = FakeGateway(), FakeClock(100.0)
    window = MetricsWindow(clock=clock)
    window.observe(gateway.scrape())
    clock.now += 2
    for result, n in (("hit", 3), ("coalesced", 1), ("miss", 4)):
        gateway.cache.labels(result).inc(n)
    assert window.observe(gateway.scrape())["cache_hit_rate"] == pytest.approx(0.5)


def test_a_scrape_sums_over_labels() -> None:
    gateway = FakeGateway()
    gateway.serve(3)
    gateway.requests.labels("/v1/messages", "m2", "d2", "500").inc(2)
    scrape = read_scrape(gateway.scrape(), at=0.0)
    assert scrape.requests == 5 and scrape.server_errors == 2


# Two worker processes serve, a third (any worker answering the console) reads.
WORKER = """
import sys
from interlock.telemetry.metrics import Metrics
metrics = Metrics()
for _ in range(int(sys.argv[1])):
    metrics.requests.labels("/v1/chat/completions", "m", "d", "200").inc()
    metrics.gateway_added.observe(0.0015)
"""
READER = """
from interlock.console.overview import read_scrape
from interlock.telemetry.metrics import Metrics
metrics = Metrics()
scrape = read_scrape(metrics.families([metrics.requests, metrics.gateway_added]), 0.0)
print(scrape.requests, max(scrape.buckets["interlock_gateway_added_seconds"].values()))
"""


def test_worker_processes_are_summed(tmp_path: Path) -> None:
    # prometheus-client picks its value store at import: fresh interpreters.
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": ""}

    def run(script: str, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", script, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    run(WORKER, "3")
    run(WORKER, "4")
    assert run(READER).split() == ["7.0", "7.0"]
