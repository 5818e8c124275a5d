"""The composition root: builds every service from the config, once.

Nothing is created at import time; ``create_app`` returns an ASGI app whose
lifespan opens the upstream pools and closes them on shutdown.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
from interlock.tokens import TokenCounter, default_counter

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


def create_app(
    config: GatewayConfig, *, drain: DrainState | None = None, counter: TokenCounter | None = None
) -> ASGIApp:
    drain = drain or DrainState()
    router, providers = build_router(config, counter or default_counter())
    access_log = AccessLog() if config.server.access_log else None

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
            if access_log is not None:
                access_log.flush()

    services = Services(
        pipeline=Pipeline(KeyRing(config.keys), router),
        drain=drain,
        max_body_bytes=config.server.max_request_body_bytes,
    )
    app = GatewayApp(services, lifespan)
    return RequestContextMiddleware(app, drain, access_log)
