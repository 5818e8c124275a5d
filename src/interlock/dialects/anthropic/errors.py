"""Errors in Anthropic's shape: ``{"type": "error", "error": {"type", "message"}}``.

The HTTP status is the gateway's own (``InterlockError.status_code``, the
same as on the OpenAI routes); only the body changes, to the error type
Anthropic documents for that status, which is what the Anthropic SDKs read
to pick their exception class. Overload (503, ours or an upstream's)
becomes ``overloaded_error``, the type Anthropic sends with its 529; the
status stays 503, which every SDK retries all the same.
"""

from __future__ import annotations

from interlock.errors import InterlockError

__all__ = ["error_body", "error_type"]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def error_type(exc: InterlockError) -> str:
    """Anthropic's error type for the gateway's error."""
    status = exc.status_code
    if status in _TYPES:
        return _TYPES[status]
    # 405, 408, 409, 422, 431: the request was wrong; 5xx: ours or upstream's.
    return "invalid_request_error" if status < 500 else "api_error"


def error_body(exc: InterlockError, message: str) -> dict[str, object]:
    """The body for ``exc``; ``message`` is its text made safe to show."""
    return {"type": "error", "error": {"type": error_type(exc), "message": message}}
