"""Tensor models over the KServe v2 / Open Inference Protocol shapes.

``POST /v1/infer`` names the model (and optionally its version) in the body
and goes through the pipeline like every model request;
``GET /v1/models/{name}/versions/{version}`` is the version's v2 metadata
plus whether it can serve now (its breaker is not open and the adapter says
it is ready).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.services import Services
from interlock.api.wire import json_response, model_request, request_record
from interlock.errors import ModelNotFound, NotFound
from interlock.pipeline import Operation
from interlock.providers.base import CallContext
from interlock.routing.breaker import BreakerState

__all__ = ["VERSION_ROUTE", "infer", "model_version"]

VERSION_ROUTE = "/v1/models/{model}/versions/{version}"
# Readiness asks the upstream; a slow one must not hold the caller long.
_READY_TIMEOUT_S = 2.0


async def infer(request: Request, services: Services) -> ASGIApp:
    answer = await services.pipeline.run(await model_request(request, services, Operation.INFER))
    assert isinstance(answer, dict)  # tensor answers never stream
    return json_response(answer)


async def model_version(request: Request, services: Services, name: str, version: str) -> ASGIApp:
    record = request_record(request)
    record.route = VERSION_ROUTE
    principal = services.pipeline.admission.identify(request.headers.get("authorization"), record)
    if not principal.may_use(name):
        raise ModelNotFound(name)
    group = services.pipeline.model_group(name)
    deployments = [d for d in group.deployments.values() if d.info.version == version]
    if not deployments:
        raise NotFound(
            f"The model `{name}` has no version `{version}`.",
            param="version",
            code="version_not_found",
        )
    deployment = deployments[0]
    ctx = CallContext(record.request_id, name)
    metadata: dict[str, Any] = await deployment.provider.model_metadata(ctx)
    ready = False
    if deployment.breaker.state is not BreakerState.OPEN:
        try:
            async with asyncio.timeout(_READY_TIMEOUT_S):
                ready = await deployment.provider.model_ready(ctx)
        except TimeoutError:
            ready = False
    versions = sorted({d.info.version for d in group.deployments.values() if d.info.version})
    return json_response(
        {
            **metadata,
            "name": name,
            "versions": versions,
            "version": version,
            "stage": deployment.info.stage,
            "ready": ready,
        }
    )
