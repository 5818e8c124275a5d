"""``GET /v1/models`` and ``GET /v1/models/{model}``: the public model names
(and ``/v1/models/{model}/versions/{version}``, a tensor model's metadata:
``api/infer.py``)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.infer import model_version
from interlock.api.services import Services
from interlock.api.wire import json_response, request_record
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


def _identify(request: Request, services: Services) -> None:
    services.pipeline.admission.identify(
        request.headers.get("authorization"), request_record(request)
    )


async def list_models(request: Request, services: Services) -> ASGIApp:
    _identify(request, services)
    cards = [_model_card(g, services.pipeline) for g in services.pipeline.model_groups]
    return json_response({"object": "list", "data": cards})


async def retrieve_model(request: Request, services: Services) -> ASGIApp:
    path = request.scope["path"].removeprefix("/v1/models/")
    name, marker, version = path.rpartition("/versions/")
    if marker and name and version and "/" not in version:
        return await model_version(request, services, name, version)
    _identify(request, services)
    pipeline = services.pipeline
    return json_response(_model_card(pipeline.model_group(path), pipeline))
