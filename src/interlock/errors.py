"""The gateway's error tree.

Every error that can reach a client is an ``InterlockError``; it states its
HTTP status and OpenAI error ``type`` itself, so the HTTP edge maps errors in
exactly one place (``interlock.api.errors``)::

    InterlockError
    ├── InvalidRequest          400 invalid_request_error
    │   └── UnsupportedOperation   400 (model cannot do this, e.g. embeddings)
    ├── AuthenticationFailed    401 authentication_error
    ├── PermissionDenied        403 permission_error
    ├── ModelNotFound           404 invalid_request_error / model_not_found
    ├── NotFound                404 (unknown route)
    ├── MethodNotAllowed        405
    ├── RequestTimeout          408 (the request head or body came too slowly)
    ├── PayloadTooLarge         413
    ├── TooManyRequests         429 rate_limit_error (per-key caps)
    ├── HeaderFieldsTooLarge    431 (the request head is too long, or has too many headers)
    ├── ServiceUnavailable      503 (draining)
    │   ├── Overloaded             503 global in-flight cap and queue full
    │   └── NoHealthyDeployment    503 every deployment of a model group is out
    └── ProviderError           raised by adapters, classified where they enter
        ├── UpstreamStatusError     upstream answered with an error status
        ├── UpstreamConnectionError 502 could not connect / connection reset
        ├── UpstreamTimeout         504
        └── UpstreamProtocolError   502 garbage or unexpected body

Anything else escaping a handler is our own bug and becomes a 500.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "Conflict",
    "HeaderFieldsTooLarge",
    "InterlockError",
    "InvalidRequest",
    "MethodNotAllowed",
    "ModelNotFound",
    "NoHealthyDeployment",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PermissionDenied",
    "ProviderError",
    "RequestTimeout",
    "ServiceUnavailable",
    "TooManyRequests",
    "UnsupportedOperation",
    "UpstreamConnectionError",
    "UpstreamProtocolError",
    "UpstreamStatusError",
    "UpstreamTimeout",
]


class InterlockError(Exception):
    """Base class: an error with an HTTP status and an OpenAI error body."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        # Sent as ``Retry-After`` (whole seconds, at least 1).
        self.retry_after_s = retry_after_s

    def to_body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(InterlockError):
    status_code = 400
    error_type = "invalid_request_error"


class UnsupportedOperation(InvalidRequest):
    code = "unsupported_operation"


class AuthenticationFailed(InterlockError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(InterlockError):
    status_code = 403
    error_type = "permission_error"
    code = "permission_denied"


class ModelNotFound(InterlockError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str):
        super().__init__(
            f"The model `{model}` does not exist or you do not have access to it.",
            param="model",
        )


class NotFound(InterlockError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class Conflict(InterlockError):
    """The request is valid but the resource's state does not allow it now."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "conflict"


class MethodNotAllowed(InterlockError):
    status_code = 405
    error_type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTimeout(InterlockError):
    status_code = 408
    error_type = "invalid_request_error"
    code = "request_timeout"


class PayloadTooLarge(InterlockError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "request_too_large"


class HeaderFieldsTooLarge(InterlockError):
    status_code = 431
    error_type = "invalid_request_error"
    code = "request_header_fields_too_large"


class ServiceUnavailable(InterlockError):
    status_code = 503
    error_type = "server_error"
    code = "service_unavailable"


class Overloaded(ServiceUnavailable):
    """The global in-flight cap and its wait queue are full."""

    code = "overloaded"


class NoHealthyDeployment(ServiceUnavailable):
    code = "no_healthy_deployment"


class TooManyRequests(InterlockError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class ProviderError(InterlockError):
    """An upstream model server failed; ``deployment`` names which one."""

    status_code = 502
    error_type = "upstream_error"

    # True for faults the chaos tool injected on purpose.
    injected: bool = False

    def __init__(
        self,
        message: str,
        *,
        deployment: str = "",
        code: str | None = None,
        retry_after_s: float | None = None,
    ):
        super().__init__(message, code=code, retry_after_s=retry_after_s)
        self.deployment = deployment

    def mark_injected(self) -> ProviderError:
        self.injected = True
        return self


class UpstreamStatusError(ProviderError):
    """The upstream answered with an error status.

    Client mistakes the upstream reports (400, 404, 413, 422) keep their
    status so the caller sees what to fix; rate limiting stays 429; overload
    (503, Anthropic's 529) becomes 503; the upstream rejecting *our*
    credentials (401/403) and other upstream 5xx are the gateway's problem, so
    they become 502.
    """

    _PASS_THROUGH = {
        400: "invalid_request_error",
        404: "invalid_request_error",
        413: "invalid_request_error",
        422: "invalid_request_error",
        429: "rate_limit_error",
    }
    # The upstream said it is overloaded (Anthropic's 529 ``overloaded_error``,
    # anyone's 503): passed on as OpenAI reports overload, 503 ``server_error``.
    _OVERLOADED = frozenset({503, 529})

    def __init__(
        self,
        upstream_status: int,
        message: str,
        *,
        deployment: str = "",
        retry_after_s: float | None = None,
    ):
        super().__init__(
            message,
            deployment=deployment,
            code=f"upstream_{upstream_status}",
            retry_after_s=retry_after_s,
        )
        self.upstream_status = upstream_status
        if upstream_status in self._OVERLOADED:
            # Retryable by every OpenAI SDK, and honest: try again shortly.
            self.status_code = 503
            self.error_type = "server_error"
            self.code = "upstream_overloaded"
        elif upstream_status in self._PASS_THROUGH:
            self.status_code = upstream_status
            self.error_type = self._PASS_THROUGH[upstream_status]
        else:
            self.status_code = 502


class UpstreamConnectionError(ProviderError):
    code = "upstream_connection_error"


class UpstreamTimeout(ProviderError):
    status_code = 504
    code = "upstream_timeout"


class UpstreamProtocolError(ProviderError):
    code = "upstream_protocol_error"
