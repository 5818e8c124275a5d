"""Model groups and how requests are routed across their deployments:
strategy, retries, circuit breakers, heartbeats."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from interlock.config.base import _Strict
from interlock.config.deployments import DeploymentConfig

__all__ = ["BreakerSettings", "ModelConfig", "RoutingConfig"]


class BreakerSettings(_Strict):
    consecutive_failures: int = Field(default=5, ge=1)
    error_rate: float = Field(default=0.5, gt=0, le=1)
    window_s: float = Field(default=30.0, gt=0)
    min_requests: int = Field(default=20, ge=1)
    open_s: float = Field(default=5.0, gt=0)
    max_open_s: float = Field(default=60.0, gt=0)
    half_open_probes: int = Field(default=1, ge=1)
    close_after: int = Field(default=2, ge=1)
    refresh_s: float = Field(default=0.5, gt=0)

    @model_validator(mode="after")
    def _open_bounds(self) -> BreakerSettings:
        if self.open_s > self.max_open_s:
            raise ValueError("open_s must not exceed max_open_s")
        return self


class RoutingConfig(_Strict):
    """Per model group. The defaults protect a user who lists two upstreams
    and reads nothing: spread load, retry once elsewhere, trip breakers."""

    strategy: str = "weighted"
    params: dict[str, Any] = Field(default_factory=dict)
    max_attempts: int = Field(default=2, ge=1, le=10)
    backoff_base_s: float = Field(default=0.05, ge=0)
    backoff_max_s: float = Field(default=2.0, ge=0)
    retry_budget_ratio: float = Field(default=0.2, ge=0, le=1)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    # While the first token is awaited: after this long, the response starts
    # and SSE comment heartbeats are sent every heartbeat_interval_s.
    heartbeat_after_s: float = Field(default=2.0, gt=0)
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    # Opt-in: continue a stream on another deployment if one dies mid-way.
    mid_stream_failover: bool = False


class ModelConfig(_Strict):
    name: str = Field(min_length=1)
    deployments: list[DeploymentConfig] = Field(min_length=1)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    # Overrides the top-level guardrails policy for this model group.
    guardrails: dict[str, Any] | None = None
