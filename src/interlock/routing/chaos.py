"""Chaos injection: faults on chosen deployments, on purpose, labelled.

``ChaosProvider`` wraps a deployment's adapter. While chaos is enabled and a
rule names the deployment, calls get added latency, errors, timeouts,
connection resets or mid-stream cuts, drawn from an injected RNG. Every
injected fault is a normal ``ProviderError`` (so breakers, retries and
metrics react exactly as to a real fault) with ``injected = True`` and a
message that says so; it is counted in ``interlock_chaos_injections_total``.
Rules change at run time through ``ChaosControl`` (``PUT /admin/chaos``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable

from interlock.config import ChaosConfig, ChaosRule
from interlock.errors import (
    ProviderError,
    UpstreamConnectionError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from interlock.providers.base import CallContext, JSONDict, Provider

__all__ = ["ChaosControl", "ChaosProvider"]

Sleep = Callable[[float], Awaitable[None]]


class ChaosControl:
    """The current chaos settings, shared by every ChaosProvider."""

    def __init__(self, config: ChaosConfig, on_inject: Callable[[str, str], None] | None = None):
        self.config = config
        self.on_inject = on_inject

    def rule_for(self, deployment: str) -> ChaosRule | None:
        if not self.config.enabled:
            return None
        return next((r for r in self.config.rules if r.deployment == deployment), None)

    def injected(self, deployment: str, fault: str) -> None:
        if self.on_inject is not None:
            self.on_inject(deployment, fault)


class ChaosProvider(Provider):
    def __init__(
        self,
        inner: Provider,
        control: ChaosControl,
        *,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ):
        self.inner = inner
        self.deployment_id = inner.deployment_id
        self.owned_by = inner.owned_by
        self.provider_name = inner.provider_name
        self.takes_custom_tools = inner.takes_custom_tools
        self.takes_context_management = inner.takes_context_management
        self.limits_parallel_calls = inner.limits_parallel_calls
        self.takes_anthropic_tools = inner.takes_anthropic_tools
        self.takes_web_search_options = inner.takes_web_search_options
        self.runs_hosted_web_search = inner.runs_hosted_web_search
        self.serves_completions = inner.serves_completions
        self._control = control
        self._rng = rng or random.Random()
        self._sleep = sleep

    async def start(self) -> None:
        await self.inner.start()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def chat(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        await self._before_call(ctx)
        return await self.inner.chat(body, ctx)

    async def embed(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        await self._before_call(ctx)
        return await self.inner.embed(body, ctx)

    async def infer(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        await self._before_call(ctx)
        return await self.inner.infer(body, ctx)

    async def moderate(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        await self._before_call(ctx)
        return await self.inner.moderate(body, ctx)

    async def model_metadata(self, ctx: CallContext) -> JSONDict:
        return await self.inner.model_metadata(ctx)

    async def model_ready(self, ctx: CallContext) -> bool:
        return await self.inner.model_ready(ctx)

    async def stream_chat(self, body: JSONDict, ctx: CallContext) -> AsyncIterator[bytes]:
        await self._before_call(ctx)
        rule = self._control.rule_for(self.deployment_id)
        cut = rule.cut_after_chunks if rule is not None else None
        sent = 0
        async for chunk in self.inner.stream_chat(body, ctx):
            if cut is not None and sent >= cut:
                raise self._fault("cut", UpstreamConnectionError, "mid-stream cut")
            yield chunk
            sent += 1

    async def _before_call(self, ctx: CallContext) -> None:
        rule = self._control.rule_for(self.deployment_id)
        if rule is None:
            return
        if rule.latency_ms:
            self._control.injected(self.deployment_id, "latency")
            ctx.injected.append(f"{self.deployment_id}:latency")
            await self._sleep(rule.latency_ms / 1000)
        draw = self._rng.random()
        if draw < rule.error_rate:
            self._control.injected(self.deployment_id, "error")
            raise UpstreamStatusError(
                rule.error_status, "chaos: injected upstream error", deployment=self.deployment_id
            ).mark_injected()
        draw -= rule.error_rate
        if draw < rule.timeout_rate:
            raise self._fault("timeout", UpstreamTimeout, "timeout")
        draw -= rule.timeout_rate
        if draw < rule.reset_rate:
            raise self._fault("reset", UpstreamConnectionError, "connection reset")

    def _fault(self, fault: str, kind: type[ProviderError], what: str) -> ProviderError:
        self._control.injected(self.deployment_id, fault)
        return kind(f"chaos: injected {what}", deployment=self.deployment_id).mark_injected()
