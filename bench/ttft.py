"""Streaming load client: time to first token, inter-chunk gaps, stream time.

    python bench/ttft.py --url http://127.0.0.1:8080/v1/chat/completions \\
        --streams 50 --duration 5 --expect-chunks 20 [--key sk-...]
    python bench/ttft.py --url ... --streams 10000 --once --spread 5 --deadline 60

Raw asyncio on uvloop with httptools (no HTTP client library), so that one
process on one core can hold 10,000 streams open. Each of ``--streams``
workers keeps one keep-alive connection and opens a streamed chat completion
on it, reads it to ``data: [DONE]``, and, unless ``--once``, starts the next,
until ``--duration`` is over. Worker starts are spread over ``--spread``
seconds so that equal streams do not run in lock-step; streams started
before the counting window (``max(--warmup, --spread)``) are not counted.

For every counted stream: TTFT is the time from writing the request to the
end of the first SSE event; every later event's gap is the time since the
one before it, taken per socket read, so events that arrive glued together
in one read (a batching proxy) get a gap of 0 and count as coalesced.

Prints one JSON line (milliseconds). Any non-200 status, missing ``[DONE]``,
wrong chunk count, connection error or stream unfinished at ``--deadline``
is an error: the run exits 1 unless ``--allow-errors``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import httptools
import orjson
import uvloop

__all__ = ["Recorder", "Target", "measure"]

_DONE = b"data: [DONE]"
_CDF_POINTS = 100
_COALESCED_S = 0.001  # a gap under 1 ms: the event came in the same burst


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    request: bytes  # the whole HTTP/1.1 request, sent as is on every stream
    expect_chunks: int | None
    at_least: bool = False  # expect_chunks is a minimum, not an exact count


@dataclass
class Recorder:
    """Figures from every counted stream, plus errors and open-stream counts."""

    ttft: array[float] = field(default_factory=lambda: array("d"))
    gaps: array[float] = field(default_factory=lambda: array("d"))
    totals: array[float] = field(default_factory=lambda: array("d"))
    errors: Counter[str] = field(default_factory=Counter)
    open_now: int = 0
    peak_open: int = 0
    opened: int = 0

    def stream_opened(self) -> None:
        self.opened += 1
        self.open_now += 1
        self.peak_open = max(self.peak_open, self.open_now)

    def summary(self, wall_s: float) -> dict[str, Any]:
        streams = len(self.totals)
        gaps = sorted(self.gaps)
        coalesced = sum(1 for g in gaps if g < _COALESCED_S)
        return {
            "streams": streams,
            "streams_per_s": round(streams / wall_s, 1) if wall_s > 0 else 0.0,
            "ttft_ms": _quantiles(sorted(self.ttft)),
            "gap_ms": _quantiles(gaps),
            "total_ms": _quantiles(sorted(self.totals)),
            "coalesced_pct": round(100 * coalesced / len(gaps), 2) if gaps else 0.0,
            "ttft_cdf_ms": _cdf(sorted(self.ttft)),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors.most_common(5)),
            "opened": self.opened,
            "peak_open": self.peak_open,
        }


def _quantiles(ordered: list[float]) -> dict[str, float | None]:
    if not ordered:
        return {"p50": None, "p99": None, "max": None}
    p99 = statistics.quantiles(ordered, n=100, method="inclusive")[98] if len(ordered) > 1 else 0
    return {
        "p50": round(statistics.median(ordered) * 1000, 3),
        "p99": round((p99 or ordered[-1]) * 1000, 3),
        "max": round(ordered[-1] * 1000, 3),
    }


def _cdf(ordered: list[float]) -> list[float]:
    """Percentiles 0, 1, ..., 100 in milliseconds (empty without samples)."""
    if not ordered:
        return []
    last = len(ordered) - 1
    return [round(ordered[last * p // _CDF_POINTS] * 1000, 3) for p in range(_CDF_POINTS + 1)]


class _Stream:
    """One response being read: its timings and SSE event count."""

    def __init__(self, recorder: Recorder, counted: bool):
        self.recorder = recorder
        self.counted = counted
        self.sent_at = time.perf_counter()
        self.last_event_at = 0.0
        self.events = 0
        self.done = False
        self.status = 0
        self.buffer = b""
        self.error_body = b""
        self.finished: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    def on_events(self, now: float, count: int) -> None:
        """``count`` events completed by one read: the first waited, the rest came glued."""
        if self.counted:
            if self.events == 0:
                self.recorder.ttft.append(now - self.sent_at)
            else:
                self.recorder.gaps.append(now - self.last_event_at)
            self.recorder.gaps.extend([0.0] * (count - 1))
        self.events += count
        self.last_event_at = now

    def feed(self, body: bytes, now: float) -> None:
        if self.status != 200:
            self.error_body = (self.error_body + body)[:200]
            return
        self.buffer += body
        count = self.buffer.count(b"\n\n")
        if count:
            end = self.buffer.rindex(b"\n\n") + 2
            if _DONE in self.buffer[:end]:
                self.done = True
            self.buffer = self.buffer[end:]
            self.on_events(now, count)

    def outcome(self, target: Target) -> str | None:
        if self.status != 200:
            return f"status {self.status}: {self.error_body[:120]!r}"
        if not self.done:
            return "stream ended without data: [DONE]"
        chunks = self.events - 1  # the [DONE] event is not a chunk
        expected = target.expect_chunks
        if expected is None or chunks == expected or (target.at_least and chunks > expected):
            return None
        return f"expected {'at least ' if target.at_least else ''}{expected} chunks, got {chunks}"


class StreamConnection(asyncio.Protocol):
    """One keep-alive connection reading one streamed response at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.current: _Stream | None = None
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        stream, self.current = self.current, None
        if stream is not None and not stream.finished.done():
            reason = type(exc).__name__ if exc else "connection closed mid-stream"
            stream.finished.set_result(reason)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(f"bad HTTP: {exc}")
            if self.transport is not None:
                self.transport.close()

    def send(self, request: bytes, stream: _Stream) -> None:
        assert self.transport is not None
        self.current = stream
        self.transport.write(request)

    # httptools callbacks
    def on_headers_complete(self) -> None:
        if self.current is not None:
            self.current.status = self.parser.get_status_code()
            if self.current.status == 200:
                self.current.recorder.stream_opened()
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if self.current is not None:
            self.current.feed(body, time.perf_counter())

    def on_message_complete(self) -> None:
        self._finish(None)

    def _finish(self, error: str | None) -> None:
        stream, self.current = self.current, None
        if stream is not None and not stream.finished.done():
            stream.finished.set_result(error)


