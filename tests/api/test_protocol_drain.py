"""GatewayProtocol's drain (``shutdown``), in process through a fake
transport: a kept-alive connection is closed only once its client was told
(``Connection: close``) or after ``DRAIN_IDLE_S`` with nothing to answer,
never under a request a load balancer may be sending on it.

End to end, behind nginx: tests/scale/test_failures.py (a rolling restart).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from interlock.api import protocol as protocol_module
from interlock.api.protocol import GatewayProtocol
from interlock.config import ServerConfig
from tests.api.test_protocol_timers import FakeTransport

REQUEST = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"
GRACE_S = 0.05


class App:
    """Answers each request once ``start`` is set (headers) and ``finish``
    is set (the body's last chunk)."""

    def __init__(self) -> None:
        self.start = asyncio.Event()
        self.finish = asyncio.Event()
        self.start.set()
        self.finish.set()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.start.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await self.finish.wait()
        await send({"type": "http.response.body", "body": b"b"})


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol_module, "DRAIN_IDLE_S", GRACE_S)


async def _connection(app: App) -> tuple[GatewayProtocol, FakeTransport]:
    config = uvicorn.Config(app, log_config=None, lifespan="off")
    config.load()
    protocol_class = GatewayProtocol.bind(ServerConfig())
    protocol = protocol_class(config, ServerState(), {}, asyncio.get_running_loop())
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def _until(check: Any) -> None:
    async with asyncio.timeout(5):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


def _answers(transport: FakeTransport) -> list[bytes]:
    """The response heads written so far."""
    heads = transport.written.split(b"HTTP/1.1 ")[1:]
    return [head.split(b"\r\n\r\n")[0].lower() for head in heads]


def _complete(transport: FakeTransport, count: int) -> bool:
    return transport.written.count(b"0\r\n\r\n") >= count


async def test_an_idle_connection_stays_open_and_its_next_request_is_the_last() -> None:
    app = App()
    protocol, transport = await _connection(app)
    protocol.data_received(REQUEST)
    await _until(lambda: _complete(transport, 1))
    protocol.shutdown()
    assert not transport.closed  # a balancer may be sending on it right now
    protocol.data_received(REQUEST)  # and it was
    await _until(lambda: _complete(transport, 2))
    first, last = _answers(transport)
    assert b"connection: close" not in first
    assert b"connection: close" in last
    assert transport.closed  # closed once the client was told
    protocol.connection_lost(None)


async def test_an_idle_connection_is_closed_after_the_grace() -> None:
    protocol, transport = await _connection(App())
    protocol.shutdown()
    assert not transport.closed
    await _until(lambda: transport.closed)
    protocol.connection_lost(None)


async def test_a_response_not_yet_begun_says_connection_close() -> None:
    app = App()
    app.start.clear()
    protocol, transport = await _connection(app)
    protocol.data_received(REQUEST)
    await asyncio.sleep(0)
    protocol.shutdown()
    app.start.set()
    await _until(lambda: _complete(transport, 1))
    assert b"connection: close" in _answers(transport)[0]
    assert transport.closed
    protocol.connection_lost(None)


async def test_a_response_begun_kept_alive_is_followed_by_the_grace() -> None:
    app = App()
    app.finish.clear()
    protocol, transport = await _connection(app)
    protocol.data_received(REQUEST)
    await _until(lambda: b"HTTP/1.1 200" in transport.written)
    protocol.shutdown()
    app.finish.set()
    await _until(lambda: _complete(transport, 1))
    assert b"connection: close" not in _answers(transport)[0]
    assert not transport.closed  # the client did not hear it would close
    await _until(lambda: transport.closed)
    protocol.connection_lost(None)
