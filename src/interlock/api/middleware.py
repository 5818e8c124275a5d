"""The outermost ASGI layer: request id, drain refusal, access log.

Written as plain ASGI (not ``BaseHTTPMiddleware``) because it wraps every
request and streamed chunk; it adds one header and one log line and nothing
else.
"""

from __future__ import annotations

import os
import re
import time

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from interlock.errors import ServiceUnavailable
from interlock.telemetry.access_log import AccessLog

__all__ = ["DrainState", "RequestContextMiddleware"]

_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


class DrainState:
    """Set when shutdown begins: new requests are refused with 503."""

    def __init__(self) -> None:
        self.draining = False


def _new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, drain: DrainState, access_log: AccessLog | None):
        self.app = app
        self.drain = drain
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                if _VALID_REQUEST_ID.match(value):
                    request_id = value.decode("ascii")
                break
        request_id = request_id or _new_request_id()
        scope["interlock.request_id"] = request_id
        header = (b"x-request-id", request_id.encode("ascii"))
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            if self.drain.draining and scope["path"] not in ("/health/live",):
                await _refuse(send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except Exception:
            # Starlette re-raises after its 500 response has been sent (and
            # logged); if nothing was sent, there is nothing left to save.
            if not status:
                raise
        finally:
            if self.access_log is not None:
                self.access_log.write(
                    {
                        "msg": "request",
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    }
                )


async def _refuse(send: Send) -> None:
    exc = ServiceUnavailable("The server is shutting down; retry on another instance.")
    await send(
        {
            "type": "http.response.start",
            "status": exc.status_code,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": orjson.dumps(exc.to_body())})
