"""One response as its connection feeds it: status and headers at once, the
body as it arrives, bounded, decompressed if a server compressed it."""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from typing import TYPE_CHECKING, Protocol

from interlock.providers.h1.errors import H1Error, H1ProtocolError

if TYPE_CHECKING:
    from interlock.providers.h1.connection import Connection

__all__ = ["Response"]

# Body held while nobody reads it.
_MAX_BODY_BYTES = 64 * 1024 * 1024
# A streamed body pauses the socket above this many unread bytes.
_STREAM_HIGH_WATER = 256 * 1024


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

    def __init__(self, conn: Connection, status: int, headers: dict[str, str]):
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
