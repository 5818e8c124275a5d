"""Background responses of the Responses API (``background: true``): the
request is answered at once with its Response ``queued``, and the batch
workers run it, as a job of one item (``BatchService.create_background``)
at batch priority, through the same pipeline as every request.

The Response is stored when it is created, with the history it continues,
so ``GET /v1/responses/{id}`` finds it at once. While its job runs, a read
shows ``queued`` or ``in_progress`` from the job's status; the first read
after the job ended writes the finished Response (or ``failed`` with its
error, or ``cancelled``) over the stored one, so later reads are one
lookup and ``previous_response_id`` continues it as any stored response.
``POST /v1/responses/{id}/cancel`` cancels the job and answers the
Response ``cancelled``; one that had finished is answered as it is.
A background response created with ``stream: true`` runs at once on the
instance that took it instead, its events logged so they can be read again
(``start_streamed``, ``api/background_streams.py``).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.background_streams import BackgroundStreams, LoggedStream
from interlock.api.batches import batch_service
from interlock.api.services import Services
from interlock.api.wire import check_model_use, json_response, request_options, request_record
from interlock.batch.records import BatchStatus, ItemStatus
from interlock.batch.service import BACKGROUND, background_job_id
from interlock.dialects.responses.answer import new_id, response_shell
from interlock.dialects.responses.request import CLIENT_PARAMS, stored_input
from interlock.dialects.responses.schemas import ResponsesRequest
from interlock.errors import InterlockError, InvalidRequest, ServiceUnavailable
from interlock.pipeline import ModelRequest, Operation
from interlock.store import ResponseStore, StoredResponse
from interlock.telemetry.record import RequestRecord

__all__ = [
    "cancel_background",
    "is_running",
    "start_background",
    "start_streamed",
    "streamed_again",
    "with_job_state",
]

log = logging.getLogger("interlock.responses")

JSONDict = dict[str, Any]

_RUNNING = ("queued", "in_progress")


def is_running(response: JSONDict) -> bool:
    """A background response whose job had not ended when last read."""
    return response.get("background") is True and response.get("status") in _RUNNING


async def start_background(
    request: Request,
    services: Services,
    store: ResponseStore,
    asked: ResponsesRequest,
    chat: JSONDict,
    history: list[JSONDict],
    done: list[JSONDict],
) -> ASGIApp:
    """Store the Response ``queued``, enqueue its job, answer it. ``done``:
    output items made before the model answers (``response_shell``)."""
    service = batch_service(services)
    key_name, shell = await _stored(request, services, store, asked, history, done, "queued")
    await service.create_background(key_name, shell["id"], {"chat": chat, "shell": shell})
    return json_response(shell)


async def _stored(
    request: Request,
    services: Services,
    store: ResponseStore,
    asked: ResponsesRequest,
    history: list[JSONDict],
    done: list[JSONDict],
    status: str,
) -> tuple[str, JSONDict]:
    """The caller's key name and the Response's shell, stored with ``status``.
    What fails at once online fails at once here too (the key, the model)."""
    principal = services.pipeline.admission.identify(
        request.headers.get("authorization"), request_record(request)
    )
    check_model_use(services, principal, asked.model)
    services.pipeline.model_group(asked.model)
    created = int(time.time())
    shell = {**response_shell(asked, new_id("resp"), created, done), "status": status}
    await store.save(
        StoredResponse(
            id=shell["id"],
            key_name=principal.name,
            created_at=created,
            expires_at=created + services.responses.retention_s,
            input_items=history + stored_input(asked, new_id),
            response=shell,
        )
    )
    await store.flush()  # written now: it is read later, from any instance
    return principal.name, shell


async def start_streamed(
    request: Request,
    services: Services,
    store: ResponseStore,
    asked: ResponsesRequest,
    chat: JSONDict,
    history: list[JSONDict],
    done: list[JSONDict],
) -> ASGIApp:
    """Store the Response ``in_progress``, start it on this instance, and
    answer its events as they are logged (``api/background_streams.py``)."""
    streams = _streams(services)
    key_name, shell = await _stored(request, services, store, asked, history, done, "in_progress")
    # The run's own record: it lasts as long as the response runs.
    record = RequestRecord(request_record(request).request_id, "POST", "/v1/responses")
    record.dialect = "responses"
    model_request = ModelRequest(
        Operation.CHAT,
        chat,
        record,
        request.headers.get("authorization"),
        request_options(request, "responses"),
        checked=True,
    )
    on_end = _Replace(store, key_name)
    try:
        await streams.start(model_request, shell, on_end)
    except InterlockError as exc:  # nothing ran: nothing to keep
        await store.delete(key_name, shell["id"])
        exc.param = CLIENT_PARAMS.get(exc.param or "", exc.param)
        raise
    return LoggedStream(streams.events(shell["id"], None, _FailIfRunning(store, key_name), shell))


async def streamed_again(
    services: Services, store: ResponseStore, key_name: str, response: JSONDict, after: int | None
) -> ASGIApp:
    """A streamed background response's events after ``after`` (a
    ``sequence_number``; all of them for None), read again from its log."""
    streams = _streams(services)
    if not await streams.kept(response["id"]):
        raise InvalidRequest(
            "Only a background response created with `stream: true` can be retrieved as a "
            "stream, for `responses.background_events_s` after its last event: retrieve "
            "this one without `stream`.",
            param="stream",
        )
    on_lost = _FailIfRunning(store, key_name)
    return LoggedStream(streams.events(response["id"], after, on_lost, response))


def _streams(services: Services) -> BackgroundStreams:
    if services.background_streams is None:
        raise ServiceUnavailable("Streamed background responses are not available yet.")
    return services.background_streams


class _Replace:
    """Stores a streamed background response as it ended, over the stored one."""

    __slots__ = ("_key_name", "_store")

    def __init__(self, store: ResponseStore, key_name: str):
        self._store = store
        self._key_name = key_name

    async def __call__(self, response: JSONDict) -> None:
        try:
            await self._store.replace(self._key_name, response)
        except (SQLAlchemyError, sqlite3.Error) as exc:  # the stream goes on; the log says so
            log.error("could not store response %s", response.get("id"), exc_info=exc)


class _FailIfRunning:
    """Stores a streamed background response ``failed`` when its instance
    was found gone, unless it had ended (a reader can find a finished log's
    entries evicted, not only a dead instance)."""

    __slots__ = ("_key_name", "_store")

    def __init__(self, store: ResponseStore, key_name: str):
        self._store = store
        self._key_name = key_name

    async def __call__(self, response: JSONDict) -> None:
        found = await self._store.get(self._key_name, response["id"])
        if found is not None and is_running(found.response):
            await _Replace(self._store, self._key_name)(response)


async def with_job_state(
    services: Services, store: ResponseStore, key_name: str, response: JSONDict
) -> JSONDict:
    """``response`` (a running background one) as its job now stands; once
    the job has ended, the finished Response, written over the stored one."""
    service = services.batches.service
    if service is None:  # batches off now: nothing runs it
        return response
    job = await service.store.get(background_job_id(response["id"]), key_name, counts=False)
    if job is None or job.kind != BACKGROUND:
        return response
    if not job.status.finished:
        running = job.status is BatchStatus.IN_PROGRESS and job.cancelling_at is None
        return {**response, "status": "in_progress" if running else "queued"}
    items = [item async for item in service.store.items(job.id)]  # one
    item = items[0] if items else None
    finished = _finished(response, item.status if item else None, item.result if item else None)
    await store.replace(key_name, finished)
    return finished


async def cancel_background(
    services: Services, store: ResponseStore, key_name: str, response: JSONDict
) -> JSONDict:
    """Cancel a background response's job: the Response ``cancelled``, or as
    it finished if it finished first."""
    current = await with_job_state(services, store, key_name, response)
    if not is_running(current):
        return current
    streams = services.background_streams
    if streams is not None and await streams.kept(response["id"]):  # streamed: no job
        await streams.cancel(response["id"])
        found = await store.get(key_name, response["id"])
        if found is not None and not is_running(found.response):
            return found.response  # it ended here, as it was stopped (or had finished)
        cancelled = {**current, "status": "cancelled"}  # its instance stores the same
        await store.replace(key_name, cancelled)
        return cancelled
    try:
        await batch_service(services).cancel(
            key_name, background_job_id(response["id"]), kind=BACKGROUND
        )
    except InvalidRequest:  # it ended between the read and the cancel
        return await with_job_state(services, store, key_name, response)
    cancelled = {**current, "status": "cancelled"}
    await store.replace(key_name, cancelled)
    return cancelled


def _finished(shell: JSONDict, status: ItemStatus | None, result: str | None) -> JSONDict:
    if status is ItemStatus.SUCCEEDED and result is not None:
        finished: JSONDict = orjson.loads(result)
        return finished
    if status is ItemStatus.CANCELLED:
        return {**shell, "status": "cancelled"}
    if status is ItemStatus.FAILED and result is not None:
        error = orjson.loads(result).get("error") or {}
        code = error.get("code") or error.get("type") or "server_error"
        message = error.get("message") or "The response failed."
    else:  # expired: the batch window closed before it ran
        code, message = "server_error", "The response did not run before its window closed."
    return {**shell, "status": "failed", "error": {"code": code, "message": message}}
