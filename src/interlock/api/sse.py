"""Server-sent events out to the client, in any dialect.

``EventStream`` writes a ``ChatStream`` the pipeline opened, through an
``Encoder`` that turns it into one dialect's events: heartbeats while its
first chunk is awaited, then each chunk's events the moment the chunk
arrives (one ``send`` per chunk that makes any, no batching), then the
closing events. It watches the client: a disconnect cancels the stream at
once, which closes the upstream connection, so the model server stops
generating for nobody.

``OpenAIEvents`` is OpenAI's encoding (``data: <chunk>``, ``data: [DONE]``,
SSE comments as heartbeats); the Anthropic and Responses edges bring their
own (``api/messages.py``, ``api/responses_sse.py``).

When the response starts is the stream's decision (``pipeline/stream.py``):
a failure before then got its HTTP status from the pipeline; a failure after
the first byte becomes the encoder's error event here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from starlette.types import Receive, Scope, Send

from interlock.api.errors import error_event, safe_message
from interlock.errors import InterlockError
from interlock.pipeline import ChatStream
from interlock.redaction import Redactor

__all__ = ["SSE_HEADERS", "Encoder", "EventStream", "OpenAIEvents", "watch_disconnect"]

log = logging.getLogger("interlock.stream")

_DONE = b"data: [DONE]\n\n"
_HEARTBEAT = b": heartbeat\n\n"
# Every server-sent event stream's response head; no proxy may buffer it.
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class Encoder(Protocol):
    """One dialect's events for a stream of chat chunks."""

    def opening(self) -> bytes:
        """What comes before the first chunk's events (may be empty)."""
        ...

    def heartbeat(self) -> bytes:
        """Written while the first chunk is awaited."""
        ...

    def feed(self, chunk: bytes) -> bytes:
        """The events for one chunk (the bytes of its JSON object); may be empty."""
        ...

    async def finish(self) -> bytes:
        """The closing events, once the chunks ended."""
        ...

    def error(self, exc: InterlockError, message: str) -> bytes:
        """The last events for a failure after the response started;
        ``message``: the error's text, redacted."""
        ...


class OpenAIEvents:
    """OpenAI's stream: each chunk as ``data: <json>``, then ``data: [DONE]``.
    ``translate``: each chunk into another shape first (legacy completions)."""

    __slots__ = ("_redactor", "feed")

    def __init__(self, redactor: Redactor, translate: Callable[[bytes], bytes] | None = None):
        self._redactor = redactor
        if translate is None:
            self.feed: Callable[[bytes], bytes] = _data
        else:
            self.feed = lambda chunk: _data(translate(chunk))

    def opening(self) -> bytes:
        return b""

    def heartbeat(self) -> bytes:
        return _HEARTBEAT

    async def finish(self) -> bytes:
        return _DONE

    def error(self, exc: InterlockError, message: str) -> bytes:
        return error_event(exc, self._redactor) + _DONE


def _data(chunk: bytes) -> bytes:
    return b"data: " + chunk + b"\n\n"


class EventStream:
    def __init__(self, stream: ChatStream, encoder: Encoder, redactor: Redactor):
        self._stream = stream
        self._encoder = encoder
        self._redactor = redactor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        client_gone = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(
            watch_disconnect(receive, task, client_gone)
        )
        stream, encoder = self._stream, self._encoder
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            # The opening goes at once while the first chunk is awaited, else
            # in one write with the first chunk's events.
            pending = encoder.opening()
            if stream.first is None and pending:
                await send(_body(pending))
                pending = b""
            try:
                async for _ in stream.opening():
                    await send(_body(encoder.heartbeat()))
                feed = encoder.feed
                if stream.first is not None:
                    pending += feed(stream.first)
                if pending:
                    await send(_body(pending))
                    pending = b""
                async for chunk in stream.chunks:
                    if data := feed(chunk):  # a usage chunk may make none
                        await send({"type": "http.response.body", "body": data, "more_body": True})
                last = await encoder.finish()
            except InterlockError as exc:
                # After the opening, if it had not gone out yet.
                last = pending + encoder.error(exc, self._failed(scope, exc))
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

    def _failed(self, scope: Scope, exc: InterlockError) -> str:
        record = scope.get("interlock.record")
        if record is not None:
            record.error_code = exc.code or exc.error_type
        message = safe_message(exc, self._redactor)
        log.warning(
            "stream failed after the response started",
            extra={
                "request_id": scope.get("interlock.request_id"),
                "error": message,
                "status": exc.status_code,
            },
        )
        return message


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
