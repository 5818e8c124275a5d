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
    # Largest JSON request body, in bytes; a larger one gets 413 (uploads: files.max_bytes).
    max_request_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # Seconds a draining process (SIGTERM) gives in-flight requests and streams to finish.
    drain_timeout_s: float = Field(default=30.0, ge=0)
    # Largest request head (request line and headers) in bytes; beyond it, 431 (api/protocol.py).
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    # Most headers one request may have; beyond it, 431.
    max_headers: int = Field(default=100, ge=8)
    # Seconds to send a request head, from the connection's opening (kept alive: from the
    # request's first bytes); beyond it, 408.
    header_timeout_s: float = Field(default=10.0, gt=0)
    # Seconds to send a request body once its head is in; beyond it, 408.
    body_timeout_s: float = Field(default=60.0, gt=0)
    # Open connections per gateway process; one more has its request answered 503 and is
    # closed. The bench holds 10,000 streams open at once.
    max_connections: int = Field(default=16_384, ge=1)
    # Open connections from one client address (429 beyond); None: no cap, since behind a
    # proxy or NAT every client shares one address.
    max_connections_per_client: int | None = Field(default=None, ge=1)
    # One JSON line per request on stderr (the access log); false: none is written.
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
