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
from collections.abc import AsyncIterator

from starlette.types import Receive, Scope, Send

from interlock.api.errors import error_event
from interlock.errors import InterlockError

__all__ = ["SSEResponse"]

log = logging.getLogger("interlock.stream")

_DONE = b"data: [DONE]\n\n"
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class SSEResponse:
    def __init__(self, chunks: AsyncIterator[bytes], first: bytes | None):
        self._chunks = chunks
        self._first = first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        client_gone = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(
            _watch_disconnect(receive, task, client_gone)
        )
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            if self._first is not None:
                await send(_body(b"data: " + self._first + b"\n\n"))
            try:
                async for chunk in self._chunks:
                    await send(_body(b"data: " + chunk + b"\n\n"))
            except InterlockError as exc:
                log.warning(
                    "stream failed after first byte",
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
            await _close(self._chunks)


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
