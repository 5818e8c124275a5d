"""Keep-alive connections to one origin, bounded, opened through a dialer."""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable
from typing import Protocol, TypeVar

from interlock.providers.h1.connection import Connection
from interlock.providers.h1.errors import H1Broken, H1ConnectError, H1Timeout, StaleConnection
from interlock.providers.h1.response import Response
from interlock.providers.h1.wire import Origin

__all__ = ["ConnectionPool", "Dialer", "TcpDialer"]


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
        self._idle: dict[Connection, None] = {}
        self._reaper: asyncio.TimerHandle | None = None
        self._open = 0  # connected or connecting
        self._waiters: deque[asyncio.Future[Connection | None]] = deque()
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
            except StaleConnection:
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

    async def _acquire(self) -> Connection:
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
        waiter: asyncio.Future[Connection | None] = self.loop.create_future()
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

    async def _connect(self, slot_reserved: bool = False) -> Connection:
        if not slot_reserved:
            self._open += 1
        where = self._dialer.where
        try:
            async with asyncio.timeout(self._connect_s):
                transport, conn = await self._dialer.open(lambda: Connection(self))
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

    def _abandon(self, waiter: asyncio.Future[Connection | None]) -> None:
        """A waiter gave up; what was handed to it just before goes to the next."""
        if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
            handed = waiter.result()
            if handed is None:
                self._slot_freed()
            else:
                self._release(handed)
        else:
            waiter.cancel()

    def _release(self, conn: Connection) -> None:
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

    def _closed(self, conn: Connection) -> None:
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
