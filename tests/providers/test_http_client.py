"""UpstreamClient's SSE reader against a real server writing awkward splits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from interlock.config import TimeoutConfig
from interlock.providers.http import SSEEvent, UpstreamClient
from tests.support.servers import FakeUpstream


def _server(pieces: list[bytes]) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for piece in pieces:
            await response.write(piece)
            await asyncio.sleep(0.002)  # separate network reads
        return response

    app = web.Application()
    app.router.add_post("/sse", handle)
    return app


async def _events(
    fake_upstream: Callable[[web.Application], FakeUpstream], pieces: list[bytes]
) -> list[SSEEvent]:
    upstream = fake_upstream(_server(pieces))
    client = UpstreamClient("d", TimeoutConfig(), 4)
    await client.start()
    try:
        return [e async for e in client.stream_sse(upstream.url + "/sse", {})]
    finally:
        await client.aclose()


async def test_crlf_split_between_reads_and_named_events(
    fake_upstream: Callable[[web.Application], FakeUpstream],
) -> None:
    pieces = [b"event: ping\r", b"\ndata: {}\r\n\r", b"\n: comment\n\ndata: a", b"b\n\n"]
    events = await _events(fake_upstream, pieces)
    assert events == [SSEEvent("ping", b"{}"), SSEEvent("message", b"ab")]


async def test_multiline_data_and_unterminated_last_event(
    fake_upstream: Callable[[web.Application], FakeUpstream],
) -> None:
    events = await _events(fake_upstream, [b"data: one\ndata:two\nid: 7\n\n", b"data: last\n"])
    assert events == [SSEEvent("message", b"one\ntwo"), SSEEvent("message", b"last")]


async def test_many_events_in_one_read(
    fake_upstream: Callable[[web.Application], FakeUpstream],
) -> None:
    events = await _events(fake_upstream, [b"".join(b"data: %d\n\n" % i for i in range(50))])
    assert [e.data for e in events] == [str(i).encode() for i in range(50)]
