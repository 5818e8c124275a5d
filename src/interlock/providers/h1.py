"""A lean HTTP/1.1 client for upstream calls: a keep-alive pool over asyncio
protocols, with httptools (the parser uvicorn uses) reading responses.

Written by hand because the upstream call is on the path of every request and
aiohttp's client spends several times this one's CPU per call (the figures:
``bench/README.md``, "Upstream client cost") on features an upstream call
never uses (cookies, redirects, multipart, hooks). This does what the adapters
need and nothing else: HTTP/1.1 over TCP or TLS; content-length, chunked and
read-until-close bodies; gzip/deflate if a server compresses anyway; a bounded
pool of keep-alive connections; and a timeout on connecting, on waiting for a
pooled connection, on every read, and on the whole call.

A pool opens its connections through a ``Dialer``: ``TcpDialer`` (TCP, TLS
when given a context) unless the caller passes another, such as the proxy
tunnel in ``interlock.providers.proxy``. Once open, every connection is the
same to the pool.

Errors are this module's own (``H1Error`` and subclasses); the caller maps
them to its error model.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar, cast
from urllib.parse import urlsplit

import httptools

__all__ = [
    "ConnectionPool",
    "Dialer",
    "H1Broken",
    "H1ConnectError",
    "H1Error",
    "H1ProtocolError",
    "H1Timeout",
    "Origin",
    "Response",
    "TcpDialer",
]

# Per response: header block, and body held while nobody reads it.
_MAX_HEADER_BYTES = 1024 * 1024
_MAX_BODY_BYTES = 64 * 1024 * 1024
# A streamed body pauses the socket above this many unread bytes.
_STREAM_HIGH_WATER = 256 * 1024


class H1Error(Exception):
    """Anything that went wrong talking to the upstream."""


class H1ConnectError(H1Error):
    """No connection could be made (refused, unreachable, DNS, TLS handshake,
    a proxy that refused the tunnel)."""


class H1Broken(H1Error):
    """The connection closed or reset before the response was complete."""


class H1ProtocolError(H1Error):
    """The upstream did not speak HTTP/1.1 (or broke a size bound)."""


class H1Timeout(H1Error):
    """Connecting, waiting for a pooled connection, a read or the whole call took too long."""


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        return host if self.port == default else f"{host}:{self.port}"


def split_url(url: str) -> tuple[Origin, str]:
    """``(origin, request-target)`` of an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Origin(parts.scheme, parts.hostname, port), target


