"""A very fast mock OpenAI-compatible upstream, for benchmarks only.

    python bench/mock_upstream.py --port 9000 [--chunks 20 --chunk-delay-ms 10]

Raw asyncio on uvloop with httptools parsing and HTTP/1.1 keep-alive (no
framework), so it costs a few tens of microseconds a request and is never the
bottleneck of a gateway benchmark. It serves:

- ``POST /v1/chat/completions``: a canned ``chat.completion`` with usage, or,
  with ``"stream": true``, ``--chunks`` SSE ``chat.completion.chunk`` events
  (the first at once, then one every ``--chunk-delay-ms``) and ``data: [DONE]``.
  A model named ``...stream-<chunks>x<delay_ms>`` (e.g. ``mock-stream-50x20``)
  overrides both for that request, so one mock serves every stream shape.
  ``...hold-<chunks>x<delay_ms>`` streams the same way but holds the stream
  open before its last event until ``GET /hold/release``, and sends whatever
  is left at once after it (``GET /hold/reset`` holds new streams again): a
  benchmark can keep N streams open for as long as opening them takes;
- ``POST /v1/embeddings``: one canned vector per input;
- ``GET /stats``: how many POSTs it has answered, so a benchmark can check
  that traffic through a gateway really reached it, and how many streams are
  open now and were open at most at once (``GET /stats/reset`` restarts that
  peak);
- ``GET /health``.

A malformed body gets a 400 and an unknown path a 404, so a load generator
sending bad requests shows up as non-2xx responses, not as fast ones.
Prints ``mock upstream listening on http://HOST:PORT`` when ready; SIGTERM or
SIGINT stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import re
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, cast

import httptools
import orjson
import uvloop

__all__ = ["MockSettings", "Request", "Stats", "respond"]

CREATED = int(time.time())
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
_CHUNKED_END = b"0\r\n\r\n"
_STREAM_SHAPE = re.compile(r"(stream|hold)-(\d+)x(\d+(?:\.\d+)?)$")


@dataclass(frozen=True, slots=True)
class MockSettings:
    chunks: int = 20
    chunk_delay_s: float = 0.0
    dimensions: int = 16


@dataclass(slots=True)
class Stats:
    requests: int = 0
    streams: int = 0
    open_streams: int = 0
    peak_open_streams: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)  # lets held streams end

    def stream_opened(self) -> None:
        self.streams += 1
        self.open_streams += 1
        self.peak_open_streams = max(self.peak_open_streams, self.open_streams)

    def stream_closed(self) -> None:
        self.open_streams -= 1

    def as_json(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "streams": self.streams,
            "open_streams": self.open_streams,
            "peak_open_streams": self.peak_open_streams,
        }


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    body: bytes
    keep_alive: bool


@dataclass(frozen=True, slots=True)
class Stream:
    """A streamed answer: SSE events already framed as HTTP chunks, ``delay_s`` apart."""

    framed: tuple[bytes, ...]
    delay_s: float = 0.0
    hold: bool = False  # wait for Stats.release before the last event


def stream_shape(model: str, settings: MockSettings) -> tuple[int, float, bool]:
    """Chunks, inter-chunk delay (s) and hold for ``model``: its name may override the flags."""
    match = _STREAM_SHAPE.search(model)
    if match is None:
        return settings.chunks, settings.chunk_delay_s, False
    return max(1, int(match[2])), float(match[3]) / 1000, match[1] == "hold"


def _json_response(status: int, content: Any, keep_alive: bool = True) -> bytes:
    body = orjson.dumps(content)
    close = b"" if keep_alive else b"connection: close\r\n"
    head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
    return head % (status, _REASONS[status], len(body), close) + body


def _error(status: int, message: str) -> bytes:
    return _json_response(status, {"error": {"message": message, "type": "invalid_request_error"}})


def _completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the mock upstream."},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
    }


def _chunk(model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [choice],
    }


@functools.lru_cache(maxsize=64)
def _stream_events(model: str, chunks: int, include_usage: bool) -> tuple[bytes, ...]:
    """The stream's SSE events, each framed as one HTTP chunk (shared by all streams)."""
    payloads = []
    for i in range(chunks):
        delta: dict[str, Any] = {"content": f"tok{i} "}
        if i == 0:
            delta["role"] = "assistant"
        payloads.append(_chunk(model, delta, "stop" if i == chunks - 1 else None))
    events = [b"data: " + orjson.dumps(p) + b"\n\n" for p in payloads]
    framed = [b"%x\r\n%s\r\n" % (len(e), e) for e in [*events, b"data: [DONE]\n\n"]]
    if include_usage:
        # Sent with the last content chunk, as a server does once generation is
        # over: it takes no time slot of its own, so a stream with usage (a
        # gateway asks for it to count tokens) keeps the same event times as one
        # without.
        usage = {"prompt_tokens": 9, "completion_tokens": chunks, "total_tokens": 9 + chunks}
        payload = {**_chunk(model, {}, None), "choices": [], "usage": usage}
        event = b"data: " + orjson.dumps(payload) + b"\n\n"
        framed[-2] += b"%x\r\n%s\r\n" % (len(event), event)
    return tuple(framed)


