"""Scenarios (1)-(5) of the suite, run against direct, Interlock and LiteLLM (5: Interlock).

Within a repetition the three sides run back to back (direct, Interlock,
LiteLLM), so drift hits all alike and ratios can be taken pair by pair.
"""

from __future__ import annotations

import math
import subprocess
import time
from dataclasses import replace

from lineup import Curves, Lineup, Side, StreamShape, SuiteSettings
from loadgen import StreamLoad, StreamResult, finish_ttft, start_ttft
from memory import MIB, MemorySampler
from procs import BenchError, Service, rss_bytes
from stand import WrkLoad, mock_stats
from suite_report import Figure, Figures

__all__ = [
    "DEFAULTS",
    "cache_hits",
    "hold_streams",
    "latency_c1",
    "pipeline_cost",
    "streaming",
    "throughput",
]

GATEWAYS = ("interlock", "litellm")
DEFAULTS = "interlock-defaults"  # the c=1 curve of Interlock with its shipped defaults
_HIT_SIDES = ("direct", "interlock")
CACHEABLE_BODY = (
    '{"model":"mock","messages":[{"role":"user","content":"Say hello to the benchmark."}],'
    '"max_tokens":16,"temperature":0}'
)
UNIQUE_BODY = CACHEABLE_BODY.replace("benchmark.", "benchmark UNIQUE.")
_WARMUP_S = 2.0  # wrk warm-up per side; a cold LiteLLM at c=128 answers nothing in 1 s


def _added(figure: Figure, side: str, value: float, direct: Figure) -> None:
    """``value`` minus the direct figure of the same repetition."""
    figure.add(side, value - direct.values["direct"][-1])


def latency_c1(lineup: Lineup, figures: Figures, curves: Curves) -> None:
    """(1) One connection: the latency each gateway adds to a request; for
    Interlock also with its shipped defaults, right after the tuned one."""
    sc = "(1) c=1"
    p50 = figures.new("c1.p50", sc, "latency p50", "ms")
    p99 = figures.new("c1.p99", sc, "latency p99", "ms")
    added50 = figures.new("c1.added_p50", sc, "added latency p50", "ms", sides=GATEWAYS)
    added99 = figures.new("c1.added_p99", sc, "added latency p99", "ms", sides=GATEWAYS)
    defaults = lineup.variants.get("defaults")
    shipped = None if defaults is None else _ShippedDefaults(defaults, figures, sc, p50, p99)
    for side in [*lineup.each_side(), *([defaults] if defaults else [])]:
        lineup.wrk(side, 1, _WARMUP_S)

    for side in lineup.rounds():
        result, _ = lineup.wrk(side, 1, lineup.settings.duration_s)
        p50.add(side.name, result.p50_ms)
        p99.add(side.name, result.p99_ms)
        curves.c1_cdf_ms[side.name] = list(result.cdf_ms)
        if side.name != "direct":
            _added(added50, side.name, result.p50_ms, p50)
            _added(added99, side.name, result.p99_ms, p99)
        if side.name == "interlock" and shipped is not None:
            shipped.run(lineup, curves)


class _ShippedDefaults:
    """(1)'s rows for the Interlock process run with its shipped defaults
    (suite.py's "defaults" variant), in Interlock's column."""

    def __init__(self, side: Side, figures: Figures, sc: str, p50: Figure, p99: Figure):
        self.side = side
        sides = ("interlock",)
        label = "latency {}, shipped defaults"
        self.p50 = figures.new("c1.defaults_p50", sc, label.format("p50"), "ms", sides=sides)
        self.p99 = figures.new("c1.defaults_p99", sc, label.format("p99"), "ms", sides=sides)
        added = "added " + label
        self.added50 = figures.new("c1.defaults_added_p50", sc, added.format("p50"), "ms", 3, sides)
        self.added99 = figures.new("c1.defaults_added_p99", sc, added.format("p99"), "ms", 3, sides)
        self._direct50, self._direct99 = p50, p99

    def run(self, lineup: Lineup, curves: Curves) -> None:
        """One c=1 run, right after the tuned Interlock's of the same repetition."""
        result, _ = lineup.wrk(self.side, 1, lineup.settings.duration_s)
        curves.c1_cdf_ms[DEFAULTS] = list(result.cdf_ms)
        self.p50.add("interlock", result.p50_ms)
        self.p99.add("interlock", result.p99_ms)
        _added(self.added50, "interlock", result.p50_ms, self._direct50)
        _added(self.added99, "interlock", result.p99_ms, self._direct99)


