"""``GET /v1/models`` and ``GET /v1/models/{model}``: the public model names
(and ``/v1/models/{model}/versions/{version}``, a tensor model's metadata:
``api/infer.py``).

OpenAI and Anthropic list models on the same path in different shapes. A
request with ``anthropic-version`` (every Anthropic SDK sends it) gets
Anthropic's: ``{"type": "model", "id", "display_name", "created_at"}``,
newest first, paged by ``limit``, ``after_id`` and ``before_id``, the key
also taken from ``x-api-key``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.infer import model_version
from interlock.api.messages import anthropic_authorization
from interlock.api.services import Services
from interlock.api.wire import int_param, json_response, request_record
from interlock.errors import InvalidRequest, NotFound
from interlock.pipeline import ModelGroup, Pipeline

__all__ = ["list_models", "retrieve_model"]


def _model_card(group: ModelGroup, pipeline: Pipeline) -> dict[str, Any]:
    """OpenAI's model object, plus ``pricing``: each deployment's rates in US
    dollars per million tokens and where they came from (``config``,
    ``catalog``, ``in-process``), or ``{"source": "unknown"}``."""
    pricing = []
    for deployment_id in group.deployments:
        price = pipeline.price(deployment_id)
        card = price.card() if price is not None else {"source": "unknown"}
        pricing.append({"deployment": deployment_id, **card})
    return {
        "id": group.name,
        "object": "model",
        "created": group.created,
        "owned_by": group.owned_by,
        "pricing": pricing,
    }


def _anthropic_card(group: ModelGroup) -> dict[str, Any]:
    created = datetime.fromtimestamp(group.created, UTC)
    return {
        "type": "model",
        "id": group.name,
        "display_name": group.name,
        "created_at": created.isoformat().replace("+00:00", "Z"),
    }


def _speaks_anthropic(request: Request) -> bool:
    return "anthropic-version" in request.headers


def _identify(request: Request, services: Services) -> None:
    services.pipeline.admission.identify(
        anthropic_authorization(request)
        if _speaks_anthropic(request)
        else request.headers.get("authorization"),
        request_record(request),
    )


async def list_models(request: Request, services: Services) -> ASGIApp:
    _identify(request, services)
    groups = services.pipeline.model_groups
    if _speaks_anthropic(request):
        return json_response(_anthropic_page(request, groups))
    cards = [_model_card(g, services.pipeline) for g in groups]
    return json_response({"object": "list", "data": cards})


def _anthropic_page(request: Request, groups: Sequence[ModelGroup]) -> dict[str, Any]:
    """One page of Anthropic's list, newest first (then by name)."""
    params = request.query_params
    limit = int_param(params.get("limit"), "limit", 20, 1, 1_000)
    after, before = params.get("after_id"), params.get("before_id")
    if after and before:
        raise InvalidRequest("Give `after_id` or `before_id`, not both.", param="before_id")
    ordered = sorted(groups, key=lambda g: (-g.created, g.name))
    names = [g.name for g in ordered]
    cursor = after or before
    if cursor and cursor not in names:
        raise NotFound(f"No such model: {cursor}", code="model_not_found")
    if before:
        end = names.index(before)
        page, more = ordered[max(0, end - limit) : end], end > limit
    else:
        start = names.index(after) + 1 if after else 0
        page, more = ordered[start : start + limit], start + limit < len(ordered)
    data = [_anthropic_card(g) for g in page]
    return {
        "data": data,
        "has_more": more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


async def retrieve_model(request: Request, services: Services) -> ASGIApp:
    path = request.scope["path"].removeprefix("/v1/models/")
    name, marker, version = path.rpartition("/versions/")
    if marker and name and version and "/" not in version:
        return await model_version(request, services, name, version)
    _identify(request, services)
    pipeline = services.pipeline
    group = pipeline.model_group(path)
    if _speaks_anthropic(request):
        return json_response(_anthropic_card(group))
    return json_response(_model_card(group, pipeline))
