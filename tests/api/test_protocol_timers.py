"""GatewayProtocol's timers, driven in process through a fake transport:
a connection always has one running unless a request is being answered."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from interlock.api.protocol import GatewayProtocol
from interlock.config import ServerConfig


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = b""
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def ok_without_reading(scope: Any, receive: Any, send: Any) -> None:
    """Answers at once, never reading the body (as /health/live does)."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def _connection() -> tuple[GatewayProtocol, FakeTransport]:
    config = uvicorn.Config(ok_without_reading, log_config=None, lifespan="off")
    config.load()
    protocol_class = GatewayProtocol.bind(ServerConfig(header_timeout_s=1, body_timeout_s=1))
    protocol = protocol_class(config, ServerState(), {}, asyncio.get_running_loop())
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def _answered(transport: FakeTransport, count: int) -> None:
    async with asyncio.timeout(5):
        while transport.written.count(b"HTTP/1.1 ") < count:  # noqa: ASYNC110
            await asyncio.sleep(0)


async def test_a_body_sent_after_its_answer_leaves_the_keep_alive_timer_running() -> None:
    protocol, transport = await _connection()
    protocol.data_received(b"GET /health/live HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
    await _answered(transport, 1)
    protocol.data_received(b"hello")  # the body, after the response ended
    assert protocol.timeout_keep_alive_task is not None  # before the fix: no timer at all
    protocol.connection_lost(None)


async def test_bytes_that_are_no_request_wait_for_the_answer_before_them() -> None:
    protocol, transport = await _connection()
    protocol.data_received(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01")
    await _answered(transport, 2)
    first, second = transport.written.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"200") and second.startswith(b"400")
    assert b'"code":"invalid_http"' in second and transport.closed
    protocol.connection_lost(None)
