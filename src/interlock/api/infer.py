"""Tensor models over the KServe v2 / Open Inference Protocol shapes.

``POST /v1/infer`` names the model (and optionally its version) in the body
and goes through the pipeline like every model request;
``GET /v1/models/{name}/versions/{version}`` is the version's v2 metadata
plus whether it can serve now (its breaker is not open and the adapter says
it is ready).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.services import Services
from interlock.api.wire import json_response, model_request, request_record
from interlock.errors import ModelNotFound
from interlock.pipeline import Operation
from interlock.pipeline.metadata import version_metadata

__all__ = ["VERSION_ROUTE", "infer", "model_version"]

VERSION_ROUTE = "/v1/models/{model}/versions/{version}"


async def infer(request: Request, services: Services) -> ASGIApp:
    answer = await services.pipeline.run(await model_request(request, services, Operation.INFER))
    assert isinstance(answer, dict)  # tensor answers never stream
    return json_response(answer)


async def model_version(request: Request, services: Services, name: str, version: str) -> ASGIApp:
    record = request_record(request)
    record.route = VERSION_ROUTE
    principal = services.pipeline.admission.identify(request.headers.get("authorization"), record)
    if not principal.may_use(services.pipeline.canonical(name)):
        raise ModelNotFound(name)
    group = services.pipeline.model_group(name)
    return json_response(await version_metadata(group, version, record.request_id))
