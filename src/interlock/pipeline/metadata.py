"""A tensor model version's metadata and readiness (``GET
/v1/models/{name}/versions/{version}``): the adapter's v2 metadata, plus
whether the version can serve now (its breaker is not open and the adapter
says it is ready) and where it is in its life cycle."""

from __future__ import annotations

import asyncio

from interlock.errors import NotFound
from interlock.pipeline.request import JSONDict
from interlock.providers.base import CallContext
from interlock.routing.breaker import BreakerState
from interlock.routing.router import ModelGroup

__all__ = ["version_metadata"]

# Readiness asks the upstream; a slow one must not hold the caller long.
READY_TIMEOUT_S = 2.0


async def version_metadata(group: ModelGroup, version: str, request_id: str) -> JSONDict:
    deployments = [d for d in group.deployments.values() if d.info.version == version]
    if not deployments:
        raise NotFound(
            f"The model `{group.name}` has no version `{version}`.",
            param="version",
            code="version_not_found",
        )
    deployment = deployments[0]
    ctx = CallContext(request_id, group.name)
    metadata = await deployment.provider.model_metadata(ctx)
    ready = False
    if deployment.breaker.state is not BreakerState.OPEN:
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                ready = await deployment.provider.model_ready(ctx)
        except TimeoutError:
            ready = False
    versions = sorted({d.info.version for d in group.deployments.values() if d.info.version})
    return {
        **metadata,
        "name": group.name,
        "versions": versions,
        "version": version,
        "stage": deployment.info.stage,
        "ready": ready,
    }
