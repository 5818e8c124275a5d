"""The drain serves the connections waiting in the listen queue.

Closing a listening socket resets the connections whose handshake the
kernel completed but the server had not accepted yet; a proxy that had sent
a request on one answers 502 and does not resend a POST. Here the server's
accepting is paused, clients connect and send their requests into the
queue, and the gateway is told to stop: every one of them is answered.
"""

from __future__ import annotations

import asyncio
import signal
import socket
from typing import Any

import uvicorn

from interlock.api.middleware import DrainState
from interlock.api.protocol import GatewayProtocol
from interlock.config import ServerConfig
from interlock.server import GatewayServer

CLIENTS = 5
REQUEST = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"served"})


async def test_connections_in_the_listen_queue_are_served_not_reset() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, http=GatewayProtocol.bind(ServerConfig())
    )
    server = GatewayServer(config, DrainState(), [], None)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    async with asyncio.timeout(10):
        while not server.started:  # noqa: ASYNC110 - uvicorn has no event for it
            await asyncio.sleep(0.01)
    loop = asyncio.get_running_loop()
    for running in server.servers:  # the server accepts no more: the queue fills
        for sock in running.sockets:
            loop.remove_reader(sock.fileno())

    clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(CLIENTS)]
    for _, writer in clients:
        writer.write(REQUEST)
        await writer.drain()
    server.handle_exit(signal.SIGTERM, None)

    async with asyncio.timeout(10):
        answers = [await reader.read() for reader, _ in clients]
        await serving
    for _, writer in clients:
        writer.close()
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert b"\r\nserved\r\n" in answer  # and the drain closed it after: read() ended
