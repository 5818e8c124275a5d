"""OpenTelemetry tracing: one server span per request, a child span per
pipeline stage and per upstream attempt, GenAI attributes.

Off by default, and then no span objects are made at all. When on, W3C
``traceparent`` from the client is honoured and the upstream attempt's
context is injected into the upstream request's headers.
"""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["Span", "SpanKind", "Tracing"]


class Tracing:
    """Owns a TracerProvider (never the global one)."""

    def __init__(
        self,
        service_name: str = "interlock",
        *,
        exporter: SpanExporter | None = None,
        otlp_endpoint: str | None = None,
        sample_rate: float = 1.0,
        batch: bool = True,
    ):
        self.provider = TracerProvider(
            resource=Resource.create({"service.name": service_name}),
            sampler=ParentBasedTraceIdRatio(sample_rate),
        )
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=otlp_endpoint, timeout=5)
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("interlock")
        self._propagator = TraceContextTextMapPropagator()

    def start_request_span(self, name: str, headers: Mapping[str, str]) -> Span:
        parent = self._propagator.extract(carrier=dict(headers))
        return self.tracer.start_span(name, context=parent, kind=SpanKind.SERVER)

    def start_child(self, parent: Span, name: str, kind: SpanKind = SpanKind.INTERNAL) -> Span:
        return self.tracer.start_span(name, context=trace.set_span_in_context(parent), kind=kind)

    def inject(self, span: Span) -> dict[str, str]:
        """``traceparent`` (and ``tracestate``) headers for an upstream call."""
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=trace.set_span_in_context(span))
        return carrier

    @staticmethod
    def trace_id(span: Span) -> str | None:
        context = span.get_span_context()
        return format(context.trace_id, "032x") if context.is_valid else None

    @staticmethod
    def end(span: Span, error: str | None = None) -> None:
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def shutdown(self) -> None:
        self.provider.shutdown()
