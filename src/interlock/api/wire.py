"""Reading requests and writing JSON answers, shared by every route."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from interlock.admission.principal import Principal
from interlock.api.services import Services
from interlock.cache.policy import TTL_HEADER
from interlock.errors import InvalidRequest, PayloadTooLarge, PermissionDenied
from interlock.pipeline import ModelRequest, Operation, RequestOptions
from interlock.telemetry.record import RequestRecord

__all__ = [
    "MAX_JSON_DEPTH",
    "Handler",
    "caller_name",
    "check_model_use",
    "int_param",
    "json_response",
    "list_response",
    "model_request",
    "read_json_object",
    "request_options",
    "request_record",
    "translated_request",
]

Handler = Callable[[Request, Services], Awaitable[ASGIApp]]

# Deeper bodies are refused (400). orjson parses up to 1,024 levels but
# serialises only 254, so a deeper body would fail later, when forwarded or
# hashed for the cache, as a 500. No OpenAI request comes near either.
MAX_JSON_DEPTH = 254
# The request headers the cache reads; handing it only these spares decoding
# every header of every request.
_CACHE_HEADERS = ("cache-control", TTL_HEADER)
# A dialect's request headers its own upstreams read: Anthropic's betas turn
# on features (fast mode, 1M context, interleaved thinking) the body asks for.
_DIALECT_HEADERS = {"anthropic": ("anthropic-beta",)}


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


def list_response(data: list[dict[str, Any]], more: bool) -> Response:
    """A page of an OpenAI list endpoint (files, batches)."""
    return json_response(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": more,
        }
    )


def caller_name(request: Request, services: Services) -> str:
    """The calling key's name, for routes whose objects belong to a key and
    that call no model (files, batches): authentication alone, 401/403."""
    principal = services.pipeline.admission.identify(
        request.headers.get("authorization"), request_record(request)
    )
    return principal.name


def check_model_use(services: Services, principal: Principal, model: str) -> None:
    """For routes that name a model but call none (token counts): the
    caller may use ``model`` (403) and the gateway serves it (404)."""
    if not principal.may_use(services.pipeline.canonical(model)):
        raise PermissionDenied(
            f"This key may not use the model `{model}`.", code="model_not_allowed"
        )
    services.pipeline.model_group(model)


def int_param(value: str | None, name: str, default: int, low: int, high: int) -> int:
    """A query parameter from ``low`` to ``high`` (400 naming it otherwise)."""
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise InvalidRequest(f"`{name}` must be an integer from {low} to {high}.", param=name)
    return int(value)


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
    raw = b"".join(chunks)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. Send a valid JSON object "
            "with 'Content-Type: application/json'.",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    if _nesting_over(raw, body, MAX_JSON_DEPTH):
        raise InvalidRequest(
            f"The JSON body is nested more than {MAX_JSON_DEPTH} levels deep.",
            code="invalid_json",
        )
    return body


def _nesting_over(raw: bytes, body: dict[str, Any], limit: int) -> bool:
    """Whether objects and arrays nest deeper than ``limit`` levels."""
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return False  # too few brackets to nest that deep: the usual case
    try:
        orjson.dumps(body)  # in C, about a fifth of the parse; refuses past 254 levels
    except orjson.JSONEncodeError:
        return True
    return False


def request_record(request: Request) -> RequestRecord:
    """The record the outermost middleware made for this request."""
    record: RequestRecord = request.scope["interlock.record"]
    return record


def request_options(request: Request, dialect: str = "openai") -> RequestOptions:
    """Routing and cache headers, as the pipeline takes them, and the
    dialect's own headers for upstreams that speak it (Anthropic's betas)."""
    headers = request.headers
    forwarded = _DIALECT_HEADERS.get(dialect, ())
    return RequestOptions(
        pin=headers.get("x-interlock-pin"),
        forced=headers.get("x-interlock-force-deployment"),
        cache_headers={
            name: value for name in _CACHE_HEADERS if (value := headers.get(name)) is not None
        },
        dialect=dialect,
        dialect_headers={
            name: value for name in forwarded if (value := headers.get(name)) is not None
        },
    )


async def model_request(request: Request, services: Services, operation: Operation) -> ModelRequest:
    """An OpenAI-shaped request as the pipeline takes it."""
    return ModelRequest(
        operation,
        await read_json_object(request, services.max_body_bytes),
        request_record(request),
        request.headers.get("authorization"),
        request_options(request),
    )


def translated_request(
    request: Request,
    body: dict[str, Any],
    dialect: str,
    *,
    authorization: str | None = None,
    operation: Operation = Operation.CHAT,
    checked: bool = False,
) -> ModelRequest:
    """The pipeline's request for an edge of another dialect: ``body`` is
    the client's request already translated into OpenAI's chat shape.
    ``authorization`` (``Bearer <key>``) when the dialect carries the key
    elsewhere (Anthropic's ``x-api-key``). ``checked``: see
    ``ModelRequest.checked``."""
    record = request_record(request)
    record.dialect = dialect
    return ModelRequest(
        operation,
        body,
        record,
        authorization or request.headers.get("authorization"),
        request_options(request, dialect),
        checked,
    )
