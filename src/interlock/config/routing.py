"""Model groups and how requests are routed across their deployments:
strategy, retries, circuit breakers, heartbeats."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from interlock.config.base import _Strict
from interlock.config.deployments import DeploymentConfig

__all__ = ["BreakerSettings", "FailoverSettings", "ModelConfig", "RoutingConfig"]


class BreakerSettings(_Strict):
    """Each deployment's circuit breaker: when it trips, how long it stays open,
    how it closes. A failure is an upstream fault (5xx, 429, a refused
    credential, a timeout, a connection error); an error the request itself
    caused counts as a success. Failures are counted per instance; the
    breaker's state is shared through the state store."""

    # Failures in a row that trip the breaker.
    consecutive_failures: int = Field(default=5, ge=1)
    # Also trips when at least this share of the requests in window_s failed.
    error_rate: float = Field(default=0.5, gt=0, le=1)
    # Seconds of recent outcomes error_rate is measured over.
    window_s: float = Field(default=30.0, gt=0)
    # Requests in the window before error_rate can trip the breaker.
    min_requests: int = Field(default=20, ge=1)
    # Seconds nothing is sent after a trip; doubled after each failed probe, up to
    # max_open_s. Also bounds the 503's Retry-After when no deployment is eligible.
    open_s: float = Field(default=5.0, gt=0)
    # The longest open period; also caps how long an upstream's Retry-After rests it.
    max_open_s: float = Field(default=60.0, gt=0)
    # Requests that probe a half-open deployment at once, across all instances.
    half_open_probes: int = Field(default=1, ge=1)
    # Probe successes in a row that close the breaker; one probe failure re-opens it.
    close_after: int = Field(default=2, ge=1)
    # How often an instance re-reads the shared state: another's trip reaches it within this.
    refresh_s: float = Field(default=0.5, gt=0)

    @model_validator(mode="after")
    def _open_bounds(self) -> BreakerSettings:
        if self.open_s > self.max_open_s:
            raise ValueError("open_s must not exceed max_open_s")
        return self


class FailoverSettings(_Strict):
    """How a model group rides out a failing deployment: retries elsewhere,
    circuit breakers, heartbeats while a stream waits. The defaults protect
    a user who lists two upstreams and reads nothing: retry once elsewhere,
    trip breakers."""

    # Attempts per request, the first included (2: one retry), each on another
    # deployment; only upstream faults are retried.
    max_attempts: int = Field(default=2, ge=1, le=10)
    # Before retry n, a random wait of up to min(backoff_max_s, backoff_base_s * 2**(n-1)).
    backoff_base_s: float = Field(default=0.05, ge=0)
    # The longest wait before a retry, in seconds.
    backoff_max_s: float = Field(default=2.0, ge=0)
    # Retries may add this share of the group's requests over the last 10 s (plus a
    # floor of one a second); beyond it a failure is returned instead of retried.
    retry_budget_ratio: float = Field(default=0.2, ge=0, le=1)
    # Circuit breakers, one per deployment of this group.
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    # Seconds a stream waits for its first token before its response starts anyway, with
    # heartbeats; a failure after that is an SSE error event, not an HTTP status.
    heartbeat_after_s: float = Field(default=2.0, gt=0)
    # Seconds between SSE comment heartbeats of a started stream still awaiting its first token.
    heartbeat_interval_s: float = Field(default=10.0, gt=0)
    # Opt-in: continue a stream on another deployment if one dies mid-way.
    mid_stream_failover: bool = False


class RoutingConfig(FailoverSettings):
    """Per model group: the order its deployments are tried in (the
    strategy), and how it rides out a failing one (retries, breakers,
    stream heartbeats)."""

    # The order deployments are tried in: weighted, priority, round_robin, least_busy,
    # least_latency, cheapest, pinned, canary, ab or bandit.
    strategy: str = "weighted"
    # The strategy's parameters; unknown or missing ones fail at start-up.
    params: dict[str, Any] = Field(default_factory=dict)


class ModelConfig(_Strict):
    """A model group: the public name clients ask for, the deployments that serve
    it and how requests are routed among them."""

    # The name clients send as `model`; unique, and not reusable by registry models.
    name: str = Field(min_length=1)
    # Other names clients may send for this model, such as one an agent hard-codes
    # (Claude Code's claude-haiku-4-5). A request by an alias is this model's in
    # every way: keys' allowed models, limits, cache, routing, metrics and the
    # ledger all use `name`. Not listed by /v1/models; unique across every name.
    aliases: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    # The upstreams serving this name, tried in the routing strategy's order.
    deployments: list[DeploymentConfig] = Field(min_length=1)
    # Strategy, retries, breakers and stream heartbeats for this group.
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    # Overrides the top-level guardrails policy for this model group.
    guardrails: dict[str, Any] | None = None
