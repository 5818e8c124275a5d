"""Errors reach HTTP here, and only here.

Every ``InterlockError`` states its own status and OpenAI body. The error
boundary in ``api/asgi.py`` turns them into responses with these functions;
anything else is our bug, logged with its traceback and answered with a 500
that hides the details. The HTTP server's own refusals (a malformed or
oversized request head, a client too slow to send its request: ``api/protocol.py``)
are written as whole responses by ``error_bytes``, in the same shape.

Every message from an ``InterlockError`` passes the gateway's ``Redactor``
on its way out (``safe_message``): no secret reaches a client in an error
body or event, nor the warning logged here.
"""

from __future__ import annotations

import http
import logging
import math

import orjson
from starlette.responses import Response
from starlette.types import Scope

from interlock.errors import InterlockError, ProviderError
from interlock.redaction import Redactor

__all__ = [
    "error_bytes",
    "error_event",
    "error_response",
    "log_error",
    "retry_after_header",
    "safe_message",
]

log = logging.getLogger("interlock.errors")


def safe_message(exc: InterlockError, redactor: Redactor) -> str:
    return redactor.scrub(exc.message)


def _payload(exc: InterlockError, redactor: Redactor) -> bytes:
    body = exc.to_body()
    error = body.get("error")
    if isinstance(error, dict):
        error["message"] = safe_message(exc, redactor)
    return orjson.dumps(body)


def error_response(exc: InterlockError, redactor: Redactor) -> Response:
    headers = None
    if exc.retry_after_s is not None:
        headers = {"retry-after": retry_after_header(exc.retry_after_s)}
    return Response(
        _payload(exc, redactor),
        status_code=exc.status_code,
        media_type="application/json",
        headers=headers,
    )


def error_bytes(exc: InterlockError, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP/1.1 response for an error the server writes before (or
    instead of) the app, with ``headers`` (the server's ``date``) and
    ``connection: close``: the connection is closed after it."""
    body = orjson.dumps(exc.to_body())
    status = exc.status_code
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}".encode()]
    lines += [name + b": " + value for name, value in headers]
    lines += [
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
    ]
    if exc.retry_after_s is not None:
        lines.append(b"retry-after: " + retry_after_header(exc.retry_after_s).encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def error_event(exc: InterlockError, redactor: Redactor) -> bytes:
    """An error after the first streamed byte: an SSE event, never a status change."""
    return b"data: " + _payload(exc, redactor) + b"\n\n"


def log_error(exc: InterlockError, scope: Scope, redactor: Redactor) -> None:
    """Upstream failures are worth a warning; client mistakes are not."""
    if isinstance(exc, ProviderError):
        log.warning(
            "upstream failure",
            extra={
                "request_id": scope.get("interlock.request_id"),
                "deployment": exc.deployment,
                "status": exc.status_code,
                "error": safe_message(exc, redactor),
            },
        )
