"""The model registry: how gateways learn of changes, and when a canary is
rolled back without anyone asking."""

from __future__ import annotations

from pydantic import Field

from interlock.config.base import _Strict
from interlock.config.routing import FailoverSettings

__all__ = ["CanaryConfig", "RegistryConfig"]


class CanaryConfig(_Strict):
    """Automatic rollback: the canary is compared with the live version of
    its model over the last ``window_s``, each on this gateway's own traffic."""

    # Judge canaries and roll one back when it breaches the margins below (or its
    # breaker opens); false: nothing is judged or rolled back automatically.
    auto_rollback: bool = True
    # Seconds of recent traffic (in one-second buckets) each comparison covers.
    window_s: float = Field(default=60.0, gt=0)
    # Neither side is judged on fewer requests than this in the window.
    min_requests: int = Field(default=20, ge=1)
    # Rolled back when the canary's error rate exceeds the live version's by
    # more than this (an absolute fraction: 0.05 is five percentage points).
    error_margin: float = Field(default=0.05, ge=0, le=1)
    # Rolled back when the canary's mean latency exceeds the live version's by more
    # than this fraction (0.5: half as slow again), and by at least latency_floor_ms.
    latency_margin: float = Field(default=0.5, ge=0)
    # Milliseconds the canary must also be slower by for latency_margin to roll it back
    # (a 2 ms model taking 4 ms is no reason to).
    latency_floor_ms: float = Field(default=20.0, ge=0)
    # An open breaker stops the canary's traffic, and with it the evidence
    # the margins need: roll back when it opens (unless the live version is
    # failing as badly, which is an outage, not a bad canary).
    rollback_on_open_breaker: bool = True


class RegistryConfig(_Strict):
    # Versions registered through /admin/models are routed next to the
    # config file's models; off: the file alone, and the admin API says so.
    enabled: bool = True
    # How often each gateway reads the registry's revision in the state
    # store (one GET); a change made anywhere reaches it within this.
    poll_s: float = Field(default=0.25, gt=0, le=10)
    # How often each gateway compares with the records store itself, in case a
    # change was made while the state store was out.
    reload_s: float = Field(default=5.0, gt=0)
    # Automatic rollback of a canary version that does worse than its model's live one.
    canary: CanaryConfig = Field(default_factory=CanaryConfig)
    # Retries, circuit breakers and stream heartbeats of every registered model
    # (the versions' stages, not a strategy, decide the order they are tried in).
    routing: FailoverSettings = Field(default_factory=FailoverSettings)
