"""Server-sent events out to the client, OpenAI style.

``SSEResponse`` forwards each chunk the moment it arrives (one ``send`` per
chunk, no batching), ends with ``data: [DONE]``, and watches the client: a
disconnect cancels the producer at once, which closes the upstream
connection, so the model server stops generating for nobody.

The first chunk is awaited *before* the response starts, so a failure to
reach the upstream still gets a proper HTTP status; after the first byte a
failure becomes an SSE error event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from starlette.types import Receive, Scope, Send

from interlock.api.errors import error_event
from interlock.errors import InterlockError

__all__ = ["SSEResponse"]

log = logging.getLogger("interlock.stream")

_DONE = b"data: [DONE]\n\n"
_HEARTBEAT = b": heartbeat\n\n"
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


Start = tuple[bytes | None, AsyncIterator[bytes]]


class SSEResponse:
    """Either the stream has started (``first`` and ``chunks`` given), or it
    is still waiting for its first token (``pending``): then the response
    starts now and SSE comment heartbeats keep proxies from timing out until
    the first token comes, or the failure becomes an SSE error event."""

    def __init__(
        self,
        chunks: AsyncIterator[bytes] | None = None,
        first: bytes | None = None,
        *,
        pending: asyncio.Future[Start] | None = None,
        heartbeat_interval_s: float = 10.0,
        on_close: Callable[[], None] | None = None,
    ):
        self._chunks = chunks
        self._first = first
        self._pending = pending
        self._heartbeat_interval_s = heartbeat_interval_s
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        client_gone = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(
            _watch_disconnect(receive, task, client_gone)
        )
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            try:
                if self._pending is not None:
                    self._first, self._chunks = await self._await_start(self._pending, send)
                if self._first is not None:
                    await send(_body(b"data: " + self._first + b"\n\n"))
                assert self._chunks is not None
                async for chunk in self._chunks:
                    await send(_body(b"data: " + chunk + b"\n\n"))
            except InterlockError as exc:
                log.warning(
                    "stream failed after the response started",
                    extra={
                        "request_id": scope.get("interlock.request_id"),
                        "error": exc.message,
                        "status": exc.status_code,
                    },
                )
                await send(_body(error_event(exc)))
            await send({"type": "http.response.body", "body": _DONE, "more_body": False})
        except (asyncio.CancelledError, OSError):
            if not client_gone.is_set():
                raise
            # The client left: stop quietly. Uncancel so the server's task
            # is not left in a cancelled state by our own doing.
            task.uncancel()
            log.info(
                "client disconnected mid-stream",
                extra={"request_id": scope.get("interlock.request_id")},
            )
        finally:
            watcher.cancel()
            await self._close()

    async def _await_start(self, pending: asyncio.Future[Start], send: Send) -> Start:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=self._heartbeat_interval_s)
            if done:
                return pending.result()
            await send(_body(_HEARTBEAT))

    async def _close(self) -> None:
        if self._pending is not None and not self._pending.done():
            self._pending.cancel()
            await asyncio.gather(self._pending, return_exceptions=True)
        if self._chunks is not None:
            await _close(self._chunks)
        if self._on_close is not None:
            self._on_close()


def _body(data: bytes) -> dict[str, object]:
    return {"type": "http.response.body", "body": data, "more_body": True}


async def _watch_disconnect(
    receive: Receive, streaming_task: asyncio.Task[object], client_gone: asyncio.Event
) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            client_gone.set()
            streaming_task.cancel()
            return


async def _close(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
