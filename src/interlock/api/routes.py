"""The OpenAI-compatible routes. Handlers only read, call the pipeline, write."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from interlock.api.middleware import DrainState
from interlock.api.sse import SSEResponse
from interlock.errors import InvalidRequest, PayloadTooLarge
from interlock.pipeline import Pipeline
from interlock.routing.router import ModelRoute

__all__ = ["Handler", "Services", "exact_routes", "prefix_routes"]


@dataclass(frozen=True, slots=True)
class Services:
    """What handlers may use; built once by the composition root."""

    pipeline: Pipeline
    drain: DrainState
    max_body_bytes: int


Handler = Callable[[Request, Services], Awaitable[ASGIApp]]


def _json(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


async def _read_json_object(request: Request, limit: int) -> dict[str, Any]:
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


def _request_id(request: Request) -> str:
    return str(request.scope["interlock.request_id"])


async def chat_completions(request: Request, services: Services) -> ASGIApp:
    pipeline = services.pipeline
    pipeline.authenticate(request.headers.get("authorization"))
    body = await _read_json_object(request, services.max_body_bytes)
    if body.get("stream") is True:
        chunks = pipeline.stream_chat(body, _request_id(request))
        first = await anext(chunks, None)  # failures before the first byte keep their status
        return SSEResponse(chunks, first)
    return _json(await pipeline.chat(body, _request_id(request)))


async def embeddings(request: Request, services: Services) -> ASGIApp:
    services.pipeline.authenticate(request.headers.get("authorization"))
    body = await _read_json_object(request, services.max_body_bytes)
    return _json(await services.pipeline.embed(body, _request_id(request)))


def _model_card(route: ModelRoute) -> dict[str, Any]:
    return {
        "id": route.name,
        "object": "model",
        "created": route.created,
        "owned_by": route.owned_by,
    }


async def list_models(request: Request, services: Services) -> ASGIApp:
    services.pipeline.authenticate(request.headers.get("authorization"))
    cards = [_model_card(r) for r in services.pipeline.router.routes]
    return _json({"object": "list", "data": cards})


async def retrieve_model(request: Request, services: Services) -> ASGIApp:
    services.pipeline.authenticate(request.headers.get("authorization"))
    name = request.scope["path"].removeprefix("/v1/models/")
    return _json(_model_card(services.pipeline.router.route(name)))


async def live(request: Request, services: Services) -> ASGIApp:
    return _json({"status": "ok"})


async def ready(request: Request, services: Services) -> ASGIApp:
    if services.drain.draining:
        return _json({"status": "draining"}, 503)
    return _json({"status": "ok"})


# path -> method -> handler. Exact paths are one dict lookup per request.
exact_routes: dict[str, dict[str, Handler]] = {
    "/v1/chat/completions": {"POST": chat_completions},
    "/v1/embeddings": {"POST": embeddings},
    "/v1/models": {"GET": list_models},
    "/health/live": {"GET": live},
    "/health/ready": {"GET": ready},
}
# Model ids may contain slashes (``Qwen/Qwen2.5-0.5B-Instruct``).
prefix_routes: list[tuple[str, dict[str, Handler]]] = [
    ("/v1/models/", {"GET": retrieve_model}),
]
