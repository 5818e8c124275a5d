"""The composition root: builds every service from the config, once.

Nothing is created at import time; ``create_app`` returns an ASGI app whose
lifespan opens the upstream pools and closes them (and flushes telemetry)
on shutdown.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, BinaryIO

from starlette.types import ASGIApp

from interlock.admission.keys import KeyRing
from interlock.api.asgi import GatewayApp
from interlock.api.middleware import DrainState, RequestContextMiddleware
from interlock.api.routes import Services
from interlock.config import GatewayConfig
from interlock.pipeline import Pipeline
from interlock.providers.base import Provider
from interlock.providers.registry import build_provider
from interlock.routing.router import ModelRoute, Router
from interlock.telemetry.access_log import AccessLog
from interlock.telemetry.health import DeploymentHealth, HealthBoard
from interlock.telemetry.hub import Telemetry
from interlock.telemetry.metrics import Metrics
from interlock.tokens import TokenCounter, default_counter

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = ["create_app"]


def build_router(config: GatewayConfig, counter: TokenCounter) -> tuple[Router, list[Provider]]:
    created = int(time.time())
    providers: list[Provider] = []
    routes_by_name = {}
    for model in config.models:
        built = [build_provider(d, counter) for d in model.deployments]
        providers.extend(built)
        routes_by_name[model.name] = ModelRoute(model.name, built, created)
    return Router(routes_by_name), providers


def build_telemetry(
    config: GatewayConfig,
    router: Router,
    span_exporter: SpanExporter | None,
    log_stream: BinaryIO | None = None,
) -> Telemetry:
    settings = config.telemetry
    health = HealthBoard(
        {
            route.name: [
                DeploymentHealth(p.deployment_id, p.provider_name) for p in route.providers
            ]
            for route in router.routes
        },
        unhealthy_after=settings.unhealthy_after_failures,
    )
    tracing = None
    if settings.tracing.enabled or span_exporter is not None:
        from interlock.telemetry.tracing import Tracing  # the SDK only when tracing is on

        tracing = Tracing(
            settings.tracing.service_name,
            exporter=span_exporter,
            otlp_endpoint=settings.tracing.otlp_endpoint,
            sample_rate=settings.tracing.sample_rate,
            batch=span_exporter is None,
        )
    return Telemetry(
        settings,
        Metrics(),
        health,
        access_log=AccessLog(log_stream) if config.server.access_log else None,
        tracing=tracing,
    )


def create_app(
    config: GatewayConfig,
    *,
    drain: DrainState | None = None,
    counter: TokenCounter | None = None,
    span_exporter: SpanExporter | None = None,
    log_stream: BinaryIO | None = None,
) -> ASGIApp:
    """``span_exporter`` and ``log_stream`` let tests read traces and the
    access log in process."""
    drain = drain or DrainState()
    router, providers = build_router(config, counter or default_counter())
    telemetry = build_telemetry(config, router, span_exporter, log_stream)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        started: list[Provider] = []
        try:
            for provider in providers:
                await provider.start()
                started.append(provider)
            yield
        finally:
            for provider in started:
                await provider.aclose()
            telemetry.shutdown()

    prices = {d.id: d.price for m in config.models for d in m.deployments}
    admin_key = config.server.admin_key
    services = Services(
        pipeline=Pipeline(KeyRing(config.keys), router, telemetry, prices),
        drain=drain,
        max_body_bytes=config.server.max_request_body_bytes,
        telemetry=telemetry,
        admin_key_digest=hashlib.sha256(admin_key.reveal().encode()).digest()
        if admin_key is not None
        else None,
    )
    return RequestContextMiddleware(GatewayApp(services, lifespan), drain, telemetry)
