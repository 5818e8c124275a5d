"""The whole file: every section together, with the checks that span sections
(unique names, keys and JWTs naming known tiers)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from interlock.config.access import AdmissionConfig, KeyConfig, TierConfig, _default_tiers
from interlock.config.base import _Strict
from interlock.config.batch import BatchConfig
from interlock.config.cache import CacheConfig
from interlock.config.chaos import ChaosConfig
from interlock.config.chat_completions import ChatCompletionsConfig
from interlock.config.files import FilesConfig
from interlock.config.registry import RegistryConfig
from interlock.config.responses import ResponsesConfig
from interlock.config.routing import ModelConfig
from interlock.config.search import SearchConfig
from interlock.config.server import LimitsConfig, ServerConfig
from interlock.config.state import StateConfig, StoreConfig
from interlock.config.telemetry import TelemetryConfig

__all__ = ["GatewayConfig"]


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
    # How callers are admitted: when Redis is out, how often keys are re-read, JWT bearer auth.
    admission: AdmissionConfig = Field(default_factory=AdmissionConfig)
    # Limits and queue priority by tier name, for keys' and JWTs' `tier`. Setting it replaces
    # the built-in unlimited, anonymous, standard and premium tiers.
    tiers: dict[str, TierConfig] = Field(default_factory=_default_tiers)
    # Fault injection per deployment, for drills; nothing is injected unless enabled.
    chaos: ChaosConfig = Field(default_factory=ChaosConfig)
    # The AI search service (/api/v1/search, the /search page): backends, summary, tasks.
    search: SearchConfig = Field(default_factory=SearchConfig)
    # The Files API (/v1/files): upload limits and where the bytes are kept.
    files: FilesConfig = Field(default_factory=FilesConfig)
    # The Batches API and async jobs: their queue, workers, webhooks and limits.
    batch: BatchConfig = Field(default_factory=BatchConfig)
    # The model registry (/admin/models): versions routed beside the file's models, canaries.
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    # The Responses API: how long stored responses are kept.
    responses: ResponsesConfig = Field(default_factory=ResponsesConfig)
    # Chat Completions: how long completions stored with `store: true` are kept.
    chat_completions: ChatCompletionsConfig = Field(default_factory=ChatCompletionsConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> GatewayConfig:
        _require_unique(
            "model name or alias", [n for m in self.models for n in (m.name, *m.aliases)]
        )
        _require_unique("deployment id", [d.id for m in self.models for d in m.deployments])
        _require_unique("key name", [k.name for k in self.keys])
        for key in self.keys:
            if key.tier not in self.tiers:
                raise ValueError(f"key {key.name!r}: unknown tier {key.tier!r}")
        names = {m.name for m in self.models}
        search = self.search
        for field, model in (
            ("search.model", search.model),
            ("search.rerank.model", search.rerank.model if search.rerank else None),
        ):
            if model is not None and model not in names:
                raise ValueError(f"{field}: unknown model {model!r}")
        webhooks = self.batch.webhooks
        if webhooks.allowed_hosts and webhooks.secret is None:
            raise ValueError("batch.webhooks: allowed_hosts needs a secret to sign with")
        if self.batch.queue.backend == "redis" and (self.batch.queue.url or self.state.url) is None:
            raise ValueError("batch.queue: the redis backend needs a url (or state.url)")
        jwt = self.admission.jwt
        if jwt is not None:
            for tier in [jwt.default_tier, *(jwt.allowed_tiers or [])]:
                if tier not in self.tiers:
                    raise ValueError(f"admission.jwt: unknown tier {tier!r}")
        problem = self.workers_problem(self.server.workers)
        if problem is not None:
            raise ValueError(f"server.workers: {problem}")
        return self

    def workers_problem(self, workers: int) -> str | None:
        """Why ``workers`` processes cannot serve this config, or None.

        Memory state is per process: with several workers a key's rate limit
        and concurrency would be multiplied by their number, each would keep
        its own circuit breakers and cache, and coalescing would stop at the
        process. Redis is what they share (the SQLite store and the ledger's
        journal already work across processes)."""
        if workers > 1 and self.state.backend == "memory":
            return (
                f"{workers} worker processes need shared state, and state.backend is "
                "'memory': each process would keep its own rate limits, concurrency, "
                "circuit breakers and cache. Set state.backend: redis with state.url "
                "(e.g. redis://127.0.0.1:6379/0), or run one worker."
            )
        return None


def _require_unique(what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"duplicate {what} {name!r}")
        seen.add(name)
