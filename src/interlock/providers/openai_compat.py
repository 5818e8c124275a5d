"""Adapter for OpenAI-compatible upstreams: OpenAI, vLLM, Ollama, DeepSeek,
llama.cpp server, Together, LM Studio ...

The wire shape is already ours, so this adapter only swaps the model name,
adds credentials and forwards streamed chunks as the bytes it received. A
legacy completion goes to the upstream's own ``/completions`` where it
serves them (``openai_completions.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from interlock.chat_markers import (
    BODY_MARKERS,
    CONTENT_BLOCKS,
    IMAGE_TRANSFORMATIONS,
    LEGACY_COMPLETION,
    TOOL_HINTS,
    TOOL_REFERENCES,
)
from interlock.config import DeploymentConfig
from interlock.errors import UpstreamProtocolError
from interlock.providers.base import CallContext, JSONDict
from interlock.providers.http import HttpProvider
from interlock.providers.openai_completions import chat_chunk, chat_completion, completions_body
from interlock.providers.openai_messages import fitted_messages
from interlock.providers.openai_request import METADATA_PARAMS
from interlock.providers.prompt_cache import BREAKPOINT
from interlock.redaction import Redactor

__all__ = ["OpenAICompatibleProvider", "without_edge_markers"]

_DONE = b"[DONE]"
# OpenAI's own serving hints, which the Responses edge passes on from every
# request (Codex sends its conversation's prompt_cache_key with each): kept
# for OpenAI's API, left out of an edge's body for a compatible server,
# which may refuse what it does not know. A chat client's own are its to send.
_OPENAI_SERVING = frozenset(
    {
        "prompt_cache_key",
        "prompt_cache_retention",
        "prompt_cache_options",
        "service_tier",
        "safety_identifier",
    }
)


class OpenAICompatibleProvider(HttpProvider):
    provider_name = "openai"

    def __init__(self, deployment: DeploymentConfig, redactor: Redactor | None = None):
        assert deployment.base_url and deployment.model  # guaranteed by config validation
        super().__init__(deployment, self._auth_headers(deployment), redactor)
        self._model = deployment.model
        self.takes_custom_tools = deployment.native_custom_tools
        self.takes_web_search_options = deployment.native_web_search
        self.serves_completions = deployment.native_completions
        self._serving_hints = deployment.at_openai
        self._developer_as_system = deployment.developer_as_system
        self._reasoning = deployment.reasoning_policy
        self._reasoning_field = deployment.reasoning_field or "reasoning_content"
        self._limit_name = deployment.token_limit_name
        self._unsent = frozenset(deployment.drop_params)
        if deployment.refuses_unknown_fields:  # what describes the caller goes unsaid
            self._unsent |= CALLER_PARAMS
        self._chat_url = self._endpoint(deployment, "chat/completions")
        self._completions_url = self._endpoint(deployment, "completions")
        self._embeddings_url = self._endpoint(deployment, "embeddings")
        self._moderations_url = self._endpoint(deployment, "moderations")

    # Overridden by upstreams that speak this wire format at other URLs or
    # with other credentials (Azure OpenAI).

    @staticmethod
    def _auth_headers(deployment: DeploymentConfig) -> dict[str, str]:
        if deployment.api_key is None:
            return {}
        return {"authorization": f"Bearer {deployment.api_key.reveal()}"}

    @staticmethod
    def _endpoint(deployment: DeploymentConfig, operation: str) -> str:
        return f"{deployment.base_url}/{operation}"

    def _upstream_body(self, body: JSONDict, ctx: CallContext | None = None) -> JSONDict:
        from_edge = ctx is not None and ctx.dialect != "openai"
        if from_edge:  # an edge wrote the body
            body = without_edge_markers(body, keep_breakpoints=self._serving_hints)
            if not self._serving_hints and not _OPENAI_SERVING.isdisjoint(body):
                body = {k: v for k, v in body.items() if k not in _OPENAI_SERVING}
        out = {**body, "model": self._model}
        if self._limit_name is not None:
            _rename_limit(out, self._limit_name)
        for name in self._unsent:  # what this server refuses (drop_params, strict_fields)
            out.pop(name, None)
        messages = body.get("messages")
        if isinstance(messages, list):
            fitted = fitted_messages(
                messages,
                developer_as_system=self._developer_as_system,
                reasoning=self._reasoning,
                field=self._reasoning_field,
                from_edge=from_edge,
            )
            if fitted is not None:
                out["messages"] = fitted
        return out

    async def chat(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        # The marker reaches only an upstream that serves completions (the attempt stage).
        legacy = LEGACY_COMPLETION in body
        if legacy:
            url, upstream = self._completions_url, completions_body(body, self._model)
        else:
            url, upstream = self._chat_url, self._upstream_body(body, ctx)
        upstream.pop("stream", None)
        upstream.pop("stream_options", None)
        upstream = self._patched(upstream)
        result = self._expect_object(
            await self._client.request_json("POST", url, upstream, self._headers(ctx)), "choices"
        )
        return chat_completion(result) if legacy else result

    async def stream_chat(self, body: JSONDict, ctx: CallContext) -> AsyncIterator[bytes]:
        legacy = LEGACY_COMPLETION in body
        if legacy:
            url, upstream = self._completions_url, completions_body(body, self._model)
        else:
            url, upstream = self._chat_url, self._upstream_body(body, ctx)
        upstream = self._patched(upstream)
        upstream["stream"] = True
        events = self._client.stream_sse(url, upstream, self._headers(ctx))
        async with aclosing(events):  # closing at [DONE] keeps the connection pooled
            async for event in events:
                data = event.data
                if data == _DONE:
                    return
                if not data.startswith(b"{"):
                    raise UpstreamProtocolError(
                        "upstream sent a stream event that is not a JSON object",
                        deployment=self.deployment_id,
                    )
                if data.startswith(b'{"error"'):
                    raise self._upstream_error(502, data, mid_stream=True)
                yield chat_chunk(data) if legacy else data

    async def embed(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        # Always ask for floats: the HTTP edge applies the client's encoding.
        upstream = {**self._upstream_body(body), "encoding_format": "float"}
        result = await self._client.request_json(
            "POST", self._embeddings_url, upstream, self._headers(ctx)
        )
        return self._expect_object(result, "data")

    async def moderate(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        result = await self._client.request_json(
            "POST", self._moderations_url, self._upstream_body(body), self._headers(ctx)
        )
        return self._expect_object(result, "results")

    def _expect_object(self, result: Any, required: str) -> JSONDict:
        if not isinstance(result, dict) or required not in result:
            raise UpstreamProtocolError(
                f"upstream response has no `{required}`", deployment=self.deployment_id
            )
        return result


_LIMITS = ("max_tokens", "max_completion_tokens")
# What a server that refuses unknown fields is not sent: the parameters that
# only describe the caller or the call (``openai_request.METADATA_PARAMS``),
# which the translating adapters leave out for their upstreams too.
CALLER_PARAMS = METADATA_PARAMS - {"model", "messages", "stream"}


def _rename_limit(body: JSONDict, name: str) -> None:
    """The token limit under ``name``, whichever name it came by (the one
    asked for wins where both came)."""
    other = _LIMITS[0] if name == _LIMITS[1] else _LIMITS[1]
    if other in body:
        value = body.pop(other)
        body.setdefault(name, value)


# On a tool, or on a message part: what only Anthropic upstreams read.
_TOOL_MARKERS = frozenset({"cache_control", IMAGE_TRANSFORMATIONS, *TOOL_HINTS})
# On a message part, also OpenAI's explicit cache breakpoint, which the
# Responses edge carries: OpenAI's API reads it, a compatible server need not.
_PART_MARKERS = _TOOL_MARKERS | {BREAKPOINT}
# On a message: the same, and the turn's blocks as Anthropic wrote them.
_MESSAGE_MARKERS = frozenset({"thinking_blocks", "cache_control", CONTENT_BLOCKS, TOOL_REFERENCES})


def without_edge_markers(body: JSONDict, *, keep_breakpoints: bool = False) -> JSONDict:
    """``body`` without what the other dialects' edges add for upstreams of
    their own kind: the Messages edge's native ``thinking`` object
    (``reasoning_effort`` carries the same wish), ``output_config``
    (``response_format`` carries its format), signed ``thinking_blocks``,
    Anthropic's own ``content_blocks`` and ``cache_control`` markers; the
    Responses edge's hosted web search and reasoning carried between turns.
    OpenAI refuses fields it does not know, and these mean nothing to it;
    everything the client itself asked for (``top_k`` ...) is forwarded as
    ever, for the upstream to honour or refuse. ``keep_breakpoints``: the
    parts' ``prompt_cache_breakpoint`` stay (for OpenAI's own API)."""
    if not _marked(body):
        return body  # the usual request: nothing to take out, nothing copied
    out = {k: v for k, v in body.items() if k not in BODY_MARKERS}
    markers = _TOOL_MARKERS if keep_breakpoints else _PART_MARKERS
    if isinstance(body.get("messages"), list):
        out["messages"] = [_unmarked_message(m, markers) for m in body["messages"]]
    if isinstance(body.get("tools"), list):
        out["tools"] = [_unmarked(t) for t in body["tools"]]
    return out


def _marked(body: JSONDict) -> bool:
    """Whether ``body`` carries any of the markers, anywhere they may be."""
    if not BODY_MARKERS.isdisjoint(body):
        return True
    for message in body.get("messages") or ():
        if isinstance(message, dict):
            if not _MESSAGE_MARKERS.isdisjoint(message):
                return True
            content = message.get("content")
            if isinstance(content, list) and any(
                isinstance(part, dict) and not _PART_MARKERS.isdisjoint(part) for part in content
            ):
                return True
    tools = body.get("tools") or ()
    return any(isinstance(tool, dict) and not _TOOL_MARKERS.isdisjoint(tool) for tool in tools)


def _unmarked(item: Any, markers: frozenset[str] = _TOOL_MARKERS) -> Any:
    if isinstance(item, dict) and not markers.isdisjoint(item):
        return {k: v for k, v in item.items() if k not in markers}
    return item


def _unmarked_message(message: Any, markers: frozenset[str]) -> Any:
    if not isinstance(message, dict):
        return message
    out = {k: v for k, v in message.items() if k not in _MESSAGE_MARKERS}
    if isinstance(message.get("content"), list):
        out["content"] = [_unmarked(part, markers) for part in message["content"]]
    return out
