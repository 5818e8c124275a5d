"""Errors reach HTTP here, and only here.

Every ``InterlockError`` states its own status and OpenAI body. The error
boundary in ``api/asgi.py`` turns them into responses with these functions;
anything else is our bug, logged with its traceback and answered with a 500
that hides the details.
"""

from __future__ import annotations

import logging
import math

import orjson
from starlette.responses import Response
from starlette.types import Scope

from interlock.errors import InterlockError, ProviderError

__all__ = ["error_event", "error_response", "log_error"]

log = logging.getLogger("interlock.errors")


def error_response(exc: InterlockError) -> Response:
    headers = None
    if exc.retry_after_s is not None:
        headers = {"retry-after": str(max(1, math.ceil(exc.retry_after_s)))}
    return Response(
        orjson.dumps(exc.to_body()),
        status_code=exc.status_code,
        media_type="application/json",
        headers=headers,
    )


def error_event(exc: InterlockError) -> bytes:
    """An error after the first streamed byte: an SSE event, never a status change."""
    return b"data: " + orjson.dumps(exc.to_body()) + b"\n\n"


def log_error(exc: InterlockError, scope: Scope) -> None:
    """Upstream failures are worth a warning; client mistakes are not."""
    if isinstance(exc, ProviderError):
        log.warning(
            "upstream failure",
            extra={
                "request_id": scope.get("interlock.request_id"),
                "deployment": exc.deployment,
                "status": exc.status_code,
                "error": exc.message,
            },
        )
