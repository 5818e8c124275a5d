"""Typed configuration: one YAML file, validated once at start-up.

Secrets are never stored in the file; a value ``os.environ/NAME`` is read
from the environment when the file is loaded, and a missing variable is a
start-up error naming the file and the path inside it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "AdmissionConfig",
    "BreakerSettings",
    "CacheConfig",
    "ChaosConfig",
    "ChaosRule",
    "ConfigError",
    "DeploymentConfig",
    "GatewayConfig",
    "KeyConfig",
    "KeyLimits",
    "LimitsConfig",
    "ModelConfig",
    "PriceConfig",
    "RoutingConfig",
    "Secret",
    "ServerConfig",
    "StateConfig",
    "StoreConfig",
    "TelemetryConfig",
    "TierConfig",
    "TimeoutConfig",
    "bundled_config_path",
    "load_config",
    "parse_config",
]

ENV_PREFIX = "os.environ/"
ProviderName = Literal["openai", "anthropic", "gemini", "simulator"]


class ConfigError(Exception):
    """The configuration is invalid; the message names file, path and problem."""


class Secret:
    """A string that never shows itself in ``repr`` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class TimeoutConfig(_Strict):
    """Per-deployment upstream timeouts, in seconds."""

    connect_s: float = Field(default=5.0, gt=0)
    # Socket-level: time allowed for any single read from the upstream.
    read_s: float = Field(default=120.0, gt=0)
    # Router-level: first streamed chunk, and the longest gap between chunks.
    ttft_s: float = Field(default=60.0, gt=0)
    idle_s: float = Field(default=60.0, gt=0)
    # Whole non-streaming request (streams are bounded by ttft_s and idle_s).
    total_s: float = Field(default=600.0, gt=0)


class PriceConfig(_Strict):
    """US dollars per million tokens."""

    input_per_million: float = Field(default=0.0, ge=0)
    output_per_million: float = Field(default=0.0, ge=0)
    cached_input_per_million: float | None = Field(default=None, ge=0)


class DeploymentConfig(_Strict):
    id: str = Field(min_length=1)
    provider: ProviderName
    model: str | None = None
    base_url: str | None = None
    api_key: Secret | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    timeouts: TimeoutConfig = Field(default_factory=TimeoutConfig)
    max_connections: int = Field(default=1024, ge=1)
    price: PriceConfig = Field(default_factory=PriceConfig)
    # Routing facts used by strategies.
    weight: float = Field(default=1.0, gt=0)
    priority: int = 0
    version: str | None = None
    tags: list[str] = Field(default_factory=list)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _provider_needs(self) -> DeploymentConfig:
        if self.provider != "simulator" and not self.model:
            raise ValueError(f"provider {self.provider!r} needs `model` (the upstream model name)")
        if self.provider == "openai" and not self.base_url:
            raise ValueError("provider 'openai' needs `base_url` (e.g. http://127.0.0.1:8000/v1)")
        return self


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


Permission = Literal["force_deployment"]


class KeyLimits(_Strict):
    """Per-key limits; None means the tier's default (and a tier's None: unlimited)."""

    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    tokens_per_day: int | None = Field(default=None, ge=1)
    max_concurrent: int | None = Field(default=None, ge=1)


class TierConfig(_Strict):
    limits: KeyLimits = Field(default_factory=KeyLimits)
    # Higher tiers are served first from the load-shedding wait queue.
    priority: int = 0


def _default_tiers() -> dict[str, TierConfig]:
    return {
        # Config-file keys default to this: operators' own keys, no caps.
        "unlimited": TierConfig(priority=1),
        "anonymous": TierConfig(limits=KeyLimits(rpm=20, tpm=20_000, max_concurrent=2)),
        "standard": TierConfig(
            limits=KeyLimits(rpm=600, tpm=1_000_000, max_concurrent=64), priority=1
        ),
        "premium": TierConfig(
            limits=KeyLimits(rpm=6_000, tpm=10_000_000, max_concurrent=512), priority=2
        ),
    }


class KeyConfig(_Strict):
    name: str = Field(min_length=1)
    key: Secret
    tier: str = "unlimited"
    limits: KeyLimits = Field(default_factory=KeyLimits)
    allowed_models: list[str] | None = None
    budget_usd_day: float | None = Field(default=None, ge=0)
    budget_usd_month: float | None = Field(default=None, ge=0)
    # force_deployment: may send x-interlock-force-deployment (incident repro).
    permissions: list[Permission] = Field(default_factory=list)


class ServerConfig(_Strict):
    max_request_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    drain_timeout_s: float = Field(default=30.0, ge=0)
    access_log: bool = True
    # Protects /admin/*; the admin API is off when unset.
    admin_key: Secret | None = None


class LimitsConfig(_Strict):
    """Load shedding: a global cap on in-flight requests with a short bounded
    wait queue, and a per-key cap on concurrent streams."""

    max_in_flight: int = Field(default=2048, ge=1)
    max_queue: int = Field(default=512, ge=0)
    queue_timeout_s: float = Field(default=1.0, ge=0)
    max_streams_per_key: int = Field(default=256, ge=1)


