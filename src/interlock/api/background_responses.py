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
Streaming a background response (at creation or on retrieval) is not
offered: clients poll, as the SDK's ``background`` examples do.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.batches import batch_service
from interlock.api.services import Services
from interlock.api.wire import check_model_use, json_response, request_record
from interlock.batch.records import BatchStatus, ItemStatus
from interlock.batch.service import BACKGROUND, background_job_id
from interlock.dialects.responses.answer import new_id, response_shell
from interlock.dialects.responses.request import stored_input
from interlock.dialects.responses.schemas import ResponsesRequest
from interlock.errors import InvalidRequest
from interlock.store import ResponseStore, StoredResponse

__all__ = ["cancel_background", "is_running", "start_background", "with_job_state"]

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
) -> ASGIApp:
    """Store the Response ``queued``, enqueue its job, answer it."""
    principal = services.pipeline.admission.identify(
        request.headers.get("authorization"), request_record(request)
    )
    # What fails at once online fails at once here too, not in the job.
    check_model_use(services, principal, asked.model)
    services.pipeline.model_group(asked.model)
    service = batch_service(services)
    created = int(time.time())
    shell = {**response_shell(asked, new_id("resp"), created), "status": "queued"}
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
    await service.create_background(principal.name, shell["id"], {"chat": chat, "shell": shell})
    return json_response(shell)


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
