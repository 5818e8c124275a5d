"""The attempt stage: one call on one deployment the router picked.

An attempt is the adapter call plus everything that watches it: the unary
call's deadline, a client span for the trace, the deployment's health and
latency, the attempt metrics, and the tokens and cost of its answer. It
also fits a chat body to the upstream it goes to, for what only some
upstreams do themselves: Anthropic's context edits, custom tools and
``parallel_tool_calls: false`` (``_for_upstream``), so a request can fail
over between upstreams that do and upstreams that do not; and it refuses
Anthropic's server tools for any upstream but Anthropic's; a legacy
completion goes as one to upstreams that serve /v1/completions and as chat
to the rest. Streams
are watched chunk by chunk in ``watch.py``. The router decides which
deployment and how often; adapters only translate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from opentelemetry.trace import Span, SpanKind

from interlock.chat_markers import ANTHROPIC_TOOLS, DEFERRED_TOOLS, LEGACY_COMPLETION
from interlock.errors import InvalidRequest, ProviderError, UpstreamTimeout
from interlock.pipeline.call import ModelCall
from interlock.pipeline.context_edits import apply_context_edits
from interlock.pipeline.custom_tools import (
    CustomCallChunks,
    as_custom_calls,
    as_functions,
    uses_custom_tools,
)
from interlock.pipeline.deferred_tools import loaded_tools
from interlock.pipeline.price_book import PriceBook
from interlock.pipeline.pricing import Price, usage_cost
from interlock.pipeline.request import JSONDict, Operation
from interlock.pipeline.single_call import first_call_chunks, first_call_only
from interlock.pipeline.watch import StreamWatch, observe_stream
from interlock.providers.base import CallContext, Provider
from interlock.routing.router import Deployment, error_kind
from interlock.telemetry.hub import Telemetry

__all__ = ["Attempt", "Attempts", "anthropic_tools_refused", "native_completion_refused"]


class Attempts:
    """Makes attempts; one per deployment the router tries."""

    def __init__(self, telemetry: Telemetry, prices: PriceBook):
        self.telemetry = telemetry
        self.prices = prices

    async def unary(
        self, call: ModelCall, operation: Operation, body: JSONDict, deployment: Deployment
    ) -> JSONDict:
        """A chat completion or embeddings list from ``deployment``."""
        record = call.record
        provider = deployment.provider
        shape = _NOTHING
        if operation is Operation.CHAT:
            body, shape = _for_upstream(provider, body)
        attempt = Attempt(self, call, deployment)
        if operation is Operation.CHAT:
            adapter = provider.chat
        elif operation is Operation.EMBEDDINGS:
            adapter = provider.embed
        elif operation is Operation.MODERATIONS:
            adapter = provider.moderate
        else:
            adapter = provider.infer
        began = time.perf_counter()
        kind: str | None = None
        try:
            if provider.bounds_call_time:
                result = await adapter(body, attempt.context())
            else:
                async with asyncio.timeout(deployment.timeouts.total_s):
                    result = await adapter(body, attempt.context())
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
            attempt.ended(elapsed, kind)
        attempt.account(result.get("usage"))
        if shape.custom_tools:
            as_custom_calls(result, shape.custom_tools)
        return first_call_only(result) if shape.one_call else result

    def stream(
        self, call: ModelCall, body: JSONDict, pass_usage: bool, deployment: Deployment
    ) -> AsyncIterator[bytes]:
        """``deployment``'s chunks, watched (``watch.observe_stream``).
        ``pass_usage``: whether the usage-only chunk goes on to the reader."""
        record = call.record
        provider = deployment.provider
        body, shape = _for_upstream(provider, body)
        attempt = Attempt(self, call, deployment)
        watch = StreamWatch(
            record=record,
            deployment=deployment,
            client_wants_usage=pass_usage,
            on_end=attempt.ended,
            on_usage=attempt.account,
            token_gap=self.telemetry.metrics.token_gap(record),
        )
        chunks = provider.stream_chat(body, attempt.context())
        if shape.custom_tools:
            chunks = CustomCallChunks(shape.custom_tools).rewrite(chunks)
        if shape.one_call:
            chunks = first_call_chunks(chunks)
        return observe_stream(chunks, watch)

    def price(self, deployment_id: str) -> Price | None:
        return self.prices.get(deployment_id)


@dataclass(frozen=True, slots=True)
class _UpstreamShape:
    """What the answer needs for the client, where the upstream could not
    be asked for it: the custom tools whose calls come back as custom
    ones, and whether a turn keeps its first call alone."""

    custom_tools: frozenset[str] = frozenset()
    one_call: bool = False


def _for_upstream(provider: Provider, body: JSONDict) -> tuple[JSONDict, _UpstreamShape]:
    """A chat body as ``provider`` takes it: Anthropic's context edits applied,
    its deferred tools loaded as a tool search would have, custom tools as
    functions and ``parallel_tool_calls: false`` held by the gateway, where
    the upstream does none of it itself."""
    if body.get(ANTHROPIC_TOOLS) and not provider.takes_anthropic_tools:
        # Routing left such deployments out; this one was forced (a header).
        why = f"deployment `{provider.deployment_id}` is not one"
        raise anthropic_tools_refused(body[ANTHROPIC_TOOLS], why)
    completion = body.get(LEGACY_COMPLETION)
    if completion is not None and not provider.serves_completions:
        if completion.get("needs") is not None:  # routing left it out; it was forced
            raise native_completion_refused(
                completion["needs"], f"deployment `{provider.deployment_id}` is not one"
            )
        body = {k: v for k, v in body.items() if k != LEGACY_COMPLETION}  # asked through chat
    if body.get("context_management") is not None and not provider.takes_context_management:
        body = apply_context_edits(body)
    if body.get(DEFERRED_TOOLS) and not provider.takes_deferred_tools:
        body = loaded_tools(body)
    one_call = body.get("parallel_tool_calls") is False and not provider.limits_parallel_calls
    if one_call:
        body = {k: v for k, v in body.items() if k != "parallel_tool_calls"}
    custom_tools: frozenset[str] = frozenset()
    if not provider.takes_custom_tools and uses_custom_tools(body):
        body, custom_tools = as_functions(body)
    if not custom_tools and not one_call:
        return body, _NOTHING
    return body, _UpstreamShape(custom_tools, one_call)


_NOTHING = _UpstreamShape()


def anthropic_tools_refused(tools: Any, why: str) -> InvalidRequest:
    """Anthropic's server tools run at Anthropic; leaving one out would let the
    model answer a search it never made (ADR 0027). ``why``: why not here."""
    kinds = [t.get("type") for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []
    named = ", ".join(f"`{kind}`" for kind in kinds if isinstance(kind, str)) or "its own"
    return InvalidRequest(
        f"The tools {named} are Anthropic's own: only an Anthropic deployment runs them, "
        f"and {why}. Route the request to an Anthropic model, or leave the tools out.",
        param="tools",
        code="unsupported_tool",
    )


def native_completion_refused(param: str, why: str) -> InvalidRequest:
    """A legacy completion's ``param`` asks what only an upstream serving
    /v1/completions itself can do; a chat model would silently drop it."""
    return InvalidRequest(
        f"Unsupported parameter: '{param}' needs a deployment that serves /v1/completions "
        f"itself (an OpenAI-compatible server such as vLLM or Ollama, `completions: native`), "
        f"and {why}; the others answer completions through a chat model.",
        param=param,
        code="unsupported_parameter",
    )


class Attempt:
    """One attempt's span, health and metrics, from its start to its end."""

    __slots__ = ("_attempts", "_deployment", "_dialect_headers", "_record", "_span")

    def __init__(self, attempts: Attempts, call: ModelCall, deployment: Deployment):
        self._attempts = attempts
        self._record = call.record
        self._dialect_headers = call.options.dialect_headers
        self._deployment = deployment
        self._span = self._start_span()
        deployment.health.started()

    def context(self) -> CallContext:
        record = self._record
        tracing = self._attempts.telemetry.tracing
        span = self._span
        headers = tracing.inject(span) if span is not None and tracing is not None else {}
        return CallContext(
            record.request_id,
            record.model or "",
            headers,
            record.injected,
            record.dialect,
            self._dialect_headers,
        )

    def ended(self, elapsed: float, kind: str | None) -> None:
        """Once, however the attempt ended: ``kind`` is its error kind or None."""
        telemetry = self._attempts.telemetry
        deployment = self._deployment
        deployment.health.finished(elapsed, ok=kind is None or kind == "client_error")
        telemetry.metrics.observe_attempt(self._record, deployment.id, elapsed, kind)
        if self._span is not None and telemetry.tracing is not None:
            telemetry.tracing.end(self._span, kind)

    def account(self, usage: Any) -> None:
        """Tokens and cost of the answer, priced by the deployment that gave it."""
        if not isinstance(usage, dict):
            return
        record = self._record
        record.usage = usage
        record.input_tokens = int(usage.get("prompt_tokens") or 0)
        record.output_tokens = int(usage.get("completion_tokens") or 0)
        price = self._attempts.price(self._deployment.id)
        if price is not None:
            record.cost_usd = usage_cost(usage, price)
        else:  # unknown, not free: the ledger and the metrics say so
            record.cost_usd = None
            record.unpriced = bool(record.input_tokens or record.output_tokens)

    def _start_span(self) -> Span | None:
        record, deployment = self._record, self._deployment
        span = self._attempts.telemetry.child(record, f"upstream {deployment.id}", SpanKind.CLIENT)
        if span is not None:
            span.set_attribute("gen_ai.provider.name", deployment.provider.provider_name)
            span.set_attribute("gen_ai.request.model", record.model or "")
            span.set_attribute("interlock.deployment", deployment.id)
            span.set_attribute("interlock.attempt", record.attempts)
        return span
