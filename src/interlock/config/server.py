"""The HTTP server itself: request size, what one client may hold, draining,
the admin key, and load shedding across all keys."""

from __future__ import annotations

from pydantic import Field

from interlock.config.base import Secret, _Strict

__all__ = ["LimitsConfig", "ServerConfig"]


class ServerConfig(_Strict):
    """The HTTP server: worker processes, request and header limits, what one
    client may hold, draining, the access log and the admin key."""

    # Worker processes serving one port (``interlock serve --workers``);
    # more than one needs Redis state (``GatewayConfig.workers_problem``).
    workers: int = Field(default=1, ge=1, le=256)
    max_request_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    drain_timeout_s: float = Field(default=30.0, ge=0)
    # What one client may hold (api/protocol.py): the request head (request
    # line and headers) in bytes and headers (431 beyond), the time to send
    # it and then the body (408 beyond), and open connections (503, or 429
    # from one address). The bench holds 10,000 streams open at once; the
    # per-address cap is off because behind a proxy or NAT every client
    # shares one address.
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    max_headers: int = Field(default=100, ge=8)
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=60.0, gt=0)
    max_connections: int = Field(default=16_384, ge=1)
    max_connections_per_client: int | None = Field(default=None, ge=1)
    access_log: bool = True
    # Protects /admin/* and /health/deployments; the admin API is off when unset.
    admin_key: Secret | None = None
    # /health/deployments without the admin key (it names every deployment
    # and its error rate, so it is the admin's unless opened here).
    public_deployment_health: bool = False


class LimitsConfig(_Strict):
    """Load shedding: a global cap on in-flight requests with a short bounded
    wait queue (higher tiers served first). A key's own concurrency, streams
    included, is its tier's ``max_concurrent``."""

    # Requests handled at once by one gateway process, all keys together; more wait.
    max_in_flight: int = Field(default=2048, ge=1)
    # Requests that may wait for a slot; when full (or 0) the next one gets a 503.
    max_queue: int = Field(default=512, ge=0)
    # Seconds a request may wait before a 503 (Retry-After: 1); 0: no waiting.
    queue_timeout_s: float = Field(default=1.0, ge=0)
