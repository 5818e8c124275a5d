"""Anthropic's Message Batches API (``/v1/messages/batches``) over the
gateway's batch service: the same store, queue and workers as OpenAI's
Batches API and async jobs, each request run through the pipeline as a
``/v1/messages`` request of the key that created the batch.

The key comes as on ``/v1/messages`` (``x-api-key`` or ``Authorization:
Bearer``); a batch belongs to its key, and another key's id answers 404 as
one that never existed. Errors take Anthropic's shape (registered in
``api/table.py``). Results stream as JSON lines, in request order, from
the batch's ``results_url`` once it has ended.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import ASGIApp

from interlock.api.batches import batch_service
from interlock.api.messages import anthropic_authorization
from interlock.api.services import Services
from interlock.api.wire import int_param, json_response, read_json_object, request_record
from interlock.batch.anthropic import batch_json, processing_status, result_line
from interlock.batch.records import BatchRow
from interlock.batch.service import MESSAGE_BATCH, BatchService
from interlock.errors import InvalidRequest, NotFound

__all__ = ["message_batch_route", "message_batches_root"]

ROOT = "/v1/messages/batches"
_MAX_LIST = 1_000  # Anthropic's
_PAGE_LINES = 1_000


def _caller(request: Request, services: Services) -> str:
    principal = services.pipeline.admission.identify(
        anthropic_authorization(request), request_record(request)
    )
    return principal.name


async def message_batches_root(request: Request, services: Services) -> ASGIApp:
    key = _caller(request, services)
    service = batch_service(services)
    if request.method == "POST":
        body = await read_json_object(request, service.settings.max_message_batch_bytes)
        batch = await service.create_message_batch(key, body)
        return json_response(_shown(request, batch))
    params = request.query_params
    limit = int_param(params.get("limit"), "limit", 20, 1, _MAX_LIST)
    after, before = params.get("after_id") or None, params.get("before_id") or None
    if after and before:
        raise InvalidRequest("Give `after_id` or `before_id`, not both.", param="before_id")
    batches, more = await service.listing(
        key, limit=limit, after=after, before=before, kind=MESSAGE_BATCH
    )
    data = [_shown(request, batch) for batch in batches]
    return json_response(
        {
            "data": data,
            "has_more": more,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    )


async def message_batch_route(request: Request, services: Services) -> ASGIApp:
    batch_id, _, action = request.scope["path"].removeprefix(ROOT + "/").partition("/")
    key = _caller(request, services)
    service = batch_service(services)
    method = request.method
    if action == "" and method == "GET":
        return json_response(_shown(request, await service.get(key, batch_id, MESSAGE_BATCH)))
    if action == "" and method == "DELETE":
        await service.delete(key, batch_id, MESSAGE_BATCH)
        return json_response({"id": batch_id, "type": "message_batch_deleted"})
    if action == "cancel" and method == "POST":
        batch = await service.cancel(key, batch_id, MESSAGE_BATCH)
        return json_response(_shown(request, batch))
    if action == "results" and method == "GET":
        batch = await service.get(key, batch_id, MESSAGE_BATCH)
        if processing_status(batch) != "ended":
            raise InvalidRequest(
                f"The message batch {batch_id} is still {processing_status(batch)}; its "
                "results are available once it has ended.",
                code="message_batch_not_ended",
            )
        return StreamingResponse(_results(service, batch_id), media_type="application/x-jsonl")
    raise NotFound(f"Unknown route {method} {request.scope['path']}.")


def _shown(request: Request, batch: BatchRow) -> dict[str, object]:
    base = str(request.base_url).rstrip("/")
    return batch_json(batch, f"{base}{ROOT}/{batch.id}/results")


async def _results(service: BatchService, batch_id: str) -> AsyncIterator[bytes]:
    lines: list[bytes] = []
    async for item in service.store.items(batch_id):
        lines.append(result_line(item))
        if len(lines) >= _PAGE_LINES:
            yield b"".join(lines)
            lines = []
    if lines:
        yield b"".join(lines)
