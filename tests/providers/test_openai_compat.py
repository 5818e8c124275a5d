"""The OpenAI-compatible adapter against a real fake upstream on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from typing import Any

import orjson
import pytest
from aiohttp import web

from interlock.config import DeploymentConfig, Secret, TimeoutConfig
from interlock.errors import (
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from interlock.providers.base import CallContext
from interlock.providers.openai_compat import OpenAICompatibleProvider
from tests.support.servers import FakeUpstream

CTX = CallContext(request_id="req_abc", public_model="public")
BODY = {"model": "public", "messages": [{"role": "user", "content": "hi"}], "x_extra": 1}
COMPLETION = {
    "id": "c",
    "object": "chat.completion",
    "created": 1,
    "model": "up",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "yo"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def chunk(text: str) -> bytes:
    return orjson.dumps(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "up",
            "choices": [{"index": 0, "delta": {"content": text}}],
        }
    )


class Upstream:
    """Scripted upstream: ``behaviour`` decides each response; requests are recorded."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, Mapping[str, str], Any]] = []
        self.behaviour: Callable[[web.Request], Any] = lambda r: web.json_response(COMPLETION)
        self.app = web.Application()
        self.app.router.add_post("/v1/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((request.path, request.headers.copy(), body))
        result = self.behaviour(request)
        if hasattr(result, "__await__"):
            result = await result
        assert isinstance(result, web.StreamResponse)
        return result


@pytest.fixture
def upstream(fake_upstream: Callable[[web.Application], FakeUpstream]) -> tuple[Upstream, str]:
    scripted = Upstream()
    return scripted, fake_upstream(scripted.app).url + "/v1"


@pytest.fixture
async def provider(upstream: tuple[Upstream, str]) -> AsyncIterator[OpenAICompatibleProvider]:
    deployment = DeploymentConfig(
        id="up-1",
        provider="openai",
        model="upstream-model",
        base_url=upstream[1],
        api_key=Secret("sk-upstream"),
        timeouts=TimeoutConfig(read_s=0.5, total_s=2),
    )
    adapter = OpenAICompatibleProvider(deployment)
    await adapter.start()
    yield adapter
    await adapter.aclose()


async def test_chat_swaps_model_and_sends_credentials(
    provider: OpenAICompatibleProvider, upstream: tuple[Upstream, str]
) -> None:
    result = await provider.chat(BODY, CTX)
    assert result["choices"][0]["message"]["content"] == "yo"
    path, headers, sent = upstream[0].requests[0]
    assert path == "/v1/chat/completions"
    assert sent["model"] == "upstream-model" and sent["x_extra"] == 1
    assert headers["Authorization"] == "Bearer sk-upstream"
    assert headers["x-request-id"] == "req_abc"


MARKED = {
    "model": "public",
    "thinking": {"type": "enabled", "budget_tokens": 2048},
    "reasoning_effort": "medium",
    "top_k": 5,
    "tools": [
        {"type": "function", "function": {"name": "f"}, "cache_control": {"type": "ephemeral"}}
    ],
    "messages": [
        {
            "role": "user",
            "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
        },
        {
            "role": "assistant",
            "content": "ok",
            "thinking_blocks": [{"type": "thinking", "thinking": "t", "signature": "s"}],
        },
        {"role": "user", "content": "again"},
    ],
}


async def test_what_the_anthropic_edge_adds_for_anthropic_is_not_sent_to_openai(
    provider: OpenAICompatibleProvider, upstream: tuple[Upstream, str]
) -> None:
    anthropic = CallContext(request_id="req_abc", public_model="public", dialect="anthropic")
    await provider.chat(MARKED, anthropic)
    sent = upstream[0].requests[0][2]
    assert "thinking" not in sent and sent["reasoning_effort"] == "medium"
    assert sent["top_k"] == 5  # the client's own wish: the upstream decides
    assert sent["tools"] == [{"type": "function", "function": {"name": "f"}}]
    assert sent["messages"][0]["content"] == [{"type": "text", "text": "hi"}]
    assert "thinking_blocks" not in sent["messages"][1]
    # A client speaking OpenAI's dialect gets its body forwarded as it sent it.
    await provider.chat(MARKED, CTX)
    assert upstream[0].requests[1][2] == {**MARKED, "model": "upstream-model"}


@pytest.mark.parametrize(
    ("marked", "unmarked"),
    [
        ({"tools": MARKED["tools"]}, {"tools": [{"type": "function", "function": {"name": "f"}}]}),
        (
            {"messages": MARKED["messages"][:1]},
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]},
        ),
        (
            {"messages": MARKED["messages"][1:2]},
            {"messages": [{"role": "assistant", "content": "ok"}]},
        ),
        (
            {"messages": [{"role": "user", "content": "hi", "cache_control": {"type": "x"}}]},
            {"messages": [{"role": "user", "content": "hi"}]},
        ),
    ],
    ids=["tool", "content part", "thinking blocks", "message"],
)
async def test_each_anthropic_marker_alone_is_taken_out(
    provider: OpenAICompatibleProvider,
    upstream: tuple[Upstream, str],
    marked: dict[str, Any],
    unmarked: dict[str, Any],
) -> None:
    anthropic = CallContext(request_id="req_abc", public_model="public", dialect="anthropic")
    body = {"model": "public", "messages": [{"role": "user", "content": "hi"}], **marked}
    await provider.chat(body, anthropic)
    sent = upstream[0].requests[0][2]
    assert sent == {**body, **unmarked, "model": "upstream-model"}


