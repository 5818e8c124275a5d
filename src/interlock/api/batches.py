"""The OpenAI Batches API (``/v1/batches``) and async jobs (``POST
/v1/batch``, ``GET /v1/jobs/{id}``, and ``"async": true`` on a chat or
embeddings request). Every batch and job belongs to the key that created
it; another key's answers 404, as one that never existed. The work itself
is done by batch workers (``interlock.batch``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.services import Services
from interlock.api.wire import (
    caller_name,
    int_param,
    json_response,
    list_response,
    read_json_object,
)
from interlock.batch.records import BatchRow
from interlock.batch.service import BatchService
from interlock.errors import NotFound, ServiceUnavailable

__all__ = [
    "async_job",
    "batch_route",
    "batch_service",
    "batches_root",
    "create_job",
    "job_route",
]

_MAX_LIST = 100


def batch_service(services: Services) -> BatchService:
    service = services.batches.service
    if service is None:
        raise ServiceUnavailable(
            "Batch inference is not available: not enabled on this gateway (batch.enabled), "
            "or the records store is not open yet."
        )
    return service


async def batches_root(request: Request, services: Services) -> ASGIApp:
    key = caller_name(request, services)
    service = batch_service(services)
    if request.method == "POST":
        body = await read_json_object(request, services.max_body_bytes)
        return json_response((await service.create_batch(key, body)).to_json())
    params = request.query_params
    limit = int_param(params.get("limit"), "limit", 20, 1, _MAX_LIST)
    batches, more = await service.listing(key, limit=limit, after=params.get("after") or None)
    return list_response([b.to_json() for b in batches], more)


async def batch_route(request: Request, services: Services) -> ASGIApp:
    batch_id, action = _split(request, "/v1/batches/")
    key = caller_name(request, services)
    service = batch_service(services)
    if action == "" and request.method == "GET":
        return json_response((await service.get(key, batch_id)).to_json())
    if action == "cancel" and request.method == "POST":
        return json_response((await service.cancel(key, batch_id)).to_json())
    raise NotFound(f"Unknown route {request.method} {request.scope['path']}.")


async def create_job(request: Request, services: Services) -> ASGIApp:
    key = caller_name(request, services)
    body = await read_json_object(request, services.max_body_bytes)
    job = await batch_service(services).create_job(key, body)
    return json_response(_accepted(job), status_code=202)


async def job_route(request: Request, services: Services) -> ASGIApp:
    job_id, action = _split(request, "/v1/jobs/")
    key = caller_name(request, services)
    service = batch_service(services)
    if action == "" and request.method == "GET":
        job = await service.get(key, job_id, kind="job")
        shown = job.to_job_json()
        if job.status.finished:
            shown["results"] = await service.results(job_id)
        return json_response(shown)
    if action == "cancel" and request.method == "POST":
        return json_response((await service.cancel(key, job_id, kind="job")).to_job_json())
    raise NotFound(f"Unknown route {request.method} {request.scope['path']}.")


async def async_job(
    request: Request, services: Services, body: dict[str, Any], endpoint: str
) -> ASGIApp:
    """A chat or embeddings request with ``"async": true``: a job of one
    request (``custom_id`` "0"); ``webhook_url`` may come with it."""
    key = caller_name(request, services)
    body.pop("async")
    job_body: dict[str, Any] = {
        "endpoint": endpoint,
        "requests": [{"custom_id": "0", "body": body}],
    }
    if "webhook_url" in body:
        job_body["webhook_url"] = body.pop("webhook_url")
    job = await batch_service(services).create_job(key, job_body)
    return json_response(_accepted(job), status_code=202)


def _accepted(job: BatchRow) -> dict[str, Any]:
    shown = job.to_job_json()
    shown["job_id"] = job.id
    return shown


def _split(request: Request, prefix: str) -> tuple[str, str]:
    rest = request.scope["path"].removeprefix(prefix)
    found, _, action = rest.partition("/")
    return found, action
