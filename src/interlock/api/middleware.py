"""The outermost ASGI layer: request id, the request's telemetry record,
``Connection: close`` while draining.

Written as plain ASGI (not ``BaseHTTPMiddleware``) because it wraps every
request and streamed chunk. After the last byte it hands the record to
telemetry (access log, metrics, slow requests, trace span).
"""

from __future__ import annotations

import logging
import re

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from interlock.admission.accounting import Accounting
from interlock.errors import InterlockError
from interlock.ids import random_hex
from interlock.telemetry.hub import Telemetry
from interlock.telemetry.record import RequestRecord

__all__ = ["DrainState", "RequestContextMiddleware"]

log = logging.getLogger("interlock.app")

_VALID_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")
_CLOSE = (b"connection", b"close")


class DrainState:
    """Set when shutdown begins (readiness turns 503).

    A request that reaches the app while draining came on a connection
    opened before the listener closed, often a load balancer's pooled one,
    which was free to send it: it is served, not refused, and its response
    says ``Connection: close`` so that nothing more comes on that connection.
    A 503 here would reach the client: a load balancer resends a POST that a
    server answered only if told it may resend non-idempotent requests
    (nginx's ``non_idempotent``), which the deployment deliberately does not.
    """

    def __init__(self) -> None:
        self.draining = False
        # When the drain began (``time.monotonic``); None while serving.
        self.began_at: float | None = None


def _new_request_id() -> str:
    return f"req_{random_hex(24)}"


class RequestContextMiddleware:
    def __init__(
        self, app: ASGIApp, drain: DrainState, telemetry: Telemetry, accounting: Accounting
    ):
        self.app = app
        self.drain = drain
        self.telemetry = telemetry
        self.accounting = accounting

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope["headers"])
        record = RequestRecord(request_id, scope["method"], "unmatched")
        scope["interlock.request_id"] = request_id
        scope["interlock.record"] = record
        telemetry = self.telemetry
        if telemetry.tracing is not None:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            telemetry.start(record, headers)
        header = (b"x-request-id", request_id.encode("ascii"))

        drain = self.drain

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                message["headers"] = [*message.get("headers", ()), header, *_routing(record)]
                if drain.draining:
                    # The client (a load balancer's pooled connection) must not
                    # send another request on this connection: it is about to close.
                    message["headers"].append(_CLOSE)
            await send(message)

        in_flight = telemetry.metrics.in_flight
        in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:  # the app's boundary missed it: our bug
            if not record.status:  # nothing was sent: a 500 in OpenAI's shape, not uvicorn's text
                log.error("unhandled error", exc_info=exc, extra={"request_id": request_id})
                hidden = InterlockError("The server had an error while processing your request.")
                record.error_code = hidden.error_type
                await _answer(send_with_id, hidden)
        finally:
            in_flight.dec()
            telemetry.finish(record)
            await self.accounting.finish(record)


def _routing(record: RequestRecord) -> list[tuple[bytes, bytes]]:
    """Rate-limit state and how the request was routed."""
    headers = [(k.encode(), v.encode()) for k, v in record.ratelimit_headers.items()]
    if record.cache is not None:
        headers.append((b"x-interlock-cache", record.cache.encode()))
    if record.guardrails:
        headers.append((b"x-interlock-guardrails", ",".join(record.guardrails).encode()))
    if record.deployment is None:
        return headers
    headers += [
        (b"x-interlock-deployment", record.deployment.encode()),
        (b"x-interlock-attempts", str(record.attempts).encode()),
    ]
    if record.route_reason:
        headers.append((b"x-interlock-route", record.route_reason.encode()))
    for name, value in record.route_labels.items():
        headers.append((f"x-interlock-{name}".encode(), value.encode()))
    return headers


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    """A valid client-supplied ``x-request-id`` is kept, otherwise a new one."""
    for name, value in headers:
        if name == b"x-request-id":
            if _VALID_REQUEST_ID.match(value):
                return value.decode("ascii")
            break
    return _new_request_id()


async def _answer(send: Send, exc: InterlockError) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": exc.status_code,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": orjson.dumps(exc.to_body())})
