"""The request pipeline: one path, clearly staged.

    edge (api/) -> admission -> validation -> [guardrails] -> [cache] -> routing -> upstream

The HTTP edge has already read, size-checked and parsed the body and made a
``RequestRecord``. Each stage here is timed into that record; stages that
have not landed yet (guardrails, cache) slot in between validation and
routing without the edge or the adapters changing.
"""

from __future__ import annotations

import base64
import sys
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, TypeVar

import orjson
from opentelemetry.trace import Span, SpanKind

from interlock.admission.keys import KeyRing, Principal
from interlock.api.schemas import ChatCompletionRequest, EmbeddingRequest, validate_body
from interlock.config import PriceConfig
from interlock.errors import (
    ProviderError,
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from interlock.providers.base import CallContext, JSONDict, Provider
from interlock.routing.router import Router
from interlock.telemetry.hub import Telemetry
from interlock.telemetry.record import RequestRecord

__all__ = ["Pipeline", "error_kind"]

T = TypeVar("T")


class Pipeline:
    def __init__(
        self,
        keys: KeyRing,
        router: Router,
        telemetry: Telemetry,
        prices: Mapping[str, PriceConfig] | None = None,
    ):
        self.keys = keys
        self.router = router
        self.telemetry = telemetry
        self._prices = dict(prices or {})

    # -- stages ------------------------------------------------------------

    def authenticate(self, authorization: str | None, record: RequestRecord) -> Principal:
        with record.stage("admission"):
            principal = self.keys.authenticate(authorization)
        record.key_name = principal.name
        return principal

    def _route(self, model: str, record: RequestRecord) -> Provider:
        record.model = model
        with record.stage("routing"):
            provider = self.router.pick(model)
        record.deployment = provider.deployment_id
        record.provider = provider.provider_name
        record.attempts += 1
        return provider

    def _context(self, record: RequestRecord, span: Span | None) -> CallContext:
        tracing = self.telemetry.tracing
        headers = tracing.inject(span) if span is not None and tracing is not None else {}
        return CallContext(record.request_id, record.model or "", headers)

    # -- operations ----------------------------------------------------------

    async def chat(self, body: JSONDict, record: RequestRecord) -> JSONDict:
        with record.stage("validation"):
            request = validate_body(ChatCompletionRequest, body)
        provider = self._route(request.model, record)
        span = self._attempt_span(record, provider)
        result = await self._attempt(
            record, provider, span, provider.chat(body, self._context(record, span))
        )
        self._account(record, provider, result.get("usage"))
        choices = result.get("choices") or [{}]
        record.finish_reason = choices[0].get("finish_reason")
        record.response_model = result.get("model")
        return result

    def stream_chat(self, body: JSONDict, record: RequestRecord) -> AsyncIterator[bytes]:
        """Validate and route now (errors raise before any byte is sent)."""
        with record.stage("validation"):
            request = validate_body(ChatCompletionRequest, body)
        provider = self._route(request.model, record)
        record.stream = True
        client_wants_usage = bool(request.stream_options and request.stream_options.include_usage)
        # Always ask for usage, so every stream is accounted; the usage chunk
        # is dropped again for clients that did not ask for it.
        upstream_body = {
            **body,
            "stream_options": {**(body.get("stream_options") or {}), "include_usage": True},
        }
        span = self._attempt_span(record, provider)
        chunks = provider.stream_chat(upstream_body, self._context(record, span))
        return self._observe_stream(chunks, record, provider, span, client_wants_usage)

    async def embed(self, body: JSONDict, record: RequestRecord) -> JSONDict:
        with record.stage("validation"):
            request = validate_body(EmbeddingRequest, body)
        provider = self._route(request.model, record)
        span = self._attempt_span(record, provider)
        result = await self._attempt(
            record, provider, span, provider.embed(body, self._context(record, span))
        )
        self._account(record, provider, result.get("usage"))
        if request.encoding_format == "base64":
            for item in result.get("data", ()):
                item["embedding"] = _to_base64(item["embedding"])
        return result

    # -- attempts ------------------------------------------------------------

    def _attempt_span(self, record: RequestRecord, provider: Provider) -> Span | None:
        span = self.telemetry.child(record, f"upstream {provider.deployment_id}", SpanKind.CLIENT)
        if span is not None:
            span.set_attribute("gen_ai.provider.name", provider.provider_name)
            span.set_attribute("gen_ai.request.model", record.model or "")
            span.set_attribute("interlock.deployment", provider.deployment_id)
        return span

    async def _attempt(
        self, record: RequestRecord, provider: Provider, span: Span | None, call: Awaitable[T]
    ) -> T:
        health = self.telemetry.health.by_deployment[provider.deployment_id]
        health.started()
        began = time.perf_counter()
        kind: str | None = None
        try:
            return await call
        except ProviderError as exc:
            kind = error_kind(exc)
            record.error_type = kind
            raise
        finally:
            elapsed = time.perf_counter() - began
            record.stages["upstream"] = record.stages.get("upstream", 0.0) + elapsed
            self._attempt_done(record, provider, span, elapsed, kind)

    def _attempt_done(
        self,
        record: RequestRecord,
        provider: Provider,
        span: Span | None,
        elapsed: float,
        kind: str | None,
    ) -> None:
        health = self.telemetry.health.by_deployment[provider.deployment_id]
        health.finished(elapsed, ok=kind is None or kind == "client_error")
        self.telemetry.metrics.observe_attempt(record, provider.deployment_id, elapsed, kind)
        if span is not None and self.telemetry.tracing is not None:
            self.telemetry.tracing.end(span, kind)

    async def _observe_stream(
        self,
        chunks: AsyncIterator[bytes],
        record: RequestRecord,
        provider: Provider,
        span: Span | None,
        client_wants_usage: bool,
    ) -> AsyncIterator[bytes]:
        health = self.telemetry.health.by_deployment[provider.deployment_id]
        token_gap = self.telemetry.metrics.token_gap(record)
        health.started()
        began = last = time.perf_counter()
        kind: str | None = None
        try:
            async for chunk in chunks:
                now = time.perf_counter()
                if record.ttft_s is None:
                    record.ttft_s = now - record.started
                    record.stages["upstream"] = now - began
                else:
                    token_gap.observe(now - last)
                last = now
                record.chunks += 1
                if _may_carry_summary(chunk) and self._summarize(chunk, record, provider):
                    if not client_wants_usage:
                        continue
                yield chunk
        except ProviderError as exc:
            kind = record.error_type = error_kind(exc)
            raise
        finally:
            end = time.perf_counter()
            if record.ttft_s is None:
                record.stages["upstream"] = end - began
            else:
                record.stages["streaming"] = end - began - record.stages["upstream"]
            self._attempt_done(record, provider, span, end - began, kind)

    def _summarize(self, chunk: bytes, record: RequestRecord, provider: Provider) -> bool:
        """Read finish reason and usage; True for a usage-only chunk."""
        try:
            parsed = orjson.loads(chunk)
        except orjson.JSONDecodeError:
            return False
        choices = parsed.get("choices") or []
        for choice in choices:
            if choice.get("finish_reason"):
                record.finish_reason = choice["finish_reason"]
        record.response_model = parsed.get("model", record.response_model)
        usage = parsed.get("usage")
        if isinstance(usage, dict):
            self._account(record, provider, usage)
            return not choices
        return False

    def _account(self, record: RequestRecord, provider: Provider, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        record.input_tokens = int(usage.get("prompt_tokens") or 0)
        record.output_tokens = int(usage.get("completion_tokens") or 0)
        price = self._prices.get(provider.deployment_id)
        if price is not None:
            record.cost_usd = (
                record.input_tokens * price.input_per_million
                + record.output_tokens * price.output_per_million
            ) / 1_000_000


def error_kind(exc: ProviderError) -> str:
    """A small fixed vocabulary for metrics, logs and health."""
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamConnectionError):
        return "connection"
    if isinstance(exc, UpstreamProtocolError):
        return "protocol"
    if isinstance(exc, UpstreamStatusError):
        if exc.upstream_status == 429:
            return "rate_limited"
        if exc.upstream_status in (401, 403):
            return "upstream_auth"
        if exc.upstream_status < 500:
            return "client_error"
    return "server_error"


def _may_carry_summary(chunk: bytes) -> bool:
    """Cheap pre-check so only the last chunk or two are parsed."""
    return (
        b'"usage":{' in chunk
        or b'"usage": {' in chunk
        or b'"finish_reason":"' in chunk
        or b'"finish_reason": "' in chunk
    )


def _to_base64(vector: Any) -> Any:
    """OpenAI's base64 embeddings: little-endian float32, base64-encoded."""
    if isinstance(vector, str):
        return vector
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")
