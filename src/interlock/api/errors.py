"""Errors reach HTTP here, and only here.

Every ``InterlockError`` states its own status and OpenAI body; Starlette's
routing errors (404/405) are translated into the same shape; anything else is
our bug: logged with its traceback and answered with a 500 that hides the
details.
"""

from __future__ import annotations

import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from interlock.errors import InterlockError, MethodNotAllowed, NotFound, ProviderError

__all__ = ["error_event", "error_response", "exception_handlers"]

log = logging.getLogger("interlock.errors")


def error_response(exc: InterlockError) -> Response:
    return Response(
        orjson.dumps(exc.to_body()), status_code=exc.status_code, media_type="application/json"
    )


def error_event(exc: InterlockError) -> bytes:
    """An error after the first streamed byte: an SSE event, never a status change."""
    return b"data: " + orjson.dumps(exc.to_body()) + b"\n\n"


def _request_id(request: Request) -> str:
    return str(request.scope.get("interlock.request_id", "-"))


async def _interlock_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InterlockError)
    if isinstance(exc, ProviderError):
        log.warning(
            "upstream failure",
            extra={
                "request_id": _request_id(request),
                "deployment": exc.deployment,
                "status": exc.status_code,
                "error": exc.message,
            },
        )
    return error_response(exc)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(MethodNotAllowed(f"Method {request.method} is not allowed here."))
    if exc.status_code == 404:
        return error_response(NotFound(f"Unknown path: {request.method} {request.url.path}"))
    return error_response(InterlockError(str(exc.detail)))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error", exc_info=exc, extra={"request_id": _request_id(request)})
    return error_response(InterlockError("The server had an error while processing your request."))


exception_handlers = {
    InterlockError: _interlock_error,
    HTTPException: _http_exception,
    Exception: _unexpected,
}