def throughput(lineup: Lineup, figures: Figures) -> None:
    """(2) Closed-loop load at each concurrency: requests/s and latency."""
    for c in lineup.settings.concurrencies:
        sc = f"(2) c={c}"
        rps = figures.new(f"c{c}.rps", sc, "throughput", "req/s", 0)
        p50 = figures.new(f"c{c}.p50", sc, "latency p50", "ms")
        p99 = figures.new(f"c{c}.p99", sc, "latency p99", "ms")
        share = figures.new(f"c{c}.share", sc, "share of direct throughput", "%", 1, GATEWAYS)
        cpu = figures.new(f"c{c}.cpu", sc, "server CPU per request", "µs", 0)
        for side in lineup.each_side():
            lineup.wrk(side, c, _WARMUP_S)

        for side in lineup.rounds():
            result, cpu_s = lineup.wrk(side, c, lineup.settings.duration_s)
            for figure, value in ((rps, result.rps), (p50, result.p50_ms), (p99, result.p99_ms)):
                figure.add(side.name, value)
            cpu.add(side.name, 1e6 * cpu_s / result.requests)
            if side.name != "direct":
                share.add(side.name, 100 * result.rps / rps.values["direct"][-1])


def streaming(lineup: Lineup, figures: Figures, curves: Curves) -> None:
    """(3) N concurrent streams: TTFT overhead, chunk gaps (batching shows), stream time."""
    for shape in lineup.settings.stream_loads:
        sc = f"(3) {shape.streams} streams"
        key = f"s{shape.streams}"
        ttft50 = figures.new(f"{key}.ttft_p50", sc, "TTFT p50", "ms")
        ttft99 = figures.new(f"{key}.ttft_p99", sc, "TTFT p99", "ms")
        over50 = figures.new(f"{key}.over_p50", sc, "TTFT overhead p50", "ms", sides=GATEWAYS)
        over99 = figures.new(f"{key}.over_p99", sc, "TTFT overhead p99", "ms", sides=GATEWAYS)
        gap50 = figures.new(f"{key}.gap_p50", sc, "inter-chunk gap p50", "ms")
        gap99 = figures.new(f"{key}.gap_p99", sc, "inter-chunk gap p99", "ms")
        glued = figures.new(f"{key}.coalesced", sc, "chunks coalesced (gap < 1 ms)", "%", 1)
        total = figures.new(f"{key}.total_p50", sc, "stream time p50", "ms", 1)
        done = figures.new(f"{key}.streams", sc, "streams completed (counted)", "", 0)
        errors = figures.new(f"{key}.errors", sc, "stream errors", "", 0, compare=False)
        cpu = figures.new(f"{key}.cpu", sc, "server CPU per chunk", "µs", 1)

        for side in lineup.rounds():
            result, cpu_s = lineup.stream(side, lineup.stream_load(side, shape))
            pairs = (
                (ttft50, result.p50_ms), (ttft99, result.p99_ms),
                (gap50, result.gap_p50_ms), (gap99, result.gap_p99_ms),
                (glued, result.coalesced_pct), (total, result.total_p50_ms),
                (done, result.streams), (errors, result.errors),
            )  # fmt: skip
            for figure, value in pairs:
                figure.add(side.name, value)
            lineup.record_errors(sc, side, result)
            cpu.add(side.name, _per_chunk(cpu_s, result, shape))
            if side.name != "direct":
                _added(over50, side.name, result.p50_ms, ttft50)
                _added(over99, side.name, result.p99_ms, ttft99)
            if shape == lineup.settings.stream_loads[0]:
                curves.ttft_cdf_ms[side.name] = list(result.ttft_cdf_ms)


