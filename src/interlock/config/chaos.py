"""Fault injection per deployment (errors, latency, timeouts, resets, cut streams)."""

from __future__ import annotations

from pydantic import Field

from interlock.config.base import _Strict

__all__ = ["SCENARIOS", "ChaosConfig", "ChaosRule"]


class ChaosRule(_Strict):
    """Faults for one deployment's calls, each a normal upstream error marked as
    injected. Latency comes first; then one random draw picks at most one of an
    error, a timeout or a reset, so their rates add up (in that order)."""

    # The deployment id the rule applies to; the first rule naming it is used.
    deployment: str
    # Share of calls (0-1) that fail at once with an upstream error of error_status.
    error_rate: float = Field(default=0.0, ge=0, le=1)
    # The HTTP status of an injected error; routing treats it as that status from upstream.
    error_status: int = Field(default=500, ge=400, le=599)
    # Milliseconds added before every call (chat, embeddings, inference, a stream's start).
    latency_ms: float = Field(default=0.0, ge=0)
    # Share of calls (0-1) that fail as an upstream timeout.
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    # Share of calls (0-1) that fail as a reset connection.
    reset_rate: float = Field(default=0.0, ge=0, le=1)
    # A stream fails with a connection error after this many chunks (0: before the
    # first); None: streams are never cut.
    cut_after_chunks: int | None = Field(default=None, ge=0)


class ChaosConfig(_Strict):
    """Fault injection; nothing is injected unless ``enabled`` is true."""

    # Rules apply only while true; PUT /admin/chaos replaces enabled and rules at run time.
    enabled: bool = False
    # Faults by deployment; a deployment no rule names is left alone.
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
