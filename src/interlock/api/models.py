"""``GET /v1/models`` and ``GET /v1/models/{model}``: the public model names."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.services import Services
from interlock.api.wire import json_response, request_record
from interlock.pipeline import ModelGroup

__all__ = ["list_models", "retrieve_model"]


def _model_card(group: ModelGroup) -> dict[str, Any]:
    return {
        "id": group.name,
        "object": "model",
        "created": group.created,
        "owned_by": group.owned_by,
    }


def _identify(request: Request, services: Services) -> None:
    services.pipeline.admission.identify(
        request.headers.get("authorization"), request_record(request)
    )


async def list_models(request: Request, services: Services) -> ASGIApp:
    _identify(request, services)
    cards = [_model_card(g) for g in services.pipeline.model_groups]
    return json_response({"object": "list", "data": cards})


async def retrieve_model(request: Request, services: Services) -> ASGIApp:
    _identify(request, services)
    name = request.scope["path"].removeprefix("/v1/models/")
    return json_response(_model_card(services.pipeline.model_group(name)))
