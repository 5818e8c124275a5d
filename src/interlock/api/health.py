"""Probes and the metrics scrape: ``/health/*`` and ``/metrics``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from interlock.api.admin import require_admin
from interlock.api.services import Services
from interlock.api.wire import json_response
from interlock.telemetry.metrics import CONTENT_TYPE_LATEST

__all__ = ["deployments", "live", "metrics", "ready"]


async def live(request: Request, services: Services) -> ASGIApp:
    return json_response({"status": "ok"})


async def ready(request: Request, services: Services) -> ASGIApp:
    """Whether this instance should get traffic: 503 while it drains, before
    its stores are open, and when Redis is out under ``fail_closed`` (it
    would refuse every request). ADR 0019: what every instance shares (the
    durable store, Redis under ``fail_open_local``, an upstream model group
    with no healthy deployment) is reported in the body, status "degraded",
    but answered 200: a load balancer that followed it would take every
    instance out at once and turn a partial outage into a whole one, while
    each instance still serves (the ledger journals, limits run locally,
    other models answer)."""
    if services.drain.draining:
        return json_response({"status": "draining"}, 503)
    store = services.records.store
    checks = {
        "state_store": await services.state.ping(),
        "durable_store": store is not None and await store.ping(),
    }
    degraded = services.telemetry.health.degraded_groups()
    limits = "local" if services.pipeline.admission.limits_degraded else "shared"
    body: dict[str, Any] = {"checks": checks, "limits": limits}
    if degraded or not all(checks.values()):
        body = {"status": "degraded", "degraded_models": degraded, **body}
    else:
        body = {"status": "ok", **body}
    unready = store is None or (not checks["state_store"] and services.state_outage_fatal)
    return json_response(body, 503 if unready else 200)


async def deployments(request: Request, services: Services) -> ASGIApp:
    """Per deployment: ids, health and error rates, which tell an outsider how
    the gateway is built: the admin key's unless ``server.public_deployment_health``."""
    if not services.public_deployment_health:
        require_admin(request, services)
    return json_response({"object": "list", "data": services.telemetry.health.deployments()})


async def metrics(request: Request, services: Services) -> ASGIApp:
    return Response(services.telemetry.metrics.render(), media_type=CONTENT_TYPE_LATEST)
