"""The part every hand-written loopback server in the tests shares: listen
on 127.0.0.1 (over TLS given a context), in the test's own event loop, and
on exit close every connection still open and wait for its handler."""

from __future__ import annotations

import asyncio
import ssl
from typing import Self

__all__ = ["LoopbackServer"]


class LoopbackServer:
    def __init__(self, ssl_context: ssl.SSLContext | None = None):
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        # Every stream to close on exit: the clients', and any a subclass opens.
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self._ssl)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=10)
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection; closing ``writer`` is the handler's."""
        raise NotImplementedError

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        try:
            await self.handle(reader, writer)
        finally:
            self._writers.discard(writer)
            self._handlers.discard(task)