def cache_hits(lineup: Lineup, figures: Figures) -> None:
    """(5) The same cacheable request (temperature 0) answered from Interlock's
    response cache, against the same request through Interlock without a cache."""
    cached = lineup.variants.get("cache")
    if cached is None:
        return
    sc = "(5) cache hit"
    body = WrkLoad(CACHEABLE_BODY)
    hit_load = WrkLoad(CACHEABLE_BODY, from_cache=True)
    direct, uncached = lineup.sides[0], lineup.sides[1]
    p50 = figures.new("hit.p50", sc, "c=1 latency p50, hit", "ms", sides=_HIT_SIDES)
    p99 = figures.new("hit.p99", sc, "c=1 latency p99, hit", "ms", sides=_HIT_SIDES)
    rps = figures.new("hit.rps", sc, "c=32 throughput, hit", "req/s", 0, sides=_HIT_SIDES)
    cpu = figures.new("hit.cpu", sc, "server CPU per request, c=32, hit", "µs", 0, ("interlock",))
    gain = figures.new("hit.gain", sc, "c=32 throughput, hit / uncached", "x", 2, ("interlock",))
    for side, load in ((direct, body), (uncached, body), (cached, hit_load)):
        lineup.wrk(side, 32, _WARMUP_S, load)  # the first fills the cache
    for _ in range(lineup.settings.reps):
        one, _ = lineup.wrk(direct, 1, lineup.settings.duration_s, body)
        many, _ = lineup.wrk(direct, 32, lineup.settings.duration_s, body)
        base, _ = lineup.wrk(uncached, 32, lineup.settings.duration_s, body)
        hit_one, _ = lineup.wrk(cached, 1, lineup.settings.duration_s, hit_load)
        hit, hit_cpu = lineup.wrk(cached, 32, lineup.settings.duration_s, hit_load)
        for side, c1, c32 in (("direct", one, many), ("interlock", hit_one, hit)):
            p50.add(side, c1.p50_ms)
            p99.add(side, c1.p99_ms)
            rps.add(side, c32.rps)
        cpu.add("interlock", 1e6 * hit_cpu / hit.requests)
        gain.add("interlock", hit.rps / base.rps)


def pipeline_cost(lineup: Lineup, figures: Figures) -> None:
    """The full pipeline against the bare proxy path, c=32, same requests.

    Every body is different and cacheable (temperature 0), so the full
    gateway looks up, misses and fills its cache on every request; the bare
    one (the gateway of (1)-(4)) has no cache, guardrails or access log.
    """
    full = lineup.variants.get("full")
    if full is None:
        return
    sc = "pipeline cost"
    sides = ("interlock",)
    bare_rps = figures.new("pipe.bare", sc, "c=32 throughput, bare proxy path", "req/s", 0, sides)
    full_rps = figures.new("pipe.full", sc, "c=32 throughput, full pipeline", "req/s", 0, sides)
    bare_cpu = figures.new("pipe.bare_cpu", sc, "CPU per request, bare", "µs", 0, sides)
    full_cpu = figures.new("pipe.full_cpu", sc, "CPU per request, full", "µs", 0, sides)
    cost = figures.new("pipe.cost", sc, "throughput lost to the full pipeline", "%", 1, sides)
    load = WrkLoad(UNIQUE_BODY, unique=True)
    bare = lineup.sides[1]
    for side in (bare, full):
        lineup.wrk(side, 32, _WARMUP_S, load)
    for _ in range(lineup.settings.reps):
        plain, plain_s = lineup.wrk(bare, 32, lineup.settings.duration_s, load)
        every, every_s = lineup.wrk(full, 32, lineup.settings.duration_s, load)
        bare_rps.add("interlock", plain.rps)
        full_rps.add("interlock", every.rps)
        bare_cpu.add("interlock", 1e6 * plain_s / plain.requests)
        full_cpu.add("interlock", 1e6 * every_s / every.requests)
        cost.add("interlock", 100 * (1 - every.rps / plain.rps))


