"""Stage-timing sampling, slow-request capture, health thresholds and tracing."""

from __future__ import annotations

from pydantic import Field

from interlock.config.base import _Strict

__all__ = ["TelemetryConfig", "TracingConfig"]


class TracingConfig(_Strict):
    # OpenTelemetry spans: one per request, per pipeline stage and per upstream
    # attempt; off, none are made.
    enabled: bool = False
    # The OTLP over HTTP (protobuf) traces endpoint spans are exported to.
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    # The service.name resource attribute of every span.
    service_name: str = "interlock"
    # Share (0-1) of new traces recorded; a request with a traceparent follows its
    # sampled flag.
    sample_rate: float = Field(default=1.0, ge=0, le=1)


class TelemetryConfig(_Strict):
    """Stage timings in the access log, slow and failed requests kept for
    inspection, when a deployment counts as unhealthy, and tracing."""

    # Share of requests whose stage timings go into the access log; errors
    # and slow requests are always kept.
    stage_sample_rate: float = Field(default=0.01, ge=0, le=1)
    # Milliseconds: a request at least this slow keeps its stage timings (access log,
    # stage histograms), as a failed one always does.
    slow_request_ms: float = Field(default=2000.0, ge=0)
    # Per process, the slowest and the latest failed requests of the last 10 minutes
    # kept for /admin/requests/slow and /admin/requests/failed (and the console).
    slow_requests_kept: int = Field(default=50, ge=1, le=10000)
    # A deployment with this many consecutive upstream failures is unhealthy.
    unhealthy_after_failures: int = Field(default=5, ge=1)
    # OpenTelemetry spans per request, stage and upstream attempt, sent over OTLP; off by default.
    tracing: TracingConfig = Field(default_factory=TracingConfig)
