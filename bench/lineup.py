"""The three sides under test and how a run is taken: settled, alive, recorded.

Before every run the driver waits until no stream of an earlier run is open,
every server is idle, and other processes on the machine are quiet (bounded);
a LiteLLM that crashed is restarted and the crash recorded.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from loadgen import StreamLoad, StreamResult, WrkResult, run_ttft
from memory import Sample
from procs import BenchError, CoreLayout, CpuMark, Service, tree_cpu_seconds
from stand import CHAT, PLAIN, WrkLoad, checked_wrk, mock_stats, stop_gateway

__all__ = ["Curves", "Lineup", "Side", "StreamShape", "SuiteSettings"]

_DRAIN_S = 60.0  # the most a server may stay busy after a run
_OTHERS_PATIENCE_S = 60.0  # the most we wait for other processes before one run
_OTHERS_BUDGET_S = 60.0  # ... and over the whole suite
_QUIET_WINDOW_S = 0.3
_QUIET_CPU = 0.05  # a server using under 5 % of a core is idle
_OTHERS_QUIET_PCT = 10.0  # other processes under 10 % of one core: quiet


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
    hold_ramp_s: float = 10.0  # the client starts its streams over this long (1,000/s)
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
    """The sides, and what happened to them that the figures alone do not say."""

    mock: Service
    sides: list[Side]
    layout: CoreLayout
    settings: SuiteSettings
    # More Interlock processes, by role: "defaults" (shipped defaults, for (1)),
    # "cache" (cache on, for (5)) and "full" (every optional stage on, for the
    # pipeline cost); each runs only during its phase (``running``).
    variants: dict[str, Side] = field(default_factory=dict)
    variant_starters: dict[str, Callable[[], Side]] = field(default_factory=dict)
    revive: dict[str, Callable[[], Service]] = field(default_factory=dict)
    incidents: list[str] = field(default_factory=list)
    disturbed_runs: int = 0  # runs started while other processes stayed busy
    waited_for_others_s: float = 0.0
    phase: str = ""
    _noted: set[int] = field(default_factory=set)  # servers whose exit is recorded

    def wrk(
        self, side: Side, connections: int, seconds: float, load: WrkLoad = PLAIN
    ) -> tuple[WrkResult, float]:
        """One checked wrk run, and the CPU seconds the answering server spent on it.

        If a restartable server (LiteLLM) died under the run, it is restarted
        (recorded) and the run taken again, once.
        """
        try:
            return self._wrk(side, connections, seconds, load)
        except BenchError:
            if side.server.proc.poll() is None or side.name not in self.revive:
                raise
        return self._wrk(self._alive(self.sides.index(side)), connections, seconds, load)

    def _wrk(
        self, side: Side, connections: int, seconds: float, load: WrkLoad
    ) -> tuple[WrkResult, float]:
        self.settle()
        before = tree_cpu_seconds(side.server.pid)
        result = checked_wrk(self.mock, side.url, side.key, connections, seconds, self.layout, load)
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
        bound = spread + s.stream_duration_s + shape.length_s + 5 if side.lenient else 0
        return StreamLoad(
            side.url, side.key, shape.model, shape.streams, shape.chunks,
            s.stream_duration_s, spread, deadline_s=bound,
            allow_errors=side.lenient, at_least=side.lenient,
        )  # fmt: skip

    @contextmanager
    def running(self, *names: str) -> Iterator[None]:
        """The variants ``names`` (those there are starters for) started for one
        phase and stopped after it. Idle, an Interlock process still takes the
        gateway core now and then (its key refresher polls the store twice a
        second, ~0.5 ms of CPU each): three idle ones beside the gateway under
        test moved its c=1 p99 from ~0.5 to ~0.9 ms."""
        started: list[str] = []
        try:
            for name in names:
                if name in self.variant_starters:
                    self.variants[name] = self.variant_starters[name]()
                    started.append(name)
            yield
        finally:
            for name in started:
                stop_gateway(self.variants.pop(name).server)

    def rounds(self) -> Iterator[Side]:
        """Every side once per repetition, back to back (each checked alive)."""
        for _ in range(self.settings.reps):
            yield from self.each_side()

    def each_side(self) -> Iterator[Side]:
        for i in range(len(self.sides)):
            yield self._alive(i)

    def record_errors(self, scenario: str, side: Side, result: StreamResult) -> None:
        if result.errors:
            kinds = "; ".join(f"{n} x {kind}" for kind, n in result.error_kinds.items())
            self.incidents.append(f"{scenario}, {side.name}: {result.errors} errors ({kinds})")

    def _alive(self, index: int) -> Side:
        """The side, its server restarted first if it died (LiteLLM only; else fatal)."""
        side = self.sides[index]
        code = side.server.proc.poll()
        if code is None:
            return side
        restart = self.revive.get(side.name)
        if restart is None:
            raise BenchError(f"{side.name} exited ({_how(code)}):\n{side.server.log_tail()}")
        self.note_exits()
        self.incidents.append(f"{side.name} restarted for the next run")
        self.sides[index] = replace(side, server=restart())
        return self.sides[index]

    def note_exits(self) -> None:
        """Record every server found dead since the last look (once each)."""
        for side in self.sides:
            code = side.server.proc.poll()
            if code is not None and side.server.pid not in self._noted:
                self._noted.add(side.server.pid)
                self.incidents.append(f"{side.name} exited ({_how(code)}) during {self.phase}")

    def settle(self) -> None:
        """Wait until no stream of an earlier run is open, every server is idle,
        and other processes are quiet (that last one bounded: then counted).

        An overloaded proxy keeps working on requests and streams its client
        gave up on; that must land neither in the next run's figures nor in
        the mock's request count that checks them.
        """
        started = time.monotonic()
        budget = max(0.0, _OTHERS_BUDGET_S - self.waited_for_others_s)
        patience = min(_OTHERS_PATIENCE_S, budget)
        while True:
            idle, others_pct = self._sample()
            waited = time.monotonic() - started
            if idle and (others_pct < _OTHERS_QUIET_PCT or waited > patience):
                self.disturbed_runs += others_pct >= _OTHERS_QUIET_PCT
                self.waited_for_others_s += waited
                return
            if not idle and waited > _DRAIN_S:
                raise BenchError(f"servers still busy {_DRAIN_S:.0f} s after a run")

    def _sample(self) -> tuple[bool, float]:
        """(servers idle and the mock untouched, other processes' CPU in % of one core).

        Untouched: no stream open and no request arriving during the window,
        so nothing an earlier run left in flight lands in the next one's count.
        """
        sides = [*self.sides, *self.variants.values()]
        servers = [side.server.pid for side in sides if side.server.proc.poll() is None]
        requests = mock_stats(self.mock)["requests"]
        mark, before = CpuMark.now(), [tree_cpu_seconds(pid) for pid in servers]
        time.sleep(_QUIET_WINDOW_S)
        busy = [tree_cpu_seconds(pid) - b for pid, b in zip(servers, before, strict=True)]
        # Servers are live children, not yet in RUSAGE_CHILDREN: subtract them here.
        others = CpuMark.now().others_since(mark) - 100 * sum(busy) / _QUIET_WINDOW_S
        stats = mock_stats(self.mock)
        untouched = stats["open_streams"] == 0 and stats["requests"] == requests
        return untouched and max(busy, default=0.0) < _QUIET_CPU * _QUIET_WINDOW_S, others


def _how(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"