async def _one_stream(
    connection: StreamConnection, target: Target, recorder: Recorder, counted: bool
) -> None:
    stream = _Stream(recorder, counted)
    connection.send(target.request, stream)
    try:
        error = await stream.finished
    finally:
        if stream.status == 200:
            recorder.open_now -= 1
    error = error or stream.outcome(target)
    if error is not None:
        recorder.errors[error] += 1
    elif counted:
        recorder.totals.append(time.perf_counter() - stream.sent_at)


async def _connect(target: Target) -> StreamConnection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(StreamConnection, target.host, target.port)
    return protocol


@dataclass(frozen=True)
class Plan:
    """When counting starts, when workers stop starting streams, and the hard stop."""

    count_after: float
    end: float
    once: bool
    spread_s: float
    deadline_s: float


async def _worker(target: Target, plan: Plan, recorder: Recorder, delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    connection: StreamConnection | None = None
    try:
        while True:
            if connection is None or connection.transport is None or not connection.keep_alive:
                connection = await _connect(target)
            started = time.perf_counter()
            await _one_stream(connection, target, recorder, started >= plan.count_after)
            if plan.once or time.perf_counter() >= plan.end:
                return
    except OSError as exc:
        recorder.errors[f"{type(exc).__name__}: {exc.strerror or exc}"] += 1
    finally:
        if connection is not None and connection.transport is not None:
            connection.transport.close()


async def measure(target: Target, streams: int, plan: Plan) -> Recorder:
    """Run the workers; any still running at the deadline is cancelled and counted."""
    recorder = Recorder()
    tasks = [
        asyncio.ensure_future(_worker(target, plan, recorder, plan.spread_s * i / streams))
        for i in range(streams)
    ]
    done, pending = await asyncio.wait(tasks, timeout=plan.deadline_s)
    for task in pending:
        task.cancel()
    if pending:
        recorder.errors["unfinished at the deadline"] += len(pending)
        await asyncio.wait(pending)
    for task in done:
        if task.exception() is not None:
            recorder.errors[f"client bug: {task.exception()!r}"] += 1
    return recorder


def build_request(url: str, model: str, key: str) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    body = orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Stream a greeting to the benchmark."}],
            "max_tokens": 64,
            "stream": True,
        }
    )
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    head = [
        f"POST {parts.path or '/'} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        "Accept: text/event-stream",
        f"Content-Length: {len(body)}",
    ]
    if key:
        head.append(f"Authorization: Bearer {key}")
    return host, port, ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Streaming TTFT load client")
    parser.add_argument("--url", required=True, help="full /v1/chat/completions URL")
    parser.add_argument("--model", default="mock")
    parser.add_argument("--key", default="", help="bearer key (omit for the bare mock)")
    parser.add_argument("--streams", type=int, default=50, help="concurrent streams")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="uncounted seconds first")
    parser.add_argument(
        "--spread", type=float, default=0.0, help="spread first requests over S seconds"
    )
    parser.add_argument("--expect-chunks", type=int, default=None)
    parser.add_argument("--at-least", action="store_true", help="--expect-chunks is a minimum")
    parser.add_argument("--once", action="store_true", help="each worker runs one stream")
    parser.add_argument("--deadline", type=float, default=0.0, help="hard stop (s); 0: auto")
    parser.add_argument("--allow-errors", action="store_true", help="report errors, exit 0")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    host, port, request = build_request(args.url, args.model, args.key)
    target = Target(host, port, request, args.expect_chunks, args.at_least)
    warmup = 0.0 if args.once else max(args.warmup, args.spread)
    deadline = args.deadline or warmup + args.duration + 60
    started = time.perf_counter()
    end = started + warmup + args.duration
    plan = Plan(started + warmup, end, args.once, args.spread, deadline)
    recorder = uvloop.run(measure(target, args.streams, plan))
    wall = time.perf_counter() - started - warmup
    print(orjson.dumps(recorder.summary(wall)).decode())
    failed = bool(recorder.errors) or not recorder.totals
    return 1 if failed and not args.allow_errors else 0


if __name__ == "__main__":
    sys.exit(main())
