"""Scenarios (1)-(4) of the suite, each run against direct, Interlock and LiteLLM.

Within a repetition the three sides run back to back (direct, Interlock,
LiteLLM), so drift hits all alike and ratios can be taken pair by pair.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from loadgen import StreamLoad, StreamResult, WrkResult, finish_ttft, run_ttft, start_ttft
from memory import MIB, MemorySampler, Sample
from procs import BenchError, CoreLayout, Service, rss_bytes, tree_cpu_seconds
from stand import CHAT, checked_wrk, mock_stats
from suite_report import Figure, Figures

__all__ = [
    "Curves",
    "Lineup",
    "Side",
    "StreamShape",
    "SuiteSettings",
    "hold_streams",
    "latency_c1",
    "streaming",
    "throughput",
]

GATEWAYS = ("interlock", "litellm")
_WARMUP_S = 1.0
_DRAIN_S = 60.0
_QUIET_WINDOW_S = 0.3
_QUIET_CPU = 0.05  # a server using under 5 % of a core is idle


@dataclass(frozen=True)
class StreamShape:
    """How many concurrent streams, and what each looks like (served by the mock)."""

    streams: int
    chunks: int
    delay_ms: int
    hold: bool = False  # the mock holds each stream before its end until released

    @property
    def model(self) -> str:
        return f"mock-{'hold' if self.hold else 'stream'}-{self.chunks}x{self.delay_ms}"

    @property
    def length_s(self) -> float:
        return self.chunks * self.delay_ms / 1000

    def describe(self) -> str:
        return f"{self.streams} streams of {self.chunks} chunks {self.delay_ms} ms apart"


@dataclass(frozen=True)
class SuiteSettings:
    duration_s: float = 3.0
    reps: int = 3
    concurrencies: tuple[int, ...] = (32, 128)
    stream_loads: tuple[StreamShape, ...] = (StreamShape(100, 50, 20), StreamShape(1000, 50, 100))
    stream_duration_s: float = 3.0
    hold: StreamShape = StreamShape(10_000, 20, 2000, hold=True)
    hold_ramp_s: float = 5.0  # the client starts its streams over this long
    hold_open_s: float = 60.0  # the most a server gets to have them all open
    hold_dwell_s: float = 2.0  # all open this long before they are released

    def stream_models(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.model for s in (*self.stream_loads, self.hold)))


@dataclass(frozen=True)
class Side:
    """One column: the server that answers, and how to call it."""

    name: str  # "direct", "interlock" or "litellm"
    server: Service
    key: str
    lenient: bool = False  # stream errors are recorded, not fatal (an overloaded LiteLLM)

    @property
    def url(self) -> str:
        return self.server.url + CHAT


@dataclass
class Curves:
    """What the plot draws: latency CDFs and the memory of the hold runs."""

    c1_cdf_ms: dict[str, list[float]] = field(default_factory=dict)  # percentiles 1..99, 99.9
    ttft_cdf_ms: dict[str, list[float]] = field(default_factory=dict)  # percentiles 0..100
    memory: dict[str, list[Sample]] = field(default_factory=dict)


@dataclass
class Lineup:
    mock: Service
    sides: list[Side]
    layout: CoreLayout
    settings: SuiteSettings

    def wrk(self, side: Side, connections: int, seconds: float) -> tuple[WrkResult, float]:
        """One checked wrk run, and the CPU seconds the answering server spent on it."""
        self.settle()
        before = tree_cpu_seconds(side.server.pid)
        result = checked_wrk(self.mock, side.url, side.key, connections, seconds, self.layout)
        return result, tree_cpu_seconds(side.server.pid) - before

    def stream(self, side: Side, load: StreamLoad) -> tuple[StreamResult, float]:
        self.settle()
        before = tree_cpu_seconds(side.server.pid)
        result = run_ttft(load, self.layout)
        return result, tree_cpu_seconds(side.server.pid) - before

    def stream_load(self, side: Side, shape: StreamShape) -> StreamLoad:
        """Closed loop: each of N workers opens its next stream when one ends."""
        s = self.settings
        spread = shape.length_s  # staggered over one stream's length: no lock-step
        bound = spread + s.stream_duration_s + shape.length_s + 15 if side.lenient else 0
        return StreamLoad(
            side.url, side.key, shape.model, shape.streams, shape.chunks,
            s.stream_duration_s, spread, deadline_s=bound,
            allow_errors=side.lenient, at_least=side.lenient,
        )  # fmt: skip

    def rounds(self) -> Iterator[Side]:
        """Every side once per repetition, back to back."""
        for _ in range(self.settings.reps):
            yield from self.sides

    def settle(self) -> None:
        """Wait until no stream of an earlier run is open and every server is idle.

        An overloaded proxy keeps working on requests and streams its client
        gave up on; that must land neither in the next run's figures nor in
        the mock's request count that checks them.
        """
        deadline = time.monotonic() + _DRAIN_S
        while not self._quiet():
            if time.monotonic() > deadline:
                raise BenchError(f"servers still busy {_DRAIN_S:.0f} s after a run")

    def _quiet(self) -> bool:
        servers = [side.server.pid for side in self.sides]
        before = [tree_cpu_seconds(pid) for pid in servers]
        time.sleep(_QUIET_WINDOW_S)
        busy = [tree_cpu_seconds(pid) - b for pid, b in zip(servers, before, strict=True)]
        open_streams = mock_stats(self.mock)["open_streams"]
        return open_streams == 0 and max(busy) < _QUIET_CPU * _QUIET_WINDOW_S


def _added(figure: Figure, side: str, value: float, direct: Figure) -> None:
    """``value`` minus the direct figure of the same repetition."""
    figure.add(side, value - direct.values["direct"][-1])


def latency_c1(lineup: Lineup, figures: Figures, curves: Curves) -> None:
    """(1) One connection: the latency each gateway adds to a request."""
    sc = "(1) c=1"
    p50 = figures.new("c1.p50", sc, "latency p50", "ms")
    p99 = figures.new("c1.p99", sc, "latency p99", "ms")
    added50 = figures.new("c1.added_p50", sc, "added latency p50", "ms", sides=GATEWAYS)
    added99 = figures.new("c1.added_p99", sc, "added latency p99", "ms", sides=GATEWAYS)
    for side in lineup.sides:
        lineup.wrk(side, 1, _WARMUP_S)

    for side in lineup.rounds():
        result, _ = lineup.wrk(side, 1, lineup.settings.duration_s)
        p50.add(side.name, result.p50_ms)
        p99.add(side.name, result.p99_ms)
        curves.c1_cdf_ms[side.name] = list(result.cdf_ms)
        if side.name != "direct":
            _added(added50, side.name, result.p50_ms, p50)
            _added(added99, side.name, result.p99_ms, p99)


def throughput(lineup: Lineup, figures: Figures) -> None:
    """(2) Closed-loop load at each concurrency: requests/s and latency."""
    for c in lineup.settings.concurrencies:
        sc = f"(2) c={c}"
        rps = figures.new(f"c{c}.rps", sc, "throughput", "req/s", 0)
        p50 = figures.new(f"c{c}.p50", sc, "latency p50", "ms")
        p99 = figures.new(f"c{c}.p99", sc, "latency p99", "ms")
        share = figures.new(f"c{c}.share", sc, "share of direct throughput", "%", 1, GATEWAYS)
        cpu = figures.new(f"c{c}.cpu", sc, "server CPU per request", "µs", 0)
        for side in lineup.sides:
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
            cpu.add(side.name, _per_chunk(cpu_s, result, shape))
            if side.name != "direct":
                _added(over50, side.name, result.p50_ms, ttft50)
                _added(over99, side.name, result.p99_ms, ttft99)
            if shape == lineup.settings.stream_loads[0]:
                curves.ttft_cdf_ms[side.name] = list(result.ttft_cdf_ms)


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
    for side in lineup.sides:
        lineup.settle()
        result, sampler, rss_before = _hold_once(lineup, side, shape)
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
