"""The request pipeline: one path, clearly staged.

    edge (api/) -> admission -> validation -> [guardrails] -> [cache] -> router -> upstream

The HTTP edge has already read, size-checked and parsed the body and made a
``RequestRecord``. Each stage here is timed into that record. The router
decides where each attempt goes; this module supplies the attempt itself:
the adapter call with its timeout, trace span, health and metrics.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from opentelemetry.trace import Span, SpanKind

from interlock.admission.keys import KeyRing, Principal
from interlock.api.schemas import ChatCompletionRequest, EmbeddingRequest, validate_body
from interlock.cache import CacheRequest, ResponseCache
from interlock.config import PriceConfig
from interlock.errors import PermissionDenied, ProviderError, UpstreamTimeout
from interlock.failover import continue_on_failure
from interlock.guardrails_stage import Guard, GuardrailsStage
from interlock.providers.base import CallContext, JSONDict
from interlock.routing.base import RouteContext
from interlock.routing.router import Deployment, ModelGroup, Router, error_kind
from interlock.streams import StreamWatch, note_summary, observe_stream
from interlock.telemetry.hub import Telemetry
from interlock.telemetry.record import RequestRecord

__all__ = ["NO_HINTS", "Pipeline", "RouteHints", "StreamPlan"]

T = TypeVar("T")
StreamStart = tuple[bytes | None, AsyncIterator[bytes]]


@dataclass(frozen=True, slots=True)
class RouteHints:
    """Per-request routing inputs from headers."""

    pin: str | None = None  # x-interlock-pin: sticky routing key
    forced: str | None = None  # x-interlock-force-deployment (permission checked at the edge)
    principal: Principal | None = None  # for per-key model allow-lists
    # Request headers the cache reads (Cache-Control, x-interlock-cache-ttl).
    headers: Mapping[str, str] = field(default_factory=dict)


NO_HINTS = RouteHints()


@dataclass(slots=True)
class StreamPlan:
    """A validated, routed-to-a-group stream, not yet started."""

    heartbeat_after_s: float
    heartbeat_interval_s: float
    start: Callable[[], Awaitable[StreamStart]]
    # Set by ``start`` once the cache has given its verdict (or stayed out):
    # the response headers carry it, so the response must not start before.
    settled: asyncio.Event


class Pipeline:
    def __init__(
        self,
        keys: KeyRing,
        router: Router,
        telemetry: Telemetry,
        prices: Mapping[str, PriceConfig] | None = None,
        cache: ResponseCache | None = None,
        guardrails: GuardrailsStage | None = None,
    ):
        self.keys = keys
        self.router = router
        self.telemetry = telemetry
        self.cache = cache
        self.guardrails = guardrails
        self._prices = dict(prices or {})

    # -- stages ------------------------------------------------------------

    def authenticate(self, authorization: str | None, record: RequestRecord) -> Principal:
        began = time.perf_counter()
        principal = self.keys.authenticate(authorization)
        record.stages["admission"] = time.perf_counter() - began
        record.key_name = principal.name
        record.key_id = principal.key_id
        return principal

    def _group(self, model: str, record: RequestRecord, hints: RouteHints) -> ModelGroup:
        record.model = model
        group = self.router.group(model)
        if hints.principal is not None and not hints.principal.may_use(model):
            raise PermissionDenied(
                f"This key may not use the model `{model}`.", code="model_not_allowed"
            )
        return group

    @staticmethod
    def _route_context(body: JSONDict, record: RequestRecord, pin: str | None) -> RouteContext:
        user = body.get("user")
        caller = user if isinstance(user, str) and user else record.key_name or ""
        return RouteContext(caller=caller, pin=pin, now=time.time())

    # -- operations ----------------------------------------------------------

    async def chat(
        self, body: JSONDict, record: RequestRecord, hints: RouteHints = NO_HINTS
    ) -> JSONDict:
        with record.stage("validation"):
            request = validate_body(ChatCompletionRequest, body)
        group = self._group(request.model, record, hints)
        body, guard = self._guard(request.model, body, record, hints)

        async def attempt(deployment: Deployment) -> JSONDict:
            return await self._unary(record, deployment, deployment.provider.chat, body)

        async def call() -> JSONDict:
            return await self.router.run(
                group,
                record,
                self._route_context(body, record, hints.pin),
                attempt,
                forced=hints.forced,
            )

        cached = await self._cache_request(record, body, hints)
        if cached is None:
            result = await call()
        else:
            assert self.cache is not None
            result, record.cache = await self.cache.complete(cached, call)
            if record.cache != "miss":
                self._served_without_upstream(record, result.get("usage"))
        if self.guardrails is not None:
            self.guardrails.filter_completion(guard, result)
        choices = result.get("choices") or [{}]
        record.finish_reason = choices[0].get("finish_reason")
        record.response_model = result.get("model")
        return result

    def stream_chat(
        self, body: JSONDict, record: RequestRecord, hints: RouteHints = NO_HINTS
    ) -> StreamPlan:
        """Validate and find the model group now; errors raise before any byte."""
        with record.stage("validation"):
            request = validate_body(ChatCompletionRequest, body)
        group = self._group(request.model, record, hints)
        body, guard = self._guard(request.model, body, record, hints)
        record.stream = True
        wants_usage = bool(request.stream_options and request.stream_options.include_usage)
        # Whether the usage chunk is passed on: the client's wish, or the
        # cache's need to store the answer (it drops it again for the client).
        pass_usage = [wants_usage]
        # Always ask for usage, so every stream is accounted; the usage chunk
        # is dropped again for clients that did not ask for it.
        options = {**(body.get("stream_options") or {}), "include_usage": True}
        upstream_body = {**body, "stream_options": options}
        route = self._route_context(body, record, hints.pin)

        def attempt_with(request_body: JSONDict) -> Callable[[Deployment], Awaitable[StreamStart]]:
            async def attempt(deployment: Deployment) -> StreamStart:
                chunks = self._watched_stream(record, deployment, request_body, pass_usage[0])
                first = await anext(chunks, None)  # raises the attempt's failure, if any
                return first, chunks

            return attempt

        async def routed() -> StreamStart:
            first, chunks = await self.router.run(
                group, record, route, attempt_with(upstream_body), forced=hints.forced
            )
            if not group.settings.mid_stream_failover or hints.forced is not None:
                return first, chunks

            async def resume(continuation: JSONDict, exclude: frozenset[str]) -> StreamStart:
                return await self.router.run(
                    group, record, route, attempt_with(continuation), exclude=exclude
                )

            return None, continue_on_failure(first, chunks, upstream_body, record, resume)

        async def guarded() -> StreamStart:
            first, chunks = await routed()
            if self.guardrails is None or guard is None:
                return first, chunks
            rest = self.guardrails.filter_stream(guard, _prepend(first, chunks))
            return await anext(rest, None), rest

        settled = asyncio.Event()

        async def start() -> StreamStart:
            cached = await self._cache_request(record, body, hints)
            if cached is None:
                settled.set()
                return await guarded()
            assert self.cache is not None
            pass_usage[0] = True
            stream = await self.cache.stream(
                cached, guarded, on_usage=lambda usage: self._served_without_upstream(record, usage)
            )
            record.cache = stream.status
            if stream.status != "miss":
                record.attempts = 0  # served from the cache or a peer's stream
                stream.chunks = note_summary(stream.chunks, record)
            settled.set()
            return await stream.started()

        settings = group.settings
        return StreamPlan(settings.heartbeat_after_s, settings.heartbeat_interval_s, start, settled)

    async def embed(
        self, body: JSONDict, record: RequestRecord, hints: RouteHints = NO_HINTS
    ) -> JSONDict:
        with record.stage("validation"):
            request = validate_body(EmbeddingRequest, body)
        group = self._group(request.model, record, hints)
        body, _ = self._guard(request.model, body, record, hints)

        async def call(request_body: JSONDict) -> JSONDict:
            async def attempt(deployment: Deployment) -> JSONDict:
                return await self._unary(
                    record, deployment, deployment.provider.embed, request_body
                )

            return await self.router.run(
                group,
                record,
                self._route_context(body, record, hints.pin),
                attempt,
                forced=hints.forced,
            )

        cached = await self._cache_request(record, body, hints, embedding=True)
        if cached is None:
            result = await call(body)
        else:
            assert self.cache is not None
            result, record.cache = await self.cache.embed(cached, body, call)
        if request.encoding_format == "base64":
            for item in result.get("data", ()):
                item["embedding"] = _to_base64(item["embedding"])
        return result

    # -- guardrails ----------------------------------------------------------

    def _guard(
        self, model: str, body: JSONDict, record: RequestRecord, hints: RouteHints
    ) -> tuple[JSONDict, Guard | None]:
        if self.guardrails is None:
            return body, None
        principal = hints.principal
        key_override = principal.guardrails if principal is not None else None
        policy = self.guardrails.policy_for(model, key_override)
        if not policy.enabled:
            return body, None
        began = time.perf_counter()
        try:
            return self.guardrails.check(policy, body, record)
        finally:
            record.stages["guardrails"] = time.perf_counter() - began

    # -- the cache -----------------------------------------------------------

    async def _cache_request(
        self, record: RequestRecord, body: JSONDict, hints: RouteHints, *, embedding: bool = False
    ) -> CacheRequest | None:
        if self.cache is None or hints.forced is not None:
            return None  # a forced deployment is an incident repro: always upstream
        began = time.perf_counter()
        request = await self.cache.prepare(
            record.key_name or "", record.model or "", body, hints.headers, embedding=embedding
        )
        record.stages["cache"] = time.perf_counter() - began
        return request

    @staticmethod
    def _served_without_upstream(record: RequestRecord, usage: Any) -> None:
        """A hit or a coalesced follower: original token counts, no cost."""
        if isinstance(usage, Mapping):
            record.input_tokens = int(usage.get("prompt_tokens") or 0)
            record.output_tokens = int(usage.get("completion_tokens") or 0)
        record.cost_usd = 0.0

    # -- one attempt ---------------------------------------------------------

    async def _unary(
        self,
        record: RequestRecord,
        deployment: Deployment,
        call: Callable[[JSONDict, CallContext], Awaitable[JSONDict]],
        body: JSONDict,
    ) -> JSONDict:
        span = self._attempt_span(record, deployment)
        deployment.health.started()
        began = time.perf_counter()
        kind: str | None = None
        try:
            if deployment.provider.bounds_call_time:
                result = await call(body, self._context(record, span))
            else:
                async with asyncio.timeout(deployment.timeouts.total_s):
                    result = await call(body, self._context(record, span))
        except TimeoutError:
            kind = record.error_type = "timeout"
            raise UpstreamTimeout(
                f"upstream did not answer within {deployment.timeouts.total_s:g} s",
                deployment=deployment.id,
            ) from None
        except ProviderError as exc:
            kind = record.error_type = error_kind(exc)
            raise
        finally:
            elapsed = time.perf_counter() - began
            record.stages["upstream"] = record.stages.get("upstream", 0.0) + elapsed
            self._attempt_done(record, deployment, span, elapsed, kind)
        self._account(record, deployment, result.get("usage"))
        return result

    def _watched_stream(
        self, record: RequestRecord, deployment: Deployment, body: JSONDict, wants_usage: bool
    ) -> AsyncIterator[bytes]:
        span = self._attempt_span(record, deployment)
        deployment.health.started()

        def on_end(elapsed: float, kind: str | None) -> None:
            self._attempt_done(record, deployment, span, elapsed, kind)

        watch = StreamWatch(
            record=record,
            deployment=deployment,
            client_wants_usage=wants_usage,
            on_end=on_end,
            on_usage=lambda usage: self._account(record, deployment, usage),
            token_gap=self.telemetry.metrics.token_gap(record),
        )
        chunks = deployment.provider.stream_chat(body, self._context(record, span))
        return observe_stream(chunks, watch)

    def _attempt_span(self, record: RequestRecord, deployment: Deployment) -> Span | None:
        span = self.telemetry.child(record, f"upstream {deployment.id}", SpanKind.CLIENT)
        if span is not None:
            span.set_attribute("gen_ai.provider.name", deployment.provider.provider_name)
            span.set_attribute("gen_ai.request.model", record.model or "")
            span.set_attribute("interlock.deployment", deployment.id)
            span.set_attribute("interlock.attempt", record.attempts)
        return span

    def _context(self, record: RequestRecord, span: Span | None) -> CallContext:
        tracing = self.telemetry.tracing
        headers = tracing.inject(span) if span is not None and tracing is not None else {}
        return CallContext(record.request_id, record.model or "", headers, record.injected)

    def _attempt_done(
        self,
        record: RequestRecord,
        deployment: Deployment,
        span: Span | None,
        elapsed: float,
        kind: str | None,
    ) -> None:
        deployment.health.finished(elapsed, ok=kind is None or kind == "client_error")
        self.telemetry.metrics.observe_attempt(record, deployment.id, elapsed, kind)
        if span is not None and self.telemetry.tracing is not None:
            self.telemetry.tracing.end(span, kind)

    def _account(self, record: RequestRecord, deployment: Deployment, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        record.input_tokens = int(usage.get("prompt_tokens") or 0)
        record.output_tokens = int(usage.get("completion_tokens") or 0)
        price = self._prices.get(deployment.id)
        if price is not None:
            record.cost_usd = (
                record.input_tokens * price.input_per_million
                + record.output_tokens * price.output_per_million
            ) / 1_000_000


async def _prepend(first: bytes | None, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first is not None:
        yield first
    async for chunk in rest:
        yield chunk


def _to_base64(vector: Any) -> Any:
    """OpenAI's base64 embeddings: little-endian float32, base64-encoded."""
    if isinstance(vector, str):
        return vector
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")
