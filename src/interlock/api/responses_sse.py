"""The Responses API's stream: semantic events as server-sent events.

``ResponsesSSE`` writes a ``ChatStream`` the pipeline opened the way
``api/sse.py`` writes OpenAI chunks (heartbeats while the first chunk is
awaited, each chunk the moment it arrives, the client watched for leaving),
but every chunk goes through ``ResponseEvents`` and out as
``event: <type>`` + ``data: <json>``, each with its ``sequence_number``:
one write per chunk that makes events, the opening events
(``response.created``, ``response.in_progress``) with the first chunk's
when it is already in, else at once.
There is no ``[DONE]``: ``response.completed`` (or ``response.incomplete``)
ends it, or an ``error`` event when the stream fails after it started.

The finished Response is handed to ``keep`` (the records store) before the
closing events are sent, so a client that saw ``response.completed`` can
read it back at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import Receive, Scope, Send

from interlock.api.errors import safe_message
from interlock.api.sse import watch_disconnect
from interlock.dialects.responses.stream import ResponseEvents
from interlock.errors import InterlockError
from interlock.pipeline import ChatStream
from interlock.redaction import Redactor

__all__ = ["Keep", "ResponsesSSE"]

log = logging.getLogger("interlock.stream")

# Called with the finished Response object.
Keep = Callable[[dict[str, Any]], Awaitable[None]]

_HEARTBEAT = b": keep-alive\n\n"
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ResponsesSSE:
    def __init__(
        self,
        stream: ChatStream,
        events: ResponseEvents,
        redactor: Redactor,
        keep: Keep | None = None,
    ):
        self._stream = stream
        self._events = events
        self._redactor = redactor
        self._keep = keep

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        client_gone = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(
            watch_disconnect(receive, task, client_gone)
        )
        stream, events = self._stream, self._events
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            # The opening events go at once while the first chunk is awaited,
            # else in one write with the first chunk's events.
            pending = events.start()
            if stream.first is None:
                await send(_body(pending))
                pending = b""
            try:
                async for _ in stream.opening():
                    await send(_body(_HEARTBEAT))
                feed = events.feed
                if stream.first is not None:
                    pending += feed(stream.first)
                if pending:
                    await send(_body(pending))
                    pending = b""
                async for chunk in stream.chunks:
                    if data := feed(chunk):  # a usage chunk makes none
                        await send({"type": "http.response.body", "body": data, "more_body": True})
                last = events.finish()
                if self._keep is not None and events.response is not None:
                    await self._keep(events.response)
            except InterlockError as exc:
                # After the opening events, if they had not gone out yet.
                last = pending + self._failed(scope, exc)
            await send({"type": "http.response.body", "body": last, "more_body": False})
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

    def _failed(self, scope: Scope, exc: InterlockError) -> bytes:
        """The ``error`` event for a failure after the response started."""
        message = safe_message(exc, self._redactor)
        log.warning(
            "stream failed after the response started",
            extra={
                "request_id": scope.get("interlock.request_id"),
                "error": message,
                "status": exc.status_code,
            },
        )
        return self._events.error(exc.code or exc.error_type, message, exc.param)


def _body(data: bytes) -> dict[str, object]:
    return {"type": "http.response.body", "body": data, "more_body": True}
