"""The OpenAI-compatible routes. Handlers only read, call the pipeline, write."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from interlock.api.sse import SSEResponse
from interlock.errors import InvalidRequest, PayloadTooLarge
from interlock.pipeline import Pipeline
from interlock.routing.router import ModelRoute

__all__ = ["routes"]


def _pipeline(request: Request) -> Pipeline:
    pipeline: Pipeline = request.app.state.pipeline
    return pipeline


def _json(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


async def _read_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, within the configured size limit."""
    limit: int = request.app.state.max_body_bytes
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


async def chat_completions(request: Request) -> Response | SSEResponse:
    pipeline = _pipeline(request)
    pipeline.authenticate(request.headers.get("authorization"))
    body = await _read_json_object(request)
    if body.get("stream") is True:
        chunks = pipeline.stream_chat(body, _request_id(request))
        first = await anext(chunks, None)  # failures before the first byte keep their status
        return SSEResponse(chunks, first)
    return _json(await pipeline.chat(body, _request_id(request)))


async def embeddings(request: Request) -> Response:
    pipeline = _pipeline(request)
    pipeline.authenticate(request.headers.get("authorization"))
    body = await _read_json_object(request)
    return _json(await pipeline.embed(body, _request_id(request)))


def _model_card(route: ModelRoute) -> dict[str, Any]:
    return {
        "id": route.name,
        "object": "model",
        "created": route.created,
        "owned_by": route.owned_by,
    }


async def list_models(request: Request) -> Response:
    pipeline = _pipeline(request)
    pipeline.authenticate(request.headers.get("authorization"))
    return _json({"object": "list", "data": [_model_card(r) for r in pipeline.router.routes]})


async def retrieve_model(request: Request) -> Response:
    pipeline = _pipeline(request)
    pipeline.authenticate(request.headers.get("authorization"))
    return _json(_model_card(pipeline.router.route(request.path_params["model"])))


async def live(request: Request) -> Response:
    return _json({"status": "ok"})


async def ready(request: Request) -> Response:
    if request.app.state.drain.draining:
        return _json({"status": "draining"}, 503)
    return _json({"status": "ok"})


routes: list[BaseRoute] = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/embeddings", embeddings, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model:path}", retrieve_model, methods=["GET"]),
    Route("/health/live", live, methods=["GET"]),
    Route("/health/ready", ready, methods=["GET"]),
]