class Response:
    """One response: status and headers at once, the body as it arrives."""

    __slots__ = (
        "_buffered",
        "_chunks",
        "_conn",
        "_decoder",
        "_done",
        "_error",
        "_reading_all",
        "_waiter",
        "headers",
        "status",
    )

    def __init__(self, conn: _Connection, status: int, headers: dict[str, str]):
        self._conn = conn
        self.status = status
        self.headers = headers  # names lower-cased; a repeated header keeps the last value
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._error: H1Error | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._reading_all = False
        self._decoder = _decoder_for(headers.get("content-encoding", ""))

    # -- reading (the caller's side) -------------------------------------------

    async def read(self) -> bytes:
        """The whole body; the connection goes back to the pool at its end."""
        self._reading_all = True
        if not self._done:
            self._conn.resume()
        while not self._done and self._error is None:
            await self._wait()
        if self._error is not None:
            raise self._error
        body = b"".join(self._chunks)
        self._chunks.clear()
        return body

    async def readany(self) -> bytes:
        """The next bytes of the body that arrived; ``b""`` at its end."""
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._done:
                return b""
            await self._wait()
        data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks.clear()
        self._buffered = 0
        if not self._done:  # once done, the connection may already serve another call
            self._conn.resume()
        return data

    @property
    def complete(self) -> bool:
        return self._done

    def close(self) -> None:
        """Stop here: the connection is closed, never reused mid-body."""
        if not self._done:
            self._conn.abort()

    async def _wait(self) -> None:
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- feeding (the connection's side) ---------------------------------------

    def _feed(self, data: bytes) -> None:
        if self._decoder is not None:
            try:
                data = self._decoder.decompress(data)
            except zlib.error as exc:
                self._fail(H1ProtocolError(f"bad compressed body: {exc}"))
                return
        if not data:
            return
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > _MAX_BODY_BYTES:
            self._fail(H1ProtocolError(f"response body over {_MAX_BODY_BYTES} bytes unread"))
            return
        if self._buffered > _STREAM_HIGH_WATER and not self._reading_all:
            self._conn.pause()
        self._wake()

    def _finish(self) -> None:
        if self._decoder is not None:
            tail = self._decoder.flush()
            if tail:
                self._chunks.append(tail)
        self._done = True
        self._wake()

    def _fail(self, error: H1Error) -> None:
        if not self._done and self._error is None:
            self._error = error
            self._conn.abort()
        self._wake()


class _Decoder(Protocol):
    def decompress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


def _decoder_for(encoding: str) -> _Decoder | None:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj(wbits=zlib.MAX_WBITS)
    return _Unsupported(encoding)


class _Unsupported:
    def __init__(self, encoding: str):
        self.encoding = encoding

    def decompress(self, data: bytes) -> bytes:
        raise zlib.error(f"content-encoding {self.encoding!r} is not supported")

    def flush(self) -> bytes:
        return b""


class _Connection(asyncio.Protocol):
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
                response._fail(H1Broken(_broken(exc, "mid-response")))
        elif self._head is not None and not self._head.done():
            where = "after part of the response head" if self._received_any else "before replying"
            error = _Stale if (self.reused and not self._received_any) else H1Broken
            self._head.set_exception(error(_broken(exc, where)))
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


class _Stale(H1Broken):
    """A reused keep-alive connection the server had already closed."""


def _broken(exc: Exception | None, where: str) -> str:
    cause = f": {type(exc).__name__}: {exc}" if exc is not None else ""
    return f"upstream closed the connection {where}{cause}"


_P = TypeVar("_P", bound=asyncio.BaseProtocol)


class Dialer(Protocol):
    """Opens one connection for a pool. The pool bounds the call with its
    connect timeout and maps ``OSError``/``ssl.SSLError`` to ``H1ConnectError``
    naming ``where``; a dialer may raise ``H1ConnectError`` itself."""

    where: str  # the destination in error messages, without credentials

    async def open(self, factory: Callable[[], _P]) -> tuple[asyncio.BaseTransport, _P]: ...


class TcpDialer:
    """A direct TCP connection, with TLS (SNI and host name check) given a context."""

    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        where: str | None = None,
    ):
        self.where = where or f"{host}:{port}"
        self._host = host
        self._port = port
        self._ssl = ssl_context

    async def open(self, factory: Callable[[], _P]) -> tuple[asyncio.BaseTransport, _P]:
        return await asyncio.get_running_loop().create_connection(
            factory,
            self._host,
            self._port,
            ssl=self._ssl,
            server_hostname=self._host if self._ssl is not None else None,
        )