async def test_stream_forwards_chunks_until_done(
    provider: OpenAICompatibleProvider, upstream: tuple[Upstream, str]
) -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        # Split across writes and with a comment line, as real servers do.
        await response.write(b": keep-alive\n\ndata: " + chunk("a")[:10])
        await response.write(chunk("a")[10:] + b"\n\ndata: " + chunk("b") + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    upstream[0].behaviour = stream
    received = [c async for c in provider.stream_chat(BODY, CTX)]
    assert received == [chunk("a"), chunk("b")]
    assert upstream[0].requests[0][2]["stream"] is True


@pytest.mark.parametrize(
    ("status", "expected"), [(400, 400), (404, 404), (429, 429), (401, 502), (500, 502), (503, 503)]
)
async def test_error_statuses(
    provider: OpenAICompatibleProvider, upstream: tuple[Upstream, str], status: int, expected: int
) -> None:
    upstream[0].behaviour = lambda r: web.json_response(
        {"error": {"message": f"upstream says {status}"}}, status=status
    )
    with pytest.raises(UpstreamStatusError) as info:
        await provider.chat(BODY, CTX)
    assert info.value.status_code == expected
    assert info.value.message.endswith(f" ({status}): upstream says {status}")
    assert info.value.deployment == "up-1"
    with pytest.raises(UpstreamStatusError):
        [c async for c in provider.stream_chat(BODY, CTX)]


async def test_garbage_bodies_are_protocol_errors(
    provider: OpenAICompatibleProvider, upstream: tuple[Upstream, str]
) -> None:
    upstream[0].behaviour = lambda r: web.Response(body=b"<html>oops</html>")
    with pytest.raises(UpstreamProtocolError):
        await provider.chat(BODY, CTX)
    upstream[0].behaviour = lambda r: web.json_response({"unexpected": True})
    with pytest.raises(UpstreamProtocolError):
        await provider.chat(BODY, CTX)
    upstream[0].behaviour = lambda r: web.Response(
        body=b"data: not-json\n\n", content_type="text/event-stream"
    )
    with pytest.raises(UpstreamProtocolError):
        [c async for c in provider.stream_chat(BODY, CTX)]


async def test_error_event_mid_stream(
    provider: OpenAICompatibleProvider, upstream: tuple[Upstream, str]
) -> None:
    body = b"data: " + chunk("a") + b'\n\ndata: {"error": {"message": "engine died"}}\n\n'
    upstream[0].behaviour = lambda r: web.Response(body=body, content_type="text/event-stream")
    received = []
    with pytest.raises(UpstreamStatusError, match="engine died"):
        async for c in provider.stream_chat(BODY, CTX):
            received.append(c)
    assert received == [chunk("a")]


async def test_connection_reset_mid_stream(
    provider: OpenAICompatibleProvider, upstream: tuple[Upstream, str]
) -> None:
    async def reset(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: " + chunk("a") + b"\n\n")
        assert request.transport is not None
        request.transport.abort()
        return response

    upstream[0].behaviour = reset
    with pytest.raises(UpstreamConnectionError):
        [c async for c in provider.stream_chat(BODY, CTX)]


async def test_connection_refused() -> None:
    deployment = DeploymentConfig(
        id="dead", provider="openai", model="m", base_url="http://127.0.0.1:9/v1"
    )
    adapter = OpenAICompatibleProvider(deployment)
    await adapter.start()
    try:
        with pytest.raises(UpstreamConnectionError):
            await adapter.chat(BODY, CTX)
    finally:
        await adapter.aclose()


async def test_read_timeout(
    provider: OpenAICompatibleProvider, upstream: tuple[Upstream, str]
) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.json_response(COMPLETION)

    upstream[0].behaviour = hang
    with pytest.raises(UpstreamTimeout):
        await provider.chat(BODY, CTX)


async def test_embeddings_ask_for_floats(
    provider: OpenAICompatibleProvider, upstream: tuple[Upstream, str]
) -> None:
    upstream[0].behaviour = lambda r: web.json_response(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}],
            "model": "e",
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        }
    )
    result = await provider.embed(
        {"model": "public", "input": "x", "encoding_format": "base64"}, CTX
    )
    assert result["data"][0]["embedding"] == [0.5]
    assert upstream[0].requests[0][2]["encoding_format"] == "float"


