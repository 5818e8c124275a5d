"""Server-sent events out to the client, OpenAI style.

``SSEResponse`` writes a ``ChatStream`` the pipeline opened: heartbeats
(SSE comments) while its first chunk is awaited, then each chunk the moment
it arrives (one ``send`` per chunk, no batching), then ``data: [DONE]``. It
watches the client: a disconnect cancels the stream at once, which closes
the upstream connection, so the model server stops generating for nobody.

When the response starts is the stream's decision (``pipeline/stream.py``):
a failure before then got its HTTP status from the pipeline; a failure after
the first byte becomes an SSE error event here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from starlette.types import Receive, Scope, Send

from interlock.api.errors import error_event, safe_message
from interlock.errors import InterlockError
from interlock.pipeline import ChatStream
from interlock.redaction import Redactor

__all__ = ["SSEResponse", "watch_disconnect"]

log = logging.getLogger("interlock.stream")

_DONE = b"data: [DONE]\n\n"
_HEARTBEAT = b": heartbeat\n\n"
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class SSEResponse:
    """``translate``: each chunk into another dialect's JSON (legacy
    completions); None (chat) writes the pipeline's chunks as they are."""

    def __init__(
        self,
        stream: ChatStream,
        redactor: Redactor,
        translate: Callable[[bytes], bytes] | None = None,
    ):
        self._stream = stream
        self._redactor = redactor
        self._translate = translate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        client_gone = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(
            watch_disconnect(receive, task, client_gone)
        )
        stream = self._stream
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            try:
                async for _ in stream.opening():
                    await send(_body(_HEARTBEAT))
                first, chunks, translate = stream.first, stream.chunks, self._translate
                if translate is not None:
                    first = translate(first) if first is not None else None
                    chunks = _translated(chunks, translate)
                if first is not None:
                    await send(_body(b"data: " + first + b"\n\n"))
                async for chunk in chunks:
                    await send(_body(b"data: " + chunk + b"\n\n"))
            except InterlockError as exc:
                log.warning(
                    "stream failed after the response started",
                    extra={
                        "request_id": scope.get("interlock.request_id"),
                        "error": safe_message(exc, self._redactor),
                        "status": exc.status_code,
                    },
                )
                await send(_body(error_event(exc, self._redactor)))
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
            await stream.aclose()


async def _translated(
    chunks: AsyncIterator[bytes], translate: Callable[[bytes], bytes]
) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        yield translate(chunk)


def _body(data: bytes) -> dict[str, object]:
    return {"type": "http.response.body", "body": data, "more_body": True}


async def watch_disconnect(
    receive: Receive, streaming_task: asyncio.Task[object], client_gone: asyncio.Event
) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            client_gone.set()
            streaming_task.cancel()
            return
