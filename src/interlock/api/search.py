"""The search service's edge: ``/api/v1/search`` and the page at ``/search``.

- ``POST /api/v1/search``: 202 with the task (``search/service.py`` admits it).
- ``GET /api/v1/search/status/{task_id}``: the task as it stands.
- ``GET /api/v1/search/stream/{task_id}``: its events as SSE, each with an
  ``id:`` so that ``Last-Event-ID`` (sent by ``EventSource`` when it
  reconnects) resumes after the last one seen; ``: ping`` comments while
  nothing happens.

The two GETs need no key: the task id (random, 144 bits) is the capability
to read the task, since ``EventSource`` cannot send an ``Authorization``
header. Its query and results are what it exposes, for ``task_ttl_s``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from interlock.api.services import Services
from interlock.api.sse import SSE_HEADERS, watch_disconnect
from interlock.api.wire import json_response, read_json_object, request_record
from interlock.errors import InvalidRequest, NotFound
from interlock.search.service import SearchService
from interlock.search.tasks import SearchEvent

__all__ = ["search_page", "search_status", "search_stream", "start_search"]

log = logging.getLogger("interlock.search")

_STATUS_PREFIX = "/api/v1/search/status/"
_STREAM_PREFIX = "/api/v1/search/stream/"
_PING = b": ping\n\n"


def _service(services: Services) -> SearchService:
    if services.search is None:
        raise NotFound("The search service is not enabled (search.enabled).")
    return services.search


async def start_search(request: Request, services: Services) -> ASGIApp:
    service = _service(services)
    body = await read_json_object(request, services.max_body_bytes)
    peer = request.client.host if request.client is not None else None
    client = service.client_address.resolve(peer, request.headers.get("x-forwarded-for"))
    task = await service.start(
        body, request.headers.get("authorization"), request_record(request), client
    )
    return json_response(
        {
            "task_id": task.task_id,
            "query": task.query,
            "status": str(task.status),
            "streaming": task.streaming,
        },
        status_code=202,
    )


async def search_status(request: Request, services: Services) -> ASGIApp:
    task_id = request.scope["path"].removeprefix(_STATUS_PREFIX)
    task = await _service(services).status(task_id)
    return json_response(task.to_json())


async def search_stream(request: Request, services: Services) -> ASGIApp:
    service = _service(services)
    task_id = request.scope["path"].removeprefix(_STREAM_PREFIX)
    after = _last_event_id(request.headers.get("last-event-id"))
    events = service.events(task_id, after)
    first = await anext(events, None)  # raises NotFound before the response starts
    return _EventStream(events, first)


def _last_event_id(value: str | None) -> int:
    if value is None or not value.strip():
        return 0
    value = value.strip()
    if not value.isdigit() or len(value) > 9:
        raise InvalidRequest("`Last-Event-ID` must be an event id sent by this stream.")
    return int(value)


class _EventStream:
    def __init__(self, events: AsyncGenerator[SearchEvent | None, None], first: SearchEvent | None):
        self._events = events
        self._first = first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        events = self._events
        task = asyncio.current_task()
        assert task is not None
        gone = asyncio.Event()
        watcher = asyncio.get_running_loop().create_task(watch_disconnect(receive, task, gone))
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await send(_chunk(_frame(self._first)))
            async for event in events:
                await send(_chunk(_frame(event)))
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (asyncio.CancelledError, OSError):
            if not gone.is_set():
                raise
            task.uncancel()  # the client left: the service decides about the run
        finally:
            watcher.cancel()
            await events.aclose()


def _frame(event: SearchEvent | None) -> bytes:
    if event is None:
        return _PING
    data = orjson.dumps(event.data)
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.id, event.event.encode(), data)


def _chunk(data: bytes) -> dict[str, object]:
    return {"type": "http.response.body", "body": data, "more_body": True}


async def search_page(request: Request, services: Services) -> ASGIApp:
    _service(services)
    from interlock.search.page import page_files  # the page's files, read once

    found = page_files().get(request.scope["path"])
    if found is None:
        raise NotFound("No such page.")
    content, media_type = found
    return Response(
        content,
        media_type=media_type,
        headers={
            "cache-control": "no-cache",
            "x-content-type-options": "nosniff",
            # The page loads nothing from elsewhere and runs only its own script.
            "content-security-policy": "default-src 'self'; img-src 'self' data:; "
            "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
        },
    )
