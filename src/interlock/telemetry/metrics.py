"""Prometheus metrics: the gateway's own (``interlock_*``) and the
OpenTelemetry GenAI semantic-convention ones (``gen_ai_*``, units in the
name, attributes as labels with dots turned to underscores).

Each app owns its registry (no process-global default registry). When
``PROMETHEUS_MULTIPROC_DIR`` is set, prometheus-client keeps values in files
shared by every worker process and ``render`` aggregates them, so the
numbers are right with several workers.

Label values are bounded sets: routes, model groups and deployments from the
config, key *names* (never keys), statuses.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from interlock.telemetry.record import RequestRecord

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_TOKEN_GAP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
_ADDED_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
)
_STAGE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1)
# The GenAI semantic conventions' advised buckets for token counts.
_TOKEN_BUCKETS = tuple(float(4**i) for i in range(14))

GENAI_LABELS = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._before_render: list[Callable[[], None]] = []
        self.requests = Counter(
            "interlock_requests",
            "Requests answered, by route, model group, deployment and status.",
            ["route", "model", "deployment", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "interlock_request_duration_seconds",
            "Time from request arrival to the last response byte.",
            ["route", "model", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "interlock_in_flight_requests",
            "Requests being served now.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.queue_depth = Gauge(
            "interlock_queue_depth",
            "Requests waiting for admission.",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.background_streams = Gauge(
            "interlock_background_streams",
            "Streamed background responses running (background and stream: true).",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.stage_duration = Histogram(
            "interlock_stage_duration_seconds",
            "Time spent in each pipeline stage.",
            ["stage"],
            buckets=_STAGE_BUCKETS,
            registry=r,
        )
        self.gateway_added = Histogram(
            "interlock_gateway_added_seconds",
            "Time the gateway added on top of the upstream: duration minus upstream "
            "and streaming time.",
            buckets=_ADDED_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "interlock_tokens",
            "Tokens by key, model group and type (input/output).",
            ["key", "model", "type"],
            registry=r,
        )
        self.cost = Counter(
            "interlock_cost_usd",
            "Cost in US dollars by key and model group.",
            ["key", "model"],
            registry=r,
        )
        self.unpriced = Counter(
            "interlock_unpriced_requests",
            "Requests with tokens whose deployment had no known price (their cost "
            "is missing from interlock_cost_usd), by key and model group.",
            ["key", "model"],
            registry=r,
        )
        self.cache_requests = Counter(
            "interlock_cache_requests",
            "Cache lookups by result (hit, miss, coalesced).",
            ["result"],
            registry=r,
        )
        self.limiter_rejections = Counter(
            "interlock_limiter_rejections",
            "Requests refused by a limit, by reason.",
            ["reason"],
            registry=r,
        )
        self.limits_degraded = Gauge(
            "interlock_limits_degraded",
            "1 while shared (Redis) rate limits are unavailable and per-instance limits apply.",
            multiprocess_mode="max",
            registry=r,
        )
        self.breaker_state = Gauge(
            "interlock_breaker_state",
            "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
            ["deployment"],
            multiprocess_mode="max",
            registry=r,
        )
        self.breaker_transitions = Counter(
            "interlock_breaker_transitions",
            "Circuit breaker state changes.",
            ["deployment", "from_state", "to_state"],
            registry=r,
        )
        self.retries = Counter(
            "interlock_retries", "Upstream attempts after the first.", ["model"], registry=r
        )
        self.failovers = Counter(
            "interlock_failovers",
            "Retries that moved to another deployment.",
            ["model"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "interlock_upstream_errors",
            "Upstream failures by deployment and kind.",
            ["deployment", "kind"],
            registry=r,
        )
        self.chaos_injections = Counter(
            "interlock_chaos_injections",
            "Faults injected on purpose by the chaos tool.",
            ["deployment", "fault"],
            registry=r,
        )
        self.infer_units = Counter(
            "interlock_infer_units",
            "Rows (first dimension) of tensor inference requests, by key and model.",
            ["key", "model"],
            registry=r,
        )
        self.infer_batch_size = Histogram(
            "interlock_infer_batch_size",
            "Rows per run of an in-process engine (dynamic batching merges requests).",
            ["deployment"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.registry_rollbacks = Counter(
            "interlock_registry_rollbacks",
            "Canary and version rollbacks, by model and trigger (manual, auto).",
            ["model", "trigger"],
            registry=r,
        )
        self.registry_reloads = Counter(
            "interlock_registry_reloads",
            "Times this gateway read the model registry again after a change.",
            registry=r,
        )
        self.web_searches = Counter(
            "interlock_web_searches",
            "Web searches the gateway ran for models that cannot search, by outcome "
            "(ok, empty, failed, cancelled).",
            ["model", "outcome"],
            registry=r,
        )
        self.web_search_duration = Histogram(
            "interlock_web_search_duration_seconds",
            "Time a web search the gateway ran took, its backends' retries included.",
            ["outcome"],
            registry=r,
        )
        self.guardrail_actions = Counter(
            "interlock_guardrail_actions",
            "Guardrail decisions by rule and action.",
            ["rule", "action"],
            registry=r,
        )
        # OpenTelemetry GenAI semantic conventions.
        self.genai_ttft = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time to generate the first token (gen_ai.server.time_to_first_token).",
            [*GENAI_LABELS, "deployment"],
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.genai_time_per_token = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Time between output chunks after the first (gen_ai.server.time_per_output_token).",
            [*GENAI_LABELS, "deployment"],
            buckets=_TOKEN_GAP_BUCKETS,
            registry=r,
        )
        self.genai_token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Tokens per request (gen_ai.client.token.usage).",
            [*GENAI_LABELS, "gen_ai_token_type"],
            buckets=_TOKEN_BUCKETS,
            registry=r,
        )
        self.genai_operation_duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "Upstream call duration per attempt (gen_ai.client.operation.duration).",
            [*GENAI_LABELS, "deployment", "error_type"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    # -- recording ---------------------------------------------------------
    # prometheus-client's ``labels()`` validates and locks on every call; the
    # label children are cached here instead (the label sets are bounded,
    # and the event loop is one thread).

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def record_request(self, record: RequestRecord, with_stages: bool) -> None:
        """Once per request. Stage histograms only for sampled requests."""
        model = record.model or ""
        status = str(record.status)
        self._child(self.requests, record.route, model, record.deployment or "", status).inc()
        self._child(self.request_duration, record.route, model, status).observe(record.duration_s)
        if record.cache is not None:
            self._child(self.cache_requests, record.cache).inc()
        if with_stages:
            for stage, seconds in record.stages.items():
                self._child(self.stage_duration, stage).observe(seconds)
        if record.deployment is None:
            return
        stages = record.stages
        added = record.duration_s - stages.get("upstream", 0.0) - stages.get("streaming", 0.0)
        self.gateway_added.observe(max(0.0, added))
        genai = (_operation(record.route), record.provider or "", model)
        if record.ttft_s is not None:
            self._child(self.genai_ttft, *genai, record.deployment).observe(record.ttft_s)
        key = record.key_name or ""
        for token_type, count in (("input", record.input_tokens), ("output", record.output_tokens)):
            if count is not None:
                self._child(self.tokens, key, model, token_type).inc(count)
                self._child(self.genai_token_usage, *genai, token_type).observe(count)
        if record.cost_usd:
            self._child(self.cost, key, model).inc(record.cost_usd)
        elif record.unpriced:
            self._child(self.unpriced, key, model).inc()
        if record.units:
            self._child(self.infer_units, key, model).inc(record.units)

    def token_gap(self, record: RequestRecord) -> Any:
        """The histogram child for one stream's chunk gaps (resolved once per stream)."""
        return self._child(
            self.genai_time_per_token,
            _operation(record.route),
            record.provider or "",
            record.model or "",
            record.deployment or "",
        )

    def observe_web_search(self, model: str, outcome: str, seconds: float) -> None:
        self.web_searches.labels(model, outcome).inc()
        self.web_search_duration.labels(outcome).observe(seconds)

    def observe_attempt(
        self, record: RequestRecord, deployment: str, seconds: float, error_kind: str | None
    ) -> None:
        self._child(
            self.genai_operation_duration,
            _operation(record.route),
            record.provider or "",
            record.model or "",
            deployment,
            error_kind or "",
        ).observe(seconds)
        if error_kind is not None:
            self._child(self.upstream_errors, deployment, error_kind).inc()

    @property
    def multiprocess(self) -> bool:
        """Values live in files every worker process shares (``render`` sums them)."""
        return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

    def before_render(self, hook: Callable[[], None]) -> None:
        """Call ``hook`` at each scrape, before the values are read."""
        self._before_render.append(hook)

    def families(self, metrics: Iterable[Any]) -> Iterator[Metric]:
        """The current values of some of this gateway's metrics (``self.requests``
        ...), summed over worker processes in multiprocess mode: what the
        console reads, without writing and parsing the whole scrape (about
        100 ms for a gateway with a few thousand series, against under 1 ms)."""
        if not self.multiprocess:
            for metric in metrics:
                yield from metric.collect()
            return
        # The worker files hold every metric: read them once, keep those asked for.
        names = {family.name for metric in metrics for family in metric.describe()}
        collector = MultiProcessCollector(None)  # type: ignore[no-untyped-call]
        for family in collector.collect():  # type: ignore[no-untyped-call]
            if family.name in names:
                yield family

    def render(self) -> bytes:
        for hook in self._before_render:
            hook()
        if self.multiprocess:
            aggregate = CollectorRegistry()
            MultiProcessCollector(aggregate)  # type: ignore[no-untyped-call]
            return generate_latest(aggregate)
        return generate_latest(self.registry)


def _operation(route: str) -> str:
    if route.endswith("/embeddings"):
        return "embeddings"
    return "infer" if route.endswith("/infer") else "chat"
