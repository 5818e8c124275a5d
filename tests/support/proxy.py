"""A real HTTP proxy on loopback: CONNECT tunnels and absolute-form forwarding.

It runs in the test's own event loop. ``hosts`` maps names to addresses, so a
test can use a name that only the proxy resolves (as a real proxy would,
through its DNS) and check that the client never resolves it itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Mapping
from urllib.parse import urlsplit

from tests.support.loopback import LoopbackServer

__all__ = ["ConnectProxy"]


class ConnectProxy(LoopbackServer):
    """Counts what it did: ``connects`` (every CONNECT target), ``tunnels``
    (those it opened), ``forwarded`` (absolute-form targets it relayed) and
    ``authorizations`` (every Proxy-Authorization value, or None).

    ``credentials`` makes it demand Basic auth (407 without); ``refuse``
    answers every CONNECT with that status; ``stall`` never answers one."""

    def __init__(
        self,
        *,
        credentials: tuple[str, str] | None = None,
        refuse: int | None = None,
        stall: bool = False,
        hosts: Mapping[str, str] | None = None,
    ):
        super().__init__()
        self._expected = None
        if credentials is not None:
            token = base64.b64encode(":".join(credentials).encode()).decode()
            self._expected = f"Basic {token}"
        self._refuse = refuse
        self._stall = stall
        self._hosts = dict(hosts or {})
        self.connects: list[str] = []
        self.tunnels = 0
        self.forwarded: list[str] = []
        self.authorizations: list[str | None] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        return self.url.replace("http://", f"http://{user}:{password}@")

    # -- one client connection ---------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, headers = _parse(head)
            if not self._authorized(headers):
                await _reply(writer, b"407 Proxy Authentication Required", auth=True)
            elif method == "CONNECT":
                await self._tunnel(target, reader, writer)
            else:
                await self._forward(head, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            await _close(writer)

    def _authorized(self, headers: dict[str, str]) -> bool:
        given = headers.get("proxy-authorization")
        self.authorizations.append(given)
        return self._expected is None or given == self._expected

    async def _dial(self, authority: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, _, port = authority.rpartition(":")
        host = host.strip("[]")
        reader, writer = await asyncio.open_connection(self._hosts.get(host, host), int(port))
        self._writers.add(writer)
        return reader, writer

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connects.append(target)
        if self._refuse is not None:
            await _reply(writer, b"%d Refused by policy" % self._refuse)
            return
        if self._stall:  # never answer; hold the connection until the client leaves
            await reader.read()
            return
        try:
            up_reader, up_writer = await self._dial(target)
        except OSError:
            await _reply(writer, b"502 Bad Gateway")
            return
        self.tunnels += 1
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        try:
            await _both_ways(reader, writer, up_reader, up_writer)
        finally:
            await _close(up_writer)
            self._writers.discard(up_writer)

    async def _forward(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Relay absolute-form requests to their origin in origin form; the
        responses come back byte for byte."""
        method, target, headers = _parse(head)
        origin = urlsplit(target).netloc
        up_reader, up_writer = await self._dial(origin)
        back = asyncio.ensure_future(_copy(up_reader, writer))
        try:
            while True:
                self.forwarded.append(target)
                parts = urlsplit(target)
                path = parts.path + (f"?{parts.query}" if parts.query else "")
                lines = head.split(b"\r\n")[1:]
                kept = [h for h in lines if not h.lower().startswith(b"proxy-authorization:")]
                up_writer.write(f"{method} {path} HTTP/1.1\r\n".encode() + b"\r\n".join(kept))
                up_writer.write(await reader.readexactly(int(headers.get("content-length", 0))))
                head = await reader.readuntil(b"\r\n\r\n")
                method, target, headers = _parse(head)
                if urlsplit(target).netloc != origin or not self._authorized(headers):
                    break  # one origin per client connection is all the tests need
        finally:
            back.cancel()
            await asyncio.gather(back, return_exceptions=True)
            await _close(up_writer)
            self._writers.discard(up_writer)


def _parse(head: bytes) -> tuple[str, str, dict[str, str]]:
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    return method, target, headers


async def _reply(writer: asyncio.StreamWriter, status: bytes, auth: bool = False) -> None:
    challenge = b'proxy-authenticate: Basic realm="test"\r\n' if auth else b""
    writer.write(b"HTTP/1.1 " + status + b"\r\n" + challenge + b"content-length: 0\r\n\r\n")
    await writer.drain()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


async def _both_ways(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """Pipe until either side closes."""
    pipes = [
        asyncio.ensure_future(_copy(reader, up_writer)),
        asyncio.ensure_future(_copy(up_reader, writer)),
    ]
    try:
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()
