"""The hand-written HTTP/1.1 client against raw loopback servers writing exact bytes.

Every test runs on asyncio's own loop and on uvloop (what ``interlock serve`` uses):
the two differ in details a protocol class can trip on.
"""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
import trustme
import uvloop

from interlock.providers.h1 import (
    ConnectionPool,
    H1Broken,
    H1ConnectError,
    H1ProtocolError,
    H1Timeout,
    encode_head,
    header_block,
    split_url,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    factory = uvloop.new_event_loop if request.param == "uvloop" else asyncio.new_event_loop

    async def scenario_then_close_pools(coro: Coroutine[Any, Any, Any]) -> Any:
        try:
            return await asyncio.wait_for(coro, 10)
        finally:
            while _OPEN_POOLS:
                await _OPEN_POOLS.pop().aclose()
            await asyncio.sleep(0.01)  # let the transports finish closing

    def runner(coro: Coroutine[Any, Any, Any]) -> Any:
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(scenario_then_close_pools(coro))

    return runner


class RawServer:
    """A loopback server running ``handler`` per connection; counts connections."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1/x"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def replying(*responses: bytes, keep_open: bool = True) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for response in responses:
            await read_request(reader)
            writer.write(response)
            await writer.drain()
        if keep_open:
            await reader.read()  # until the client closes

    return handler


# Pools made by the running scenario; the ``run`` fixture closes them after it.
_OPEN_POOLS: list[ConnectionPool] = []


def pool_for(url: str, max_connections: int = 4, connect_s: float = 2.0) -> ConnectionPool:
    origin, _ = split_url(url)
    pool = ConnectionPool(origin, max_connections, connect_s)
    _OPEN_POOLS.append(pool)
    return pool


async def call(
    pool: ConnectionPool, url: str, body: bytes = b"{}", read_s: float = 5.0, **kw: Any
) -> tuple[int, bytes]:
    origin, target = split_url(url)
    head = encode_head("POST", target, header_block({"host": origin.host_header}), len(body))
    resp = await pool.request(head, body, read_s, **kw)
    return resp.status, await resp.read()


def test_keep_alive_reuses_one_connection(run: Callable[..., Any]) -> None:
    async def scenario() -> None:
        async with RawServer(replying(OK, OK, OK)) as server:
            pool = pool_for(server.url)
            for _ in range(3):
                assert await call(pool, server.url) == (200, b"ok")
            assert server.connections == 1

    run(scenario())


def test_bodies_by_length_chunked_and_until_close(run: Callable[..., Any]) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    until_close = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it"

    async def scenario() -> None:
        async with RawServer(replying(chunked, OK)) as server:
            pool = pool_for(server.url)
            assert await call(pool, server.url) == (200, b"abcde")
            assert await call(pool, server.url) == (200, b"ok")
            assert server.connections == 1
        async with RawServer(replying(until_close, keep_open=False)) as server:
            pool = pool_for(server.url)
            assert await call(pool, server.url) == (200, b"all of it")
            await asyncio.sleep(0.05)
            assert pool.open_connections == 0

    run(scenario())


def test_gzip_body_is_decoded(run: Callable[..., Any]) -> None:
    packed = gzip.compress(b'{"a": 1}')
    response = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n" % len(
        packed
    )

    async def scenario() -> None:
        async with RawServer(replying(response + packed)) as server:
            assert await call(pool_for(server.url), server.url) == (200, b'{"a": 1}')

    run(scenario())


def test_pool_never_opens_more_than_its_bound(run: Callable[..., Any]) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await asyncio.sleep(0.01)
            writer.write(OK)

    async def scenario() -> None:
        async with RawServer(slow) as server:
            pool = pool_for(server.url, max_connections=2)
            results = await asyncio.gather(*(call(pool, server.url) for _ in range(12)))
            assert results == [(200, b"ok")] * 12
            assert server.most_open <= 2 and pool.open_connections <= 2

    run(scenario())


def test_waiting_for_a_pooled_connection_times_out(run: Callable[..., Any]) -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def scenario() -> None:
        async with RawServer(hang) as server:
            pool = pool_for(server.url, max_connections=1, connect_s=0.2)
            first = asyncio.ensure_future(call(pool, server.url))
            await asyncio.sleep(0.05)
            with pytest.raises(H1Timeout, match="no free upstream connection"):
                await call(pool, server.url)
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            await asyncio.sleep(0.05)
            assert pool.open_connections == 0  # the cancelled call closed its connection

    run(scenario())


def test_a_reused_connection_closed_before_replying_is_retried_once(
    run: Callable[..., Any],
) -> None:
    """The keep-alive race: the server drops an idle connection just as the
    next request goes out on it. Nothing was answered, so a fresh connection
    gets the request; a new connection failing the same way is not retried."""
    served: list[int] = []

    async def flaky(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = len(served)
        served.append(number)
        await read_request(reader)
        if number == 0:
            writer.write(OK)
            await read_request(reader)  # the second request: dropped unanswered
        elif number == 1:
            writer.write(OK)
            await reader.read()
        # the third connection and later: closed at once, unanswered

    async def scenario() -> None:
        async with RawServer(flaky) as server:
            pool = pool_for(server.url)
            assert await call(pool, server.url) == (200, b"ok")
            assert await call(pool, server.url) == (200, b"ok")
            assert server.connections == 2
        served.clear()
        served.extend([1, 1])  # from now on every connection closes unanswered
        async with RawServer(flaky) as server:
            with pytest.raises(H1Broken, match="before replying"):
                await call(pool_for(server.url), server.url)

    run(scenario())


def test_reset_mid_body_and_garbage_are_errors(run: Callable[..., Any]) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        writer.transport.abort()

    async def scenario() -> None:
        async with RawServer(cut) as server:
            with pytest.raises(H1Broken, match="mid-response"):
                await call(pool_for(server.url), server.url)
        async with RawServer(replying(b"SMTP ready\r\n\r\n")) as server:
            with pytest.raises(H1ProtocolError):
                await call(pool_for(server.url), server.url)

    run(scenario())


def test_read_and_total_timeouts(run: Callable[..., Any]) -> None:
    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n")
        for _ in range(50):  # a byte every 30 ms: never idle 0.2 s, never done in 0.5 s
            await asyncio.sleep(0.03)
            writer.write(b"x")

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def scenario() -> None:
        async with RawServer(silent) as server:
            with pytest.raises(H1Timeout, match="no data from upstream"):
                await call(pool_for(server.url), server.url, read_s=0.2)
        async with RawServer(dribble) as server:
            with pytest.raises(H1Timeout, match=r"no complete answer from upstream within 0\.5 s"):
                await call(pool_for(server.url), server.url, read_s=0.2, total_s=0.5)

    run(scenario())


def test_a_slow_reader_pauses_the_socket_and_loses_nothing(run: Callable[..., Any]) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB, far over the pause threshold

    async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        await reader.read()

    async def scenario() -> None:
        async with RawServer(big) as server:
            pool = pool_for(server.url)
            origin, target = split_url(server.url)
            head = encode_head("POST", target, header_block({"host": origin.host_header}), 0)
            resp = await pool.request(head, b"", read_s=1.0)
            received = b""
            while data := await resp.readany():
                received += data
                await asyncio.sleep(0.001)
            assert received == body

    run(scenario())


def test_refused_connection_and_header_injection(run: Callable[..., Any]) -> None:
    async def scenario() -> None:
        pool = pool_for("http://127.0.0.1:9/x")
        with pytest.raises(H1ConnectError, match="cannot connect"):
            await call(pool, "http://127.0.0.1:9/x")
        assert pool.open_connections == 0

    run(scenario())
    with pytest.raises(ValueError, match="invalid header"):
        header_block({"x-request-id": "a\r\nx-admin: 1"})
    with pytest.raises(ValueError, match="absolute http"):
        split_url("ftp://example/x")


def test_https_with_the_servers_name_verified(run: Callable[..., Any]) -> None:
    """Model APIs are https: the pool does the TLS handshake, checks the
    certificate against the host name, and keeps the connection alive."""
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)

    async def scenario() -> None:
        server = await asyncio.start_server(replying(OK, OK), "127.0.0.1", 0, ssl=server_context)
        port = server.sockets[0].getsockname()[1]
        try:
            url = f"https://localhost:{port}/v1/x"
            origin, _ = split_url(url)
            pool = ConnectionPool(origin, 2, 2.0, ssl_context=trusting)
            _OPEN_POOLS.append(pool)
            assert await call(pool, url) == (200, b"ok")
            assert await call(pool, url) == (200, b"ok")
            assert pool.open_connections == 1
            untrusting = ConnectionPool(origin, 2, 2.0)  # the system's CAs only
            _OPEN_POOLS.append(untrusting)
            with pytest.raises(H1ConnectError, match="SSL"):
                await call(untrusting, url)
        finally:
            server.close()

    run(scenario())


def test_host_header_and_target_from_the_url() -> None:
    origin, target = split_url("https://api.example.com/v1/chat/completions?x=1")
    assert (origin.host_header, origin.port, target) == (
        "api.example.com",
        443,
        "/v1/chat/completions?x=1",
    )
    origin, target = split_url("http://[::1]:8000")
    assert (origin.host, origin.host_header, target) == ("::1", "[::1]:8000", "/")


def test_idle_connections_are_closed_after_idle_s(run: Callable[..., Any]) -> None:
    """After a burst, pooled connections do not hold their sockets for good."""

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            await asyncio.sleep(0.02)
            writer.write(OK)

    async def scenario() -> None:
        async with RawServer(slow) as server:
            origin, _ = split_url(server.url)
            pool = ConnectionPool(origin, 8, 2.0, idle_s=0.5)
            _OPEN_POOLS.append(pool)
            await asyncio.gather(*(call(pool, server.url) for _ in range(3)))
            assert pool.open_connections == 3
            await asyncio.sleep(0.3)
            assert await call(pool, server.url) == (200, b"ok")  # reuses one: idle anew
            await asyncio.sleep(0.3)  # the other two have been idle 0.6 s, it 0.3 s
            assert pool.open_connections == 1 and server.open_now == 1
            await asyncio.sleep(0.35)
            assert pool.open_connections == 0 and server.open_now == 0

    run(scenario())
