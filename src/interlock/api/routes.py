"""The OpenAI-compatible routes. Handlers only read, call the pipeline, write."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from interlock.admission.concurrency import InFlightLimiter, KeyStreamLimiter
from interlock.admission.gate import AdmissionGate
from interlock.admission.keys import Principal
from interlock.api.middleware import DrainState
from interlock.api.sse import SSEResponse
from interlock.cache.policy import TTL_HEADER
from interlock.errors import (
    InvalidRequest,
    PayloadTooLarge,
    PermissionDenied,
    ServiceUnavailable,
)
from interlock.pipeline import Pipeline, RouteHints, StreamPlan
from interlock.routing.chaos import ChaosControl
from interlock.routing.router import ModelGroup
from interlock.state import StateStore
from interlock.store import Store
from interlock.telemetry.hub import Telemetry
from interlock.telemetry.metrics import CONTENT_TYPE_LATEST
from interlock.telemetry.record import RequestRecord

__all__ = ["Handler", "RecordsRef", "Services", "json_response", "read_json_object"]


@dataclass(slots=True)
class RecordsRef:
    """The durable store, set once it is open in the app's lifespan."""

    store: Store | None = None

    def get(self) -> Store:
        if self.store is None:
            raise ServiceUnavailable("The records store is not open yet.")
        return self.store


@dataclass(frozen=True, slots=True)
class Services:
    """What handlers may use; built once by the composition root."""

    pipeline: Pipeline
    drain: DrainState
    max_body_bytes: int
    telemetry: Telemetry
    in_flight: InFlightLimiter
    key_streams: KeyStreamLimiter
    chaos: ChaosControl
    known_deployments: frozenset[str]
    records: RecordsRef
    tiers: frozenset[str]
    gate: AdmissionGate
    state: StateStore
    # admission.on_state_failure == fail_closed: a state-store outage stops service.
    state_outage_fatal: bool = False
    # SHA-256 of the admin key; None turns the admin API off.
    admin_key_digest: bytes | None = None


Handler = Callable[[Request, Services], Awaitable[ASGIApp]]


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, within the configured size limit."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Request body is larger than the {limit}-byte limit.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"Request body is larger than the {limit}-byte limit.")
        chunks.append(chunk)
    try:
        body = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. Send a valid JSON object "
            "with 'Content-Type: application/json'.",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return body


def _record(request: Request) -> RequestRecord:
    record: RequestRecord = request.scope["interlock.record"]
    return record


def _authenticate(request: Request, services: Services) -> tuple[RequestRecord, Principal]:
    record = _record(request)
    principal = services.pipeline.authenticate(request.headers.get("authorization"), record)
    return record, principal


# The request headers the cache reads; handing it only these spares decoding
# every header of every request.
_CACHE_HEADERS = ("cache-control", TTL_HEADER)


def _route_hints(request: Request, principal: Principal) -> RouteHints:
    """Routing headers; forcing a deployment needs the key's permission."""
    headers = request.headers
    forced = headers.get("x-interlock-force-deployment")
    if forced is not None and "force_deployment" not in principal.permissions:
        raise PermissionDenied(
            "This key may not force a deployment (permission `force_deployment`)."
        )
    return RouteHints(
        pin=headers.get("x-interlock-pin"),
        forced=forced,
        principal=principal,
        headers={
            name: value for name in _CACHE_HEADERS if (value := headers.get(name)) is not None
        },
    )


async def chat_completions(request: Request, services: Services) -> ASGIApp:
    record, principal = _authenticate(request, services)
    body = await read_json_object(request, services.max_body_bytes)
    hints = _route_hints(request, principal)
    await services.gate.admit(principal, record, body)
    if body.get("stream") is not True:
        return json_response(await services.pipeline.chat(body, record, hints))
    plan = services.pipeline.stream_chat(body, record, hints)
    key = record.key_name or ""
    services.key_streams.acquire(key)
    try:
        return await _start_stream(plan, partial(services.key_streams.release, key))
    except BaseException:
        services.key_streams.release(key)
        raise


async def _start_stream(plan: StreamPlan, release: Callable[[], None]) -> ASGIApp:
    """Wait briefly for the first token so fast failures keep their status;
    a slow first token starts the response with heartbeats instead.

    Never before the cache's verdict, though: ``x-interlock-cache`` goes out
    with the response start. Only a wait for another instance's identical
    request (bounded by ``cache.remote_wait_s``) makes that later than
    ``heartbeat_after_s``, and no token can come before the verdict anyway.
    """
    start = asyncio.ensure_future(plan.start())
    try:
        await asyncio.wait({start}, timeout=plan.heartbeat_after_s)
        if not start.done() and not plan.settled.is_set():
            settled = asyncio.ensure_future(plan.settled.wait())
            try:
                await asyncio.wait({start, settled}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                settled.cancel()
    except BaseException:
        start.cancel()
        raise
    if start.done():
        first, chunks = start.result()
        return SSEResponse(chunks, first, on_close=release)
    return SSEResponse(
        pending=start, heartbeat_interval_s=plan.heartbeat_interval_s, on_close=release
    )


async def embeddings(request: Request, services: Services) -> ASGIApp:
    record, principal = _authenticate(request, services)
    body = await read_json_object(request, services.max_body_bytes)
    hints = _route_hints(request, principal)
    await services.gate.admit(principal, record, body)
    return json_response(await services.pipeline.embed(body, record, hints))


def _model_card(group: ModelGroup) -> dict[str, Any]:
    return {
        "id": group.name,
        "object": "model",
        "created": group.created,
        "owned_by": group.owned_by,
    }


async def list_models(request: Request, services: Services) -> ASGIApp:
    _authenticate(request, services)
    cards = [_model_card(g) for g in services.pipeline.router.groups]
    return json_response({"object": "list", "data": cards})


async def retrieve_model(request: Request, services: Services) -> ASGIApp:
    _authenticate(request, services)
    name = request.scope["path"].removeprefix("/v1/models/")
    return json_response(_model_card(services.pipeline.router.group(name)))


async def live(request: Request, services: Services) -> ASGIApp:
    return json_response({"status": "ok"})


async def ready(request: Request, services: Services) -> ASGIApp:
    """Ready unless draining, a store is unreachable, or some model group has
    no healthy deployment. Per-instance limits while Redis is out still serve:
    ready, and said so."""
    if services.drain.draining:
        return json_response({"status": "draining"}, 503)
    store = services.records.store
    checks = {
        "state_store": await services.state.ping(),
        "durable_store": store is not None and await store.ping(),
    }
    degraded = services.telemetry.health.degraded_groups()
    limits = "local" if getattr(services.gate.limiter, "degraded", False) else "shared"
    body: dict[str, Any] = {"checks": checks, "limits": limits}
    # A Redis outage in fail_open_local mode is survivable (local limits and
    # breakers), and every instance shares that Redis: taking them all out of
    # rotation would turn it into a full outage. So it is reported, not fatal.
    state_fatal = not checks["state_store"] and services.state_outage_fatal
    if degraded or not checks["durable_store"] or state_fatal:
        return json_response({"status": "degraded", "degraded_models": degraded, **body}, 503)
    return json_response({"status": "ok", **body})


async def deployments(request: Request, services: Services) -> ASGIApp:
    return json_response({"object": "list", "data": services.telemetry.health.deployments()})


async def metrics(request: Request, services: Services) -> ASGIApp:
    return Response(services.telemetry.metrics.render(), media_type=CONTENT_TYPE_LATEST)
