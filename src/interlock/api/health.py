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
    """Ready unless draining, a store is unreachable, or some model group has
    no healthy deployment. Per-instance limits while Redis is out still serve:
    ready, and said so."""
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
    # A Redis outage in fail_open_local mode is survivable (local limits and
    # breakers), and every instance shares that Redis: taking them all out of
    # rotation would turn it into a full outage. So it is reported, not fatal.
    state_fatal = not checks["state_store"] and services.state_outage_fatal
    if degraded or not checks["durable_store"] or state_fatal:
        return json_response({"status": "degraded", "degraded_models": degraded, **body}, 503)
    return json_response({"status": "ok", **body})


async def deployments(request: Request, services: Services) -> ASGIApp:
    """Per deployment: ids, health and error rates, which tell an outsider how
    the gateway is built: the admin key's unless ``server.public_deployment_health``."""
    if not services.public_deployment_health:
        require_admin(request, services)
    return json_response({"object": "list", "data": services.telemetry.health.deployments()})


async def metrics(request: Request, services: Services) -> ASGIApp:
    return Response(services.telemetry.metrics.render(), media_type=CONTENT_TYPE_LATEST)