def _per_chunk(cpu_s: float, result: StreamResult, shape: StreamShape) -> float:
    """Server CPU per delivered chunk, over the whole run (warm-up streams included)."""
    chunks = result.opened_streams * shape.chunks
    return 1e6 * cpu_s / chunks if chunks else math.nan


def hold_streams(lineup: Lineup, figures: Figures, curves: Curves, streams: int) -> None:
    """(4) ``streams`` long streams opened once and held: memory, errors, how many at once."""
    shape = replace(lineup.settings.hold, streams=streams)
    sc = f"(4) {streams} open streams"
    new = figures.new
    opened = new("hold.peak_open", sc, "streams open at once (client)", "", 0)
    upstream = new("hold.peak_upstream", sc, "streams open at once (at the mock)", "", 0)
    until = new("hold.until_all_open", sc, "time until all were open", "s", 1)
    errors = new("hold.errors", sc, "stream errors", "", 0, compare=False)
    idle = new("hold.rss_idle", sc, "server RSS before", "MiB", 0)
    peak = new("hold.rss_peak", sc, "server RSS at peak", "MiB", 0)
    per_stream = new("hold.per_stream", sc, "memory per open stream", "KiB", 1)
    ttft99 = new("hold.ttft_p99", sc, "TTFT p99 while opening", "ms", 0)
    for side in lineup.each_side():
        lineup.settle()
        result, sampler, rss_before = _hold_once(lineup, side, shape)
        lineup.record_errors(sc, side, result)
        if side.name == "direct" and result.errors:
            raise BenchError(
                f"the load generator could not hold {streams} streams to the bare mock "
                f"(peak open {result.peak_open}): {result.error_kinds}"
            )
        at_mock = mock_stats(lineup.mock)["peak_open_streams"]
        seconds = sampler.seconds_until_open(streams)
        growth = max(sampler.peak_rss_mib - rss_before, 0.0)
        values = (
            (opened, result.peak_open), (upstream, at_mock), (errors, result.errors),
            (until, math.nan if seconds is None else seconds), (idle, rss_before),
            (peak, sampler.peak_rss_mib), (ttft99, result.p99_ms),
            (per_stream, 1024 * growth / max(result.peak_open, 1)),
        )  # fmt: skip
        for figure, value in values:
            figure.add(side.name, value)
        curves.memory[side.name] = sampler.samples


def _hold_once(
    lineup: Lineup, side: Side, shape: StreamShape
) -> tuple[StreamResult, MemorySampler, float]:
    s = lineup.settings
    load = StreamLoad(
        side.url, side.key, shape.model, shape.streams, shape.chunks, 0.0,
        spread_s=s.hold_ramp_s, once=True, deadline_s=s.hold_open_s + 30,
        allow_errors=True, at_least=side.lenient,
    )  # fmt: skip
    mock_stats(lineup.mock, "/hold/reset")
    mock_stats(lineup.mock, "/stats/reset")
    rss_before = rss_bytes(side.server.pid) / MIB

    def open_streams() -> int:
        return mock_stats(lineup.mock)["open_streams"]

    with MemorySampler(side.server.pid, open_streams) as sampler:
        client = start_ttft(load, lineup.layout)
        try:
            _release_when_open(lineup.mock, client, shape.streams, s)
        finally:
            mock_stats(lineup.mock, "/hold/release")
        result = finish_ttft(client, load)
    return result, sampler, rss_before


def _release_when_open(
    mock: Service, client: subprocess.Popen[str], streams: int, s: SuiteSettings
) -> None:
    """Return once ``streams`` streams have been open for ``hold_dwell_s``, or at the bound."""
    deadline = time.monotonic() + s.hold_open_s
    while time.monotonic() < deadline and client.poll() is None:
        if mock_stats(mock)["open_streams"] >= streams:
            time.sleep(s.hold_dwell_s)
            return
        time.sleep(0.25)