async def test_streams_reuse_the_pooled_connection(
    provider: OpenAICompatibleProvider, upstream: tuple[Upstream, str]
) -> None:
    peers: list[asyncio.BaseTransport] = []

    async def stream(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.append(request.transport)  # held, so identity means the same connection
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: " + chunk("a") + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await asyncio.sleep(0.01)  # the body ends a moment after [DONE]
        return response

    upstream[0].behaviour = stream
    for _ in range(3):
        assert [c async for c in provider.stream_chat(BODY, CTX)] == [chunk("a")]
    assert len(peers) == 3 and all(p is peers[0] for p in peers)


def test_the_messages_edges_own_objects_do_not_reach_an_openai_upstream() -> None:
    from interlock.providers.anthropic_wire import chat_request
    from interlock.providers.openai_compat import without_edge_markers

    format_ = {"type": "json_schema", "schema": {"type": "object"}}
    body: dict[str, Any] = {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "output_config": {"effort": "high", "format": format_},
        "response_format": {"type": "json_schema", "json_schema": {"name": "output"}},
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "speed": "fast",
        "tools": [
            {
                "type": "function",
                "function": {"name": "f", "parameters": {"type": "object"}, "strict": True},
                "strict": True,
                "input_examples": [{}],
                "cache_control": {"type": "ephemeral"},
            }
        ],
    }
    plain = without_edge_markers(body)
    assert "output_config" not in plain and "thinking" not in plain and "speed" not in plain
    assert plain["tools"] == [{"type": "function", "function": body["tools"][0]["function"]}]
    assert plain["response_format"] == body["response_format"]  # what carries the format here
    # To an Anthropic upstream the same body goes natively: no forced JSON tool.
    wire = chat_request({k: v for k, v in body.items() if k != "thinking"}, "claude-x", ())
    assert wire.body["output_config"] == body["output_config"] and wire.json_tool is None
    assert wire.body["speed"] == "fast" and "tool_choice" not in wire.body
    [tool] = wire.body["tools"]  # the client's own, with its Anthropic fields; no forced tool
    assert (tool["name"], tool["strict"], tool["input_examples"]) == ("f", True, [{}])


def test_the_responses_edges_own_markers_do_not_reach_an_openai_upstream() -> None:
    from interlock.dialects.responses.request import chat_body
    from interlock.dialects.responses.schemas import ResponsesRequest

    request = ResponsesRequest.model_validate(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "Weather?"},
                {"type": "reasoning", "summary": [], "encrypted_content": "W10="},  # []: no blocks
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "rain"},
            ],
            "tools": [{"type": "web_search"}],  # may reach the web: a marker for Anthropic
            "reasoning": {"effort": "low", "summary": "auto"},
        }
    )
    body = chat_body(request)
    body["messages"][1]["thinking_blocks"] = [{"type": "reasoning", "encrypted_content": "x"}]
    assert "hosted_web_search" in body
    deployment = DeploymentConfig.model_validate(
        {"id": "d", "provider": "openai", "model": "x", "base_url": "http://127.0.0.1:1/v1"}
    )
    sent = OpenAICompatibleProvider(deployment)._upstream_body(
        body, replace(CTX, dialect="responses")
    )
    assert "hosted_web_search" not in sent and "reasoning_summary" not in sent
    assert sent["reasoning_effort"] == "low"
    assert all("thinking_blocks" not in message for message in sent["messages"])
    # A chat client's own body goes as it was sent.
    assert OpenAICompatibleProvider(deployment)._upstream_body(body, CTX)["hosted_web_search"] == {}