class StateConfig(_Strict):
    backend: Literal["memory", "redis"] = "memory"
    url: str | None = None
    prefix: str = "interlock:"

    @model_validator(mode="after")
    def _redis_needs_url(self) -> StateConfig:
        if self.backend == "redis" and not self.url:
            raise ValueError("state.backend 'redis' needs `url` (e.g. redis://127.0.0.1:6379/0)")
        return self


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


class CacheConfig(_Strict):
    """Exact-match response cache (off unless enabled)."""

    enabled: bool = False
    ttl_s: float = Field(default=300.0, gt=0)
    # Per model group; 0 turns caching off for that group.
    model_ttl_s: dict[str, float] = Field(default_factory=dict)
    # temperature > 0 (or unset, which OpenAI treats as 1) is not cached unless true.
    cache_nondeterministic: bool = False
    # Tenancy: each key sees only its own entries unless a shared namespace is set.
    shared_namespace: str | None = None
    l1_max_entries: int = Field(default=10_000, ge=1)
    l1_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # Across instances (Redis state): wait this long for another instance's
    # identical request instead of calling upstream; 0 turns it off. A stream
    # starts its response (and heartbeats) only after this wait.
    remote_wait_s: float = Field(default=5.0, ge=0)


class StoreConfig(_Strict):
    """Durable records (keys, usage ledger). Default: SQLite in the data directory."""

    url: str | None = None


class AdmissionConfig(_Strict):
    # When Redis is unreachable: keep serving with per-instance limits, or refuse.
    on_state_failure: Literal["fail_open_local", "fail_closed"] = "fail_open_local"
    # How often each instance re-reads changed keys (revocations) from the store.
    key_refresh_s: float = Field(default=0.5, gt=0, le=60)


class TracingConfig(_Strict):
    enabled: bool = False
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    service_name: str = "interlock"
    sample_rate: float = Field(default=1.0, ge=0, le=1)


class TelemetryConfig(_Strict):
    # Share of requests whose stage timings go into the access log; errors
    # and slow requests are always kept.
    stage_sample_rate: float = Field(default=0.01, ge=0, le=1)
    slow_request_ms: float = Field(default=2000.0, ge=0)
    slow_requests_kept: int = Field(default=50, ge=1, le=10000)
    # A deployment with this many consecutive upstream failures is unhealthy.
    unhealthy_after_failures: int = Field(default=5, ge=1)
    tracing: TracingConfig = Field(default_factory=TracingConfig)


class GatewayConfig(_Strict):
    models: list[ModelConfig] = Field(min_length=1)
    keys: list[KeyConfig] = Field(min_length=1)
    server: ServerConfig = Field(default_factory=ServerConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    # Checked by interlock.guardrails.GuardrailsConfig at start-up.
    guardrails: dict[str, Any] | None = None
    admission: AdmissionConfig = Field(default_factory=AdmissionConfig)
    tiers: dict[str, TierConfig] = Field(default_factory=_default_tiers)
    chaos: ChaosConfig = Field(default_factory=ChaosConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> GatewayConfig:
        _require_unique("model name", [m.name for m in self.models])
        _require_unique("deployment id", [d.id for m in self.models for d in m.deployments])
        _require_unique("key name", [k.name for k in self.keys])
        for key in self.keys:
            if key.tier not in self.tiers:
                raise ValueError(f"key {key.name!r}: unknown tier {key.tier!r}")
        return self


def _require_unique(what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate {what} {name!r}")
        seen.add(name)


_SECRET_FIELDS = {"api_key", "key", "admin_key"}


def _resolve_secrets(node: Any, path: str, source: str, env: dict[str, str]) -> Any:
    """Replace ``os.environ/NAME`` strings and wrap secret fields in ``Secret``."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            resolved = _resolve_secrets(value, child, source, env)
            if key in _SECRET_FIELDS and isinstance(resolved, str):
                resolved = Secret(resolved)
            out[key] = resolved
        return out
    if isinstance(node, list):
        return [_resolve_secrets(v, f"{path}[{i}]", source, env) for i, v in enumerate(node)]
    if isinstance(node, str) and node.startswith(ENV_PREFIX):
        name = node[len(ENV_PREFIX) :]
        if name not in env:
            raise ConfigError(f"{source}: {path}: environment variable {name} is not set")
        return env[name]
    return node


def _format_location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def parse_config(
    raw: Any, source: str = "<config>", env: dict[str, str] | None = None
) -> GatewayConfig:
    """Validate already-parsed YAML data; errors name ``source`` and the path."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    resolved = _resolve_secrets(raw, "", source, dict(os.environ) if env is None else env)
    try:
        return GatewayConfig.model_validate(resolved)
    except ValidationError as exc:
        problems = [
            f"{source}: {_format_location(err['loc'])}: {err['msg']}" for err in exc.errors()
        ]
        raise ConfigError("\n".join(problems)) from None


def load_config(path: str | Path, env: dict[str, str] | None = None) -> GatewayConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    return parse_config(raw, str(path), env)


def bundled_config_path() -> Path:
    """The default configuration: simulator models only, nothing else needed."""
    return Path(__file__).with_name("default_config.yaml")
