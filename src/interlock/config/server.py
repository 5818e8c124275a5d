"""The HTTP server itself: request size, draining, the admin key, and load
shedding across all keys."""

from __future__ import annotations

from pydantic import Field

from interlock.config.base import Secret, _Strict

__all__ = ["LimitsConfig", "ServerConfig"]


class ServerConfig(_Strict):
    max_request_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    drain_timeout_s: float = Field(default=30.0, ge=0)
    access_log: bool = True
    # Protects /admin/*; the admin API is off when unset.
    admin_key: Secret | None = None


class LimitsConfig(_Strict):
    """Load shedding: a global cap on in-flight requests with a short bounded
    wait queue (higher tiers served first). A key's own concurrency, streams
    included, is its tier's ``max_concurrent``."""

    max_in_flight: int = Field(default=2048, ge=1)
    max_queue: int = Field(default=512, ge=0)
    queue_timeout_s: float = Field(default=1.0, ge=0)