class ConnectionPool:
    """Keep-alive connections to one origin, at most ``max_connections`` open.

    Without a ``dialer`` they go straight to the origin, over TLS for https
    (``ssl_context``, else the system's CAs)."""

    def __init__(
        self,
        origin: Origin,
        max_connections: int,
        connect_s: float,
        idle_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        dialer: Dialer | None = None,
    ):
        self.origin = origin
        self.loop = asyncio.get_running_loop()
        self._max = max_connections
        self._connect_s = connect_s
        self._idle_s = idle_s
        if dialer is None:
            if origin.scheme == "https" and ssl_context is None:
                ssl_context = ssl.create_default_context()
            dialer = TcpDialer(origin.host, origin.port, ssl_context)
        self._dialer = dialer
        # Idle connections in the order they were released: the newest is
        # reused first (warm), the oldest closed first after ``idle_s``. A dict
        # as an ordered set: both ends and removal are O(1) at 10,000 streams.
        self._idle: dict[_Connection, None] = {}
        self._reaper: asyncio.TimerHandle | None = None
        self._open = 0  # connected or connecting
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._closing = False

    @property
    def open_connections(self) -> int:
        return self._open

    async def request(
        self,
        head: bytes,
        body: bytes | None,
        read_s: float,
        total_s: float | None = None,
    ) -> Response:
        """Send one request; returns at the response head. Its body is read
        from the ``Response``; the connection returns to the pool at its end."""
        request = [head] if body is None else [head, body]
        for _ in range(2):
            conn = await self._acquire()
            conn.send(request, read_s, total_s)
            try:
                return await conn.response()
            except _Stale:
                continue  # the server closed it while idle: once more, on a fresh one
            except asyncio.CancelledError:
                conn.abandon()
                raise
        raise H1Broken("upstream closed two connections in a row before replying")

    async def aclose(self) -> None:
        self._closing = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for conn in list(self._idle):
            conn.abort()
        self._idle.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(H1ConnectError("connection pool closed"))

    # -- checkout ----------------------------------------------------------------

    async def _acquire(self) -> _Connection:
        if self._closing:
            raise H1ConnectError("connection pool closed")
        now = self.loop.time()
        while self._idle:
            conn, _ = self._idle.popitem()  # the newest
            if not conn.closed and now - conn.idle_since < self._idle_s:
                conn.reused = True
                return conn
            conn.abort()
        if self._open < self._max:
            return await self._connect()
        waiter: asyncio.Future[_Connection | None] = self.loop.create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self._connect_s):
                handed = await waiter
        except TimeoutError:
            self._abandon(waiter)
            raise H1Timeout(
                f"no free upstream connection within {self._connect_s:g} s ({self._max} in use)"
            ) from None
        except BaseException:
            self._abandon(waiter)
            raise
        if handed is None:  # a slot, not a connection: open one in it
            return await self._connect(slot_reserved=True)
        handed.reused = True
        return handed

    async def _connect(self, slot_reserved: bool = False) -> _Connection:
        if not slot_reserved:
            self._open += 1
        where = self._dialer.where
        try:
            async with asyncio.timeout(self._connect_s):
                transport, conn = await self._dialer.open(lambda: _Connection(self))
        except TimeoutError:
            self._slot_freed()
            raise H1Timeout(f"could not connect to {where} in {self._connect_s:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            self._slot_freed()
            raise H1ConnectError(
                f"cannot connect to {where}: {type(exc).__name__}: {exc}"
            ) from None
        except BaseException:
            self._slot_freed()
            raise
        # uvloop may resolve create_connection before calling connection_made.
        if conn.transport is None:
            conn.connection_made(transport)
        return conn

    # -- the connections' side ---------------------------------------------------

    def _abandon(self, waiter: asyncio.Future[_Connection | None]) -> None:
        """A waiter gave up; what was handed to it just before goes to the next."""
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            handed = waiter.result()
            if handed is None:
                self._slot_freed()
            else:
                self._release(handed)
        else:
            waiter.cancel()

    def _release(self, conn: _Connection) -> None:
        if conn.closed or self._closing:
            conn.abort()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        conn.idle_since = self.loop.time()
        self._idle[conn] = None
        if self._reaper is None:
            self._reaper = self.loop.call_at(conn.idle_since + self._idle_s, self._reap)

    def _reap(self) -> None:
        """Close connections idle for ``idle_s``: after a burst they would
        otherwise hold their sockets (file descriptors) for good."""
        self._reaper = None
        now = self.loop.time()
        while self._idle:
            oldest = next(iter(self._idle))
            if now - oldest.idle_since < self._idle_s:
                self._reaper = self.loop.call_at(oldest.idle_since + self._idle_s, self._reap)
                return
            del self._idle[oldest]
            oldest.abort()

    def _closed(self, conn: _Connection) -> None:
        self._idle.pop(conn, None)
        self._slot_freed()

    def _slot_freed(self) -> None:
        self._open -= 1
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._open += 1  # the waiter connects in this slot
                waiter.set_result(None)
                return


def header_block(headers: Mapping[str, str]) -> str:
    """``name: value`` lines, each ending in CRLF. Refuses CR/LF in any name or
    value, which would otherwise let one header smuggle more into the request."""
    lines = []
    for name, value in headers.items():
        if "\r" in name or "\n" in name or ":" in name or "\r" in value or "\n" in value:
            raise ValueError(f"invalid header {name!r}")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines)


def encode_head(method: str, target: str, block: str, content_length: int | None) -> bytes:
    """The request line and header block (``block`` from ``header_block``)."""
    length = "" if content_length is None else f"content-length: {content_length}\r\n"
    return f"{method} {target} HTTP/1.1\r\n{block}{length}\r\n".encode("latin-1")
