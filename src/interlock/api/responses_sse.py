"""The Responses API's stream: semantic events for ``EventStream``.

``ResponsesEncoder`` writes ``ResponseEvents``' events: the opening events
(``response.created``, ``response.in_progress``) at once while the first
chunk is awaited, else with the first chunk's; SSE comments as
heartbeats; no ``[DONE]``: ``response.completed`` (or
``response.incomplete``) ends the stream, or an ``error`` event when it
fails after it started.

The finished Response is handed to ``keep`` (the records store) before the
closing events are sent, so a client that saw ``response.completed`` can
read it back at once. Its usage is the request record's (``record``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from interlock.dialects.responses.stream import ResponseEvents
from interlock.errors import InterlockError
from interlock.telemetry.record import RequestRecord

__all__ = ["Keep", "ResponsesEncoder"]

# Called with the finished Response object, and its JSON as the stream wrote it.
Keep = Callable[[dict[str, Any], bytes], Awaitable[None]]

_HEARTBEAT = b": keep-alive\n\n"


class ResponsesEncoder:
    __slots__ = ("_events", "_keep", "_record", "feed")

    def __init__(self, events: ResponseEvents, record: RequestRecord, keep: Keep | None = None):
        self._events = events
        self._record = record
        self._keep = keep
        self.feed = events.feed

    def opening(self) -> bytes:
        return self._events.start()

    def heartbeat(self) -> bytes:
        return _HEARTBEAT

    async def finish(self) -> bytes:
        events = self._events
        last = events.finish(self._record.usage)
        if self._keep is not None and events.response is not None:
            await self._keep(events.response, events.response_json)
        return last

    def error(self, exc: InterlockError, message: str) -> bytes:
        return self._events.error(exc.code or exc.error_type, message, exc.param)
