"""A loopback upstream over TCP or TLS that answers every request with one JSON body.

It runs in the test's own event loop, keeps connections alive, and records
what it saw: connections, each request's head, and the client certificate
of each TLS connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from tests.support.loopback import LoopbackServer

__all__ = ["RawUpstream"]


class RawUpstream(LoopbackServer):
    def __init__(self, body: bytes = b'{"ok": true}', ssl_context: ssl.SSLContext | None = None):
        super().__init__(ssl_context)
        self._response = (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%s" % (len(body), body)
        )
        self.connections = 0
        self.heads: list[bytes] = []
        self.client_certs: list[Any] = []

    def url(self, host: str = "127.0.0.1", path: str = "/v1/x") -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.client_certs.append(writer.get_extra_info("peercert"))
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                await reader.readexactly(_content_length(head))
                writer.write(self._response)
                await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # the client closed (or, with TLS, never finished its handshake)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
                await writer.wait_closed()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0
