"""What happened to one request, filled in by each stage as it runs.

The edge creates a ``RequestRecord`` per request and, when the response is
finished (for streams: after the last byte), hands it to the access log, the
metrics and the slow-request keeper. Stages write plain fields; nothing here
does I/O.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RequestRecord"]


@dataclass(slots=True)
class RequestRecord:
    request_id: str
    method: str
    route: str
    started: float = field(default_factory=time.perf_counter)
    status: int = 0
    key_name: str | None = None
    key_id: str | None = None  # durable keys only; config-file keys have none
    # OpenAI's x-ratelimit-* headers from admission, sent on every response.
    ratelimit_headers: dict[str, str] = field(default_factory=dict)
    # The admission limiter's token/concurrency reservation, settled at the end.
    reservation: Any = None
    model: str | None = None
    deployment: str | None = None
    provider: str | None = None
    attempts: int = 0
    route_reason: str | None = None
    failovers_mid_stream: int = 0
    route_labels: dict[str, str] = field(default_factory=dict)
    stream: bool = False
    # The API the client spoke (its edge translated the body): "openai",
    # "anthropic", "responses", "completions".
    dialect: str = "openai"
    # Seconds from the request's start to the first streamed chunk.
    ttft_s: float | None = None
    chunks: int = 0
    input_tokens: int | None = None
    output_tokens: int | None = None
    # The answer's usage object, as the upstream (or the cache, for a hit)
    # reported it: a dialect's edge translates it into its closing event.
    usage: dict[str, Any] | None = None
    units: int | None = None  # a tensor request's rows (/v1/infer)
    # None with tokens counted: the deployment's price is unknown (``unpriced``).
    cost_usd: float | None = None
    unpriced: bool = False
    finish_reason: str | None = None
    response_model: str | None = None
    cache: str | None = None
    guardrails: list[str] = field(default_factory=list)
    error_type: str | None = None
    # The error the client was answered with: its OpenAI ``code`` (or its
    # type where it has none), e.g. ``rate_limit_exceeded`` against
    # ``insufficient_quota`` for two 429s.
    error_code: str | None = None
    # Chaos faults injected into this request's attempts (labelled, never hidden).
    injected: list[str] = field(default_factory=list)
    trace_id: str | None = None
    stages: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a pipeline stage; repeated stages (retries) add up."""
        began = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - began

    def finish(self) -> None:
        self.duration_s = time.perf_counter() - self.started

    def log_fields(self, with_stages: bool) -> dict[str, Any]:
        """The access-log line: who, what, how it went. Never prompt text."""
        fields: dict[str, Any] = {
            "msg": "request",
            "request_id": self.request_id,
            "trace_id": self.trace_id,
            "method": self.method,
            "path": self.route,
            "status": self.status,
            "duration_ms": round(self.duration_s * 1000, 3),
            "key": self.key_name,
            "model": self.model,
            "deployment": self.deployment,
            "attempts": self.attempts,
        }
        if self.failovers_mid_stream:
            fields["mid_stream_failovers"] = self.failovers_mid_stream
        if self.route_reason is not None:
            fields["route"] = self.route_reason
            if self.route_labels:
                fields["route_labels"] = self.route_labels
        if self.dialect != "openai":
            fields["dialect"] = self.dialect
        if self.stream:
            fields["stream"] = True
            fields["ttft_ms"] = None if self.ttft_s is None else round(self.ttft_s * 1000, 3)
        if self.input_tokens is not None or self.output_tokens is not None:
            fields["input_tokens"] = self.input_tokens
            fields["output_tokens"] = self.output_tokens
            fields["cost_usd"] = self.cost_usd
        if self.cache is not None:
            fields["cache"] = self.cache
        if self.guardrails:
            fields["guardrails"] = self.guardrails
        if self.error_type is not None:
            fields["error_type"] = self.error_type
        if self.error_code is not None:
            fields["error_code"] = self.error_code
        if self.injected:
            fields["chaos_injected"] = self.injected
        if with_stages:
            fields["stages_ms"] = {k: round(v * 1000, 3) for k, v in self.stages.items()}
        return fields
