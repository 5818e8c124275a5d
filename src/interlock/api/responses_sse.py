"""The Responses API's stream: semantic events as server-sent events.

``ResponsesSSE`` writes a ``ChatStream`` the pipeline opened the way
``api/sse.py`` writes OpenAI chunks (heartbeats while the first chunk is
awaited, each chunk the moment it arrives, the client watched for leaving),
but every chunk goes through ``ResponseEvents`` and out as
``event: <type>`` + ``data: <json>``, each with its ``sequence_number``.
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

import orjson
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
            await _send(send, events.start())
            try:
                async for _ in stream.opening():
                    await send(
                        {"type": "http.response.body", "body": _HEARTBEAT, "more_body": True}
                    )
                if stream.first is not None:
                    await _send(send, events.feed(orjson.loads(stream.first)))
                async for chunk in stream.chunks:
                    await _send(send, events.feed(orjson.loads(chunk)))
                closing = events.finish()
                if self._keep is not None and events.response is not None:
                    await self._keep(events.response)
                await _send(send, closing)
            except InterlockError as exc:
                message = safe_message(exc, self._redactor)
                log.warning(
                    "stream failed after the response started",
                    extra={
                        "request_id": scope.get("interlock.request_id"),
                        "error": message,
                        "status": exc.status_code,
                    },
                )
                error = events.error(exc.code or exc.error_type, message, exc.param)
                await _send(send, [error])
            await send({"type": "http.response.body", "body": b"", "more_body": False})
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


async def _send(send: Send, events: list[dict[str, Any]]) -> None:
    """Events as one write: a chunk's events go out together (a chunk may make none)."""
    if not events:
        return
    data = b"".join(
        b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"
        for event in events
    )
    await send({"type": "http.response.body", "body": data, "more_body": True})
