"""One keep-alive connection: an asyncio protocol fed to httptools' parser,
with one lazily re-armed timer for the read timeout and the call's deadline."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, cast

import httptools

from interlock.providers.h1.errors import (
    H1Broken,
    H1Error,
    H1ProtocolError,
    H1Timeout,
    StaleConnection,
)
from interlock.providers.h1.response import Response

if TYPE_CHECKING:
    from interlock.providers.h1.pool import ConnectionPool

__all__ = ["Connection", "broken_message"]

# Per response: the header block.
_MAX_HEADER_BYTES = 1024 * 1024


class Connection(asyncio.Protocol):
    """One keep-alive connection: at most one request in flight."""

    def __init__(self, pool: ConnectionPool):
        self._pool = pool
        self._loop = pool.loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._headers: dict[str, str] = {}
        self._header_bytes = 0
        self._head: asyncio.Future[Response] | None = None
        self._response: Response | None = None
        self._received_any = False
        self._paused = False
        # Timeouts: one timer re-armed lazily, instead of one per read.
        self._read_s = 0.0
        self._deadline: float | None = None
        self._total_s: float | None = None
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # -- the caller's side -------------------------------------------------------

    def send(self, request: list[bytes], read_s: float, total_s: float | None) -> None:
        if self.reused:
            self._parser = httptools.HttpResponseParser(self)
        self._headers = {}
        self._header_bytes = 0
        self._response = None
        self._received_any = False
        self._head = self._loop.create_future()
        now = self._loop.time()
        self._read_s = read_s
        self._deadline = None if total_s is None else now + total_s
        self._total_s = total_s
        self._last_read = now
        self._arm(now)
        assert self.transport is not None
        self.transport.writelines(request)

    async def response(self) -> Response:
        assert self._head is not None
        return await self._head

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self._last_read = self._loop.time()  # a slow reader is not a slow upstream
            self.transport.resume_reading()

    def abandon(self) -> None:
        """The caller left before the response head: close, expecting nothing."""
        if self._head is not None and not self._head.done():
            self._head.cancel()
        self.abort()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abort()

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is not None:
            return
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self._head is None:  # nothing was asked: a confused server
            self.abort()
            return
        self._received_any = True
        self._last_read = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self._error(cause if isinstance(cause, H1Error) else H1ProtocolError(str(exc)))
        except httptools.HttpParserError as exc:
            self._error(H1ProtocolError(f"malformed upstream response: {exc}"))
        except httptools.HttpParserUpgrade:
            self._error(H1ProtocolError("upstream switched protocols"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost finishes the response

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        response = self._response
        if response is not None and not response._done:
            if exc is None and self._reads_until_close():
                response._finish()  # a body delimited by the connection's end
            else:
                response._fail(H1Broken(broken_message(exc, "mid-response")))
        elif self._head is not None and not self._head.done():
            where = "after part of the response head" if self._received_any else "before replying"
            error = StaleConnection if (self.reused and not self._received_any) else H1Broken
            self._head.set_exception(error(broken_message(exc, where)))
        self._pool._closed(self)

    # -- httptools callbacks -----------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > _MAX_HEADER_BYTES:
            raise H1ProtocolError(f"response headers over {_MAX_HEADER_BYTES} bytes")
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if self._head is None:  # a second response to one request
            raise H1ProtocolError("upstream sent more than one response")
        response = self._response = Response(self, self._parser.get_status_code(), self._headers)
        if self._head is not None and not self._head.done():
            self._head.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self._response is not None:
            self._response._feed(body)

    def on_message_complete(self) -> None:
        response = self._response
        if response is None or self._head is None:
            return
        self._disarm()
        self._head = None
        if self._parser.should_keep_alive() and not response._error and not self.closed:
            response._finish()
            self._pool._release(self)
        else:
            response._finish()
            self.abort()

    # -- internals ---------------------------------------------------------------

    def _reads_until_close(self) -> bool:
        headers = self._headers
        return "content-length" not in headers and "chunked" not in headers.get(
            "transfer-encoding", ""
        )

    def _error(self, error: H1Error) -> None:
        if self._response is not None:
            self._response._fail(error)
        elif self._head is not None and not self._head.done():
            self._head.set_exception(error)
        self.abort()

    def _arm(self, now: float) -> None:
        due = self._last_read + self._read_s
        if self._deadline is not None:
            due = min(due, self._deadline)
        self._disarm()
        self._timer = self._loop.call_at(max(due, now), self._check_time)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_time(self) -> None:
        self._timer = None
        now = self._loop.time()
        if self._deadline is not None and now >= self._deadline:
            self._error(H1Timeout(f"no complete answer from upstream within {self._total_s:g} s"))
        elif not self._paused and now - self._last_read >= self._read_s:
            self._error(H1Timeout(f"no data from upstream for {self._read_s:g} s"))
        else:
            if self._paused:
                self._last_read = now
            self._arm(now)


def broken_message(exc: Exception | None, where: str) -> str:
    cause = f": {type(exc).__name__}: {exc}" if exc is not None else ""
    return f"upstream closed the connection {where}{cause}"
