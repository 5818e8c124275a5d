"""The gateway's ASGI application: lifespan, dispatch, and the error boundary.

A dict lookup replaces a framework router and its middleware stack: the
gateway has a handful of routes, and every layer on this path costs every
request (see bench/README.md for the before/after figures). Starlette still
provides the ``Request`` and ``Response`` types. Model requests are admitted
(keys, load shedding, limits) by the pipeline, not here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive, Scope, Send

from interlock.api.errors import log_error
from interlock.api.services import Services
from interlock.api.table import error_shape, exact_routes, prefix_routes
from interlock.api.wire import Handler
from interlock.errors import InterlockError, MethodNotAllowed, NotFound

__all__ = ["GatewayApp"]

log = logging.getLogger("interlock.app")

Lifespan = Callable[[], AbstractAsyncContextManager[None]]


class GatewayApp:
    def __init__(self, services: Services, lifespan: Lifespan):
        self.services = services
        self._lifespan = lifespan

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._run_lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        route = None
        try:
            route, handler = _find_handler(scope["path"], scope["method"])
            scope["interlock.record"].route = route
            response = await handler(request, self.services)
        except InterlockError as exc:
            scope["interlock.record"].error_code = exc.code or exc.error_type
            log_error(exc, scope, self.services.redactor)
            # A dialect's routes answer errors in its own shape (Anthropic's).
            shape = error_shape(route, "anthropic-version" in request.headers)
            response = shape(exc, self.services.redactor)
        except ClientDisconnect:
            # The client left before its body was in, or was cut off for
            # sending it too slowly (api/protocol.py answered 408): no one to
            # answer. 499 is nginx's "client closed request".
            scope["interlock.record"].status = 499
            return
        except Exception as exc:  # our own bug: log it, hide it, answer 500
            log.error(
                "unhandled error",
                exc_info=exc,
                extra={"request_id": scope.get("interlock.request_id")},
            )
            hidden = InterlockError("The server had an error while processing your request.")
            scope["interlock.record"].error_code = hidden.error_type
            shape = error_shape(route, "anthropic-version" in request.headers)
            response = shape(hidden, self.services.redactor)
        await response(scope, receive, send)

    async def _run_lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        context = self._lifespan()
        try:
            await context.__aenter__()
        except Exception as exc:
            log.error("startup failed", exc_info=exc)
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown"
        await context.__aexit__(None, None, None)
        await send({"type": "lifespan.shutdown.complete"})


def _find_handler(path: str, method: str) -> tuple[str, Handler]:
    """The route template (a bounded metrics label) and its handler."""
    route, methods = path, exact_routes.get(path)
    if methods is None:
        for prefix, template, candidates in prefix_routes:
            if path.startswith(prefix):
                route, methods = template, candidates
                break
    if methods is None:
        raise NotFound(f"Unknown path: {method} {path}")
    handler = methods.get(method)
    if handler is None:
        raise MethodNotAllowed(f"Method {method} is not allowed on {path}.")
    return route, handler