def test_openai_s_serving_hints_from_an_edge_reach_openai_s_api_alone() -> None:
    from interlock.dialects.responses.request import chat_body
    from interlock.dialects.responses.schemas import ResponsesRequest

    request = ResponsesRequest.model_validate(
        {
            "model": "m",
            "input": "hi",
            "prompt_cache_key": "conversation-1",  # what Codex sends with every turn
            "service_tier": "flex",
            "safety_identifier": "user-1",
        }
    )
    body = chat_body(request)
    hints = {
        "prompt_cache_key": "conversation-1",
        "service_tier": "flex",
        "safety_identifier": "user-1",
    }
    assert hints.items() <= body.items()
    responses = replace(CTX, dialect="responses")

    def sent(base_url: str, ctx: CallContext) -> dict[str, Any]:
        deployment = DeploymentConfig.model_validate(
            {"id": "d", "provider": "openai", "model": "x", "base_url": base_url}
        )
        return OpenAICompatibleProvider(deployment)._upstream_body(body, ctx)

    assert hints.items() <= sent("https://api.openai.com/v1", responses).items()
    assert hints.keys().isdisjoint(sent("http://127.0.0.1:1/v1", responses))  # may refuse them
    assert hints.items() <= sent("http://127.0.0.1:1/v1", CTX).items()  # a chat client's own


@pytest.mark.parametrize(
    ("deployment", "name"),
    [
        ({"base_url": "https://api.openai.com/v1"}, "max_completion_tokens"),
        ({"base_url": "http://127.0.0.1:1/v1"}, None),
        (
            {"base_url": "http://127.0.0.1:1/v1", "max_tokens_field": "max_completion_tokens"},
            "max_completion_tokens",
        ),
        ({"base_url": "https://api.openai.com/v1", "max_tokens_field": "max_tokens"}, "max_tokens"),
        ({"provider": "azure", "base_url": "https://r.openai.azure.com"}, None),
        ({"base_url": "https://api.deepseek.com"}, "max_tokens"),  # the only one it documents
    ],
)
def test_the_token_limit_goes_by_the_name_the_upstream_takes(
    deployment: dict[str, Any], name: str | None
) -> None:
    """OpenAI's reasoning models (gpt-5, o-series) refuse ``max_tokens``,
    which Claude Code and many chat clients send."""
    config = DeploymentConfig.model_validate(
        {"id": "d", "provider": "openai", "model": "gpt-5", **deployment}
    )
    assert config.token_limit_name == name
    adapter = OpenAICompatibleProvider(config)
    for given in ("max_tokens", "max_completion_tokens"):
        sent = adapter._upstream_body({"model": "m", "messages": [], given: 64}, CTX)
        limits = {k: v for k, v in sent.items() if k.startswith("max_")}
        assert limits == {(name or given): 64}
    both = {"model": "m", "messages": [], "max_tokens": 64, "max_completion_tokens": 32}
    if name is not None:  # the name asked for wins
        assert adapter._upstream_body(both, CTX)[name] == both[name]
        assert len([k for k in adapter._upstream_body(both, CTX) if k.startswith("max_")]) == 1


def test_only_openai_s_wire_names_the_token_limit() -> None:
    with pytest.raises(ValueError, match="for OpenAI's wire"):
        DeploymentConfig.model_validate(
            {"id": "d", "provider": "gemini", "model": "m", "max_tokens_field": "max_tokens"}
        )


CALLER = {"user", "metadata", "stream_options", "prompt_cache_key", "verbosity"}


@pytest.mark.parametrize(
    ("deployment", "unsent", "limit"),
    [
        ({"base_url": "https://api.mistral.ai/v1"}, CALLER, "max_tokens"),
        (
            {"base_url": "https://api.mistral.ai/v1", "drop_params": ["seed"]},
            {*CALLER, "seed"},
            "max_tokens",
        ),
        ({"base_url": "http://127.0.0.1:1/v1", "strict_fields": True}, CALLER, None),
        ({"base_url": "https://api.mistral.ai/v1", "strict_fields": False}, set(), "max_tokens"),
        ({"base_url": "http://127.0.0.1:1/v1", "drop_params": ["seed"]}, {"seed"}, None),
        ({"base_url": "http://127.0.0.1:1/v1"}, set(), None),
    ],
)
def test_what_a_strict_server_refuses_is_not_sent(
    deployment: dict[str, Any], unsent: set[str], limit: str | None
) -> None:
    """Mistral refuses fields it does not know: what only describes the
    caller is left out (the gateway's own ``stream_options`` among them:
    Mistral reports usage unasked); ``drop_params`` takes out any other."""
    config = DeploymentConfig.model_validate(
        {"id": "d", "provider": "openai", "model": "m", **deployment}
    )
    assert config.token_limit_name == limit
    body = {
        "model": "public",
        "messages": [{"role": "user", "content": "hi"}],
        "stream_options": {"include_usage": True},
        "seed": 7,
        "user": "u-1",
        "metadata": {"a": "b"},
        "prompt_cache_key": "k",
        "verbosity": "low",
        "temperature": 0.2,
    }
    sent = OpenAICompatibleProvider(config)._upstream_body(body, CTX)
    assert set(body) - set(sent) == unsent
    assert sent["temperature"] == 0.2 and sent["messages"] == body["messages"]
