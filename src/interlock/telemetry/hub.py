"""Everything telemetry, built once and handed to the edge and the pipeline.

``finish`` is called once per request after its last byte: it writes the
access-log line, records the metrics, offers the record to the slow-request
and failed-request keepers and ends the trace span. ``find_request`` looks a
kept request up by its id in both.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Span, SpanKind

from interlock.config import TelemetryConfig
from interlock.telemetry.access_log import AccessLog
from interlock.telemetry.failures import RecentFailures
from interlock.telemetry.health import HealthBoard
from interlock.telemetry.metrics import Metrics
from interlock.telemetry.record import RequestRecord
from interlock.telemetry.slow import SlowRequests

if TYPE_CHECKING:  # the SDK is imported only when tracing is on
    from interlock.telemetry.tracing import Tracing

__all__ = ["Telemetry"]


_CONSOLE = "/console"


class Telemetry:
    def __init__(
        self,
        config: TelemetryConfig,
        metrics: Metrics,
        health: HealthBoard,
        *,
        access_log: AccessLog | None = None,
        tracing: Tracing | None = None,
        rng: random.Random | None = None,
    ):
        self.metrics = metrics
        self.health = health
        self.access_log = access_log
        self.tracing = tracing
        self.slow = SlowRequests(capacity=config.slow_requests_kept)
        self.failures = RecentFailures(capacity=config.slow_requests_kept)
        self._kept = config.slow_requests_kept
        self._sample_rate = config.stage_sample_rate
        self._slow_s = config.slow_request_ms / 1000
        self._rng = rng or random.Random()
        self._spans: dict[int, Span] = {}

    # -- spans (no-ops when tracing is off) ------------------------------

    def start(self, record: RequestRecord, headers: Mapping[str, str]) -> None:
        if self.tracing is None:
            return
        span = self.tracing.start_request_span(f"{record.method} {record.route}", headers)
        record.trace_id = self.tracing.trace_id(span)
        self._spans[id(record)] = span

    def span_of(self, record: RequestRecord) -> Span | None:
        return self._spans.get(id(record)) if self.tracing is not None else None

    def child(self, record: RequestRecord, name: str, kind: SpanKind) -> Span | None:
        parent = self.span_of(record)
        if parent is None or self.tracing is None:
            return None
        return self.tracing.start_child(parent, name, kind)

    def web_search(self, record: RequestRecord) -> Callable[[str], None]:
        """A web search the gateway runs for ``record``'s model starts (its
        span, a child of the request's); call what this returns with the
        search's outcome (ok, empty, failed, cancelled) as it ends."""
        span = self.child(record, "web_search", SpanKind.CLIENT)
        began = time.perf_counter()

        def ended(outcome: str) -> None:
            seconds = time.perf_counter() - began
            self.metrics.observe_web_search(record.model or "", outcome, seconds)
            if span is not None and self.tracing is not None:
                span.set_attribute("interlock.web_search.outcome", outcome)
                self.tracing.end(span, "web search failed" if outcome == "failed" else None)

        return ended

    # -- the end of a request --------------------------------------------

    def finish(self, record: RequestRecord) -> None:
        record.finish()
        slow = record.duration_s >= self._slow_s
        keep_stages = record.status >= 400 or slow or self._rng.random() < self._sample_rate
        self.metrics.record_request(record, keep_stages)
        if self.access_log is not None:
            self.access_log.write(record.log_fields(with_stages=keep_stages))
        # The console's own pages (a template compiled at first sight is
        # slow) would push out the requests an operator looks for there.
        if not record.route.startswith(_CONSOLE):
            self.slow.offer(record)
            if record.status >= 400:
                self.failures.offer(record)
        span = self._spans.pop(id(record), None)
        if span is not None and self.tracing is not None:
            _annotate(span, record)
            self.tracing.end(span, record.error_type if record.status >= 500 else None)

    def find_request(self, request_id: str) -> dict[str, Any] | None:
        """A kept failed or slow request's access-log fields (with stages), by id."""
        found = self.failures.find(request_id)
        if found is not None:
            return found
        # An admin's lookup, not the request path: at most ``_kept`` entries.
        slowest = self.slow.slowest(self._kept)
        return next((e for e in slowest if e["request_id"] == request_id), None)

    def shutdown(self) -> None:
        if self.access_log is not None:
            self.access_log.flush()
        if self.tracing is not None:
            self.tracing.shutdown()


def _annotate(span: Span, record: RequestRecord) -> None:
    if record.model is not None:
        operation = "embeddings" if record.route.endswith("/embeddings") else "chat"
        span.update_name(f"{operation} {record.model}")
        span.set_attribute("gen_ai.operation.name", operation)
        span.set_attribute("gen_ai.request.model", record.model)
    attributes: dict[str, str | int | None] = {
        "http.request.method": record.method,
        "http.route": record.route,
        "http.response.status_code": record.status,
        "interlock.request_id": record.request_id,
        "interlock.key": record.key_name,
        "interlock.deployment": record.deployment,
        "interlock.attempts": record.attempts,
        "gen_ai.provider.name": record.provider,
        "gen_ai.response.model": record.response_model,
        "gen_ai.usage.input_tokens": record.input_tokens,
        "gen_ai.usage.output_tokens": record.output_tokens,
        "error.type": record.error_type,
    }
    for name, value in attributes.items():
        if value is not None:
            span.set_attribute(name, value)
    if record.finish_reason is not None:
        span.set_attribute("gen_ai.response.finish_reasons", [record.finish_reason])