def _chat(body: dict[str, Any], settings: MockSettings) -> bytes | Stream:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(400, "`messages` must be a non-empty list")
    model = str(body.get("model", "mock-model"))
    if body.get("stream") is True:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        chunks, delay_s, hold = stream_shape(model, settings)
        return Stream(_stream_events(model, chunks, include_usage), delay_s, hold)
    return _json_response(200, _completion(model))


def _embeddings(body: dict[str, Any], settings: MockSettings) -> bytes:
    raw = body.get("input")
    if not isinstance(raw, str | list) or not raw:
        return _error(400, "`input` must be a string or a non-empty list")
    count = len(raw) if isinstance(raw, list) and not isinstance(raw[0], int) else 1
    vector = [0.015625] * settings.dimensions
    data = [{"object": "embedding", "index": i, "embedding": vector} for i in range(count)]
    model = str(body.get("model", "mock-embedding"))
    usage = {"prompt_tokens": count, "total_tokens": count}
    return _json_response(200, {"object": "list", "data": data, "model": model, "usage": usage})


_POST_ROUTES = {"/v1/chat/completions": _chat, "/v1/embeddings": _embeddings}


def _stats(stats: Stats) -> bytes:
    return _json_response(200, stats.as_json())


def _reset_peak(stats: Stats) -> bytes:
    stats.peak_open_streams = stats.open_streams
    return _stats(stats)


def _release(stats: Stats) -> bytes:
    stats.release.set()
    return _stats(stats)


def _hold_again(stats: Stats) -> bytes:
    stats.release.clear()
    return _stats(stats)


_GET_ROUTES = {
    "/stats": _stats,
    "/stats/reset": _reset_peak,
    "/hold/release": _release,
    "/hold/reset": _hold_again,
    "/health": lambda _: _json_response(200, {"status": "ok"}),
}


def respond(request: Request, settings: MockSettings, stats: Stats) -> bytes | Stream:
    """The answer to one request: response bytes, or a stream to send over time."""
    if request.method == "GET" and request.path in _GET_ROUTES:
        return _GET_ROUTES[request.path](stats)
    handler = _POST_ROUTES.get(request.path)
    if handler is None:
        return _error(404, f"no route {request.path}")
    if request.method != "POST":
        return _error(405, f"{request.method} not allowed")
    stats.requests += 1
    try:
        body = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        return _error(400, "body is not JSON")
    if not isinstance(body, dict):
        return _error(400, "body is not a JSON object")
    return handler(body, settings)


class MockProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection; pipelined requests are answered in order."""

    def __init__(self, settings: MockSettings, stats: Stats):
        self._settings = settings
        self._stats = stats
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        self._queue: deque[Request] = deque()
        self._streaming = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(_json_response(400, {"error": {"message": "bad HTTP"}}, False))
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        path = self._url.split(b"?", 1)[0].decode("latin-1")
        method = self._parser.get_method().decode("latin-1")
        keep_alive = self._parser.should_keep_alive()
        self._queue.append(Request(method, path, b"".join(self._body), keep_alive))
        self._serve_queued()

    def _serve_queued(self) -> None:
        while self._queue and not self._streaming and self._transport is not None:
            request = self._queue.popleft()
            answer = respond(request, self._settings, self._stats)
            if isinstance(answer, Stream):
                self._streaming = True
                self._stats.stream_opened()
                asyncio.get_running_loop().create_task(self._send_stream(answer, request))
                return
            self._write(answer)
            if not request.keep_alive:
                self._close()

    async def _send_stream(self, stream: Stream, request: Request) -> None:
        try:
            sent = await self._send_events(stream)
        finally:
            self._stats.stream_closed()
        if not sent:
            return
        self._streaming = False
        if not request.keep_alive:
            self._close()
        self._serve_queued()

    async def _send_events(self, stream: Stream) -> bool:
        """Send the stream; False if the client went away first.

        Chunk times are scheduled from the stream's start, so a late wake-up
        does not push every later chunk back (gaps stay ``delay_s`` on average).
        """
        framed = stream.framed
        if stream.delay_s <= 0 and not stream.hold:
            self._write(_STREAM_HEAD + b"".join(framed) + _CHUNKED_END)
            return True
        loop = asyncio.get_running_loop()
        started = loop.time()
        release = self._stats.release
        self._write(_STREAM_HEAD + framed[0])
        for i, piece in enumerate(framed[1:], start=1):
            if stream.hold and i == len(framed) - 1:
                await release.wait()  # held open until the benchmark lets go
            elif not (stream.hold and release.is_set()):
                await asyncio.sleep(started + i * stream.delay_s - loop.time())
            if self._transport is None or self._transport.is_closing():
                return False
            self._write(piece)
        self._write(_CHUNKED_END)
        return True

    def _write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


async def serve(host: str, port: int, settings: MockSettings) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    server = await loop.create_server(
        lambda: MockProtocol(settings, stats), host, port, backlog=4096, reuse_address=True
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"mock upstream listening on http://{host}:{port}", flush=True)
    async with server:
        await stop.wait()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="delay between chunks")
    parser.add_argument("--dimensions", type=int, default=16, help="embedding length")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    if args.chunks < 1:
        raise SystemExit("--chunks must be at least 1")
    settings = MockSettings(args.chunks, args.chunk_delay_ms / 1000, args.dimensions)
    uvloop.run(serve(args.host, args.port, settings))


if __name__ == "__main__":
    main()
