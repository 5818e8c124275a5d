"""Fault injection per deployment (errors, latency, timeouts, resets, cut streams)."""

from __future__ import annotations

from pydantic import Field

from interlock.config.base import _Strict

__all__ = ["SCENARIOS", "ChaosConfig", "ChaosRule"]


class ChaosRule(_Strict):
    deployment: str
    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_status: int = Field(default=500, ge=400, le=599)
    latency_ms: float = Field(default=0.0, ge=0)
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    reset_rate: float = Field(default=0.0, ge=0, le=1)
    cut_after_chunks: int | None = Field(default=None, ge=0)


class ChaosConfig(_Strict):
    """Fault injection; nothing is injected unless ``enabled`` is true."""

    enabled: bool = False
    rules: list[ChaosRule] = Field(default_factory=list)


# Named drills: a rule's settings, by name (`interlock chaos SCENARIO --deployment D`,
# and the console's deployments page).
SCENARIOS: dict[str, dict[str, float | int]] = {
    "provider-outage": {"error_rate": 1.0, "error_status": 503},
    "latency-spike": {"latency_ms": 2000.0},
    "partial-degradation": {"error_rate": 0.3, "latency_ms": 300.0, "timeout_rate": 0.05},
    "flapping": {"error_rate": 1.0, "error_status": 500},  # toggled on and off by the CLI
    "mid-stream-cuts": {"cut_after_chunks": 3},
    "connection-resets": {"reset_rate": 0.5},
}
