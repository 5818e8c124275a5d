"""The Gemini adapter against a fake Gemini server speaking the real wire format."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from interlock.config import DeploymentConfig, Secret
from interlock.errors import (
    InvalidRequest,
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from interlock.providers.base import CallContext
from interlock.providers.gemini import GeminiProvider
from tests.support.servers import FakeUpstream

CTX = CallContext(request_id="req_test", public_model="gem")
USER = [{"role": "user", "content": "Hi"}]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Recorded:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGemini:
    """Records every request; answers with whatever ``handler`` says."""

    requests: list[Recorded] = field(default_factory=list)
    handler: Handler | None = None

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.requests.append(
                Recorded(
                    request.path,
                    dict(request.query),
                    {k.lower(): v for k, v in request.headers.items()},
                    orjson.loads(await request.read()),
                )
            )
            assert self.handler is not None, "test did not set a handler"
            return await self.handler(request)

        app = web.Application()
        app.router.add_post("/v1beta/models/{target}", handle)
        return app

    @property
    def last(self) -> Recorded:
        return self.requests[-1]


def reply(body: Any, status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        return web.Response(body=raw, status=status, content_type="application/json")

    return handler


def sse(*events: Any, cut: bool = False) -> Handler:
    """Gemini's ``alt=sse`` framing: ``data: {json}`` and CRLF CRLF; ``cut`` resets after."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            raw = event if isinstance(event, bytes) else orjson.dumps(event)
            await response.write(b"data: " + raw + b"\r\n\r\n")
        if cut:
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response

    return handler


@pytest.fixture
def fake(fake_upstream: Callable[[web.Application], FakeUpstream]) -> tuple[FakeGemini, str]:
    gemini = FakeGemini()
    return gemini, fake_upstream(gemini.app()).url


@pytest.fixture
async def provider(fake: tuple[FakeGemini, str]) -> AsyncIterator[GeminiProvider]:
    deployment = DeploymentConfig(
        id="gem-1", provider="gemini", model="gemini-x", base_url=fake[1], api_key=Secret("k")
    )
    gemini = GeminiProvider(deployment)
    await gemini.start()
    yield gemini
    await gemini.aclose()


@pytest.fixture
def upstream(fake: tuple[FakeGemini, str]) -> FakeGemini:
    return fake[0]


def candidate(text: str, finish: str | None = "STOP", index: int | None = None) -> Any:
    out: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": text}]}}
    if finish is not None:
        out["finishReason"] = finish
    if index is not None:
        out["index"] = index
    return out


async def collect(provider: GeminiProvider, body: dict[str, Any]) -> list[dict[str, Any]]:
    return [orjson.loads(chunk) async for chunk in provider.stream_chat(body, CTX)]


# -- non-streaming ----------------------------------------------------------------


async def test_chat_translates_request(provider: GeminiProvider, upstream: FakeGemini) -> None:
    upstream.handler = reply({"candidates": [candidate("ok")]})
    body = {
        "model": "gem",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
            {"role": "user", "content": [{"type": "text", "text": "there"}]},
            {"role": "developer", "content": [{"type": "text", "text": "No emoji."}]},
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": "Bye"},
        ],
        "max_completion_tokens": 50,
        "max_tokens": 10,
        "stop": "END",
        "temperature": 0.5,
        "top_p": 0.9,
        "n": 1,
        "seed": 7,
        "presence_penalty": 0.1,
        "frequency_penalty": 0.2,
        "response_format": {"type": "json_object"},
        "user": "u-1",
    }
    await provider.chat(body, CTX)
    sent = upstream.last
    assert sent.path == "/v1beta/models/gemini-x:generateContent"
    assert sent.query == {}
    assert sent.headers["x-goog-api-key"] == "k"
    assert sent.headers["x-request-id"] == "req_test"
    assert sent.body == {
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "No emoji."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Hello"}, {"text": "there"}]},
            {"role": "model", "parts": [{"text": "Hi!"}]},
            {"role": "user", "parts": [{"text": "Bye"}]},
        ],
        "generationConfig": {
            "maxOutputTokens": 50,
            "stopSequences": ["END"],
            "temperature": 0.5,
            "topP": 0.9,
            "candidateCount": 1,
            "seed": 7,
            "presencePenalty": 0.1,
            "frequencyPenalty": 0.2,
            "responseMimeType": "application/json",
        },
    }


async def test_chat_minimal_request(provider: GeminiProvider, upstream: FakeGemini) -> None:
    upstream.handler = reply({"candidates": [candidate("ok")]})
    await provider.chat(
        {"model": "gem", "messages": USER, "max_tokens": 5, "stop": ["a", "b"]}, CTX
    )
    assert upstream.last.body == {
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "generationConfig": {"maxOutputTokens": 5, "stopSequences": ["a", "b"]},
    }


async def test_chat_translates_response(provider: GeminiProvider, upstream: FakeGemini) -> None:
    upstream.handler = reply(
        {
            "candidates": [
                {
                    "content": {
                        "role": "model",
                        "parts": [
                            {"text": "thinking", "thought": True},
                            {"text": "fir"},
                            {"text": "st"},
                        ],
                    },
                    "finishReason": "STOP",
                },
                candidate("second", "MAX_TOKENS", index=1),
            ],
            "usageMetadata": {
                "promptTokenCount": 11,
                "candidatesTokenCount": 7,
                "thoughtsTokenCount": 3,
                "totalTokenCount": 21,
            },
            "modelVersion": "gemini-x-001",
            "responseId": "abc123",
        }
    )
    result = await provider.chat({"model": "gem", "messages": USER, "n": 2}, CTX)
    assert result["id"] == "chatcmpl-abc123"
    assert result["object"] == "chat.completion"
    assert isinstance(result["created"], int)
    assert result["model"] == "gemini-x-001"
    assert result["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "first",
                "refusal": None,
                "reasoning_content": "thinking",
            },
            "logprobs": None,
            "finish_reason": "stop",
        },
        {
            "index": 1,
            "message": {"role": "assistant", "content": "second", "refusal": None},
            "logprobs": None,
            "finish_reason": "length",
        },
    ]
    assert result["usage"] == {
        "prompt_tokens": 11,
        "completion_tokens": 10,
        "total_tokens": 21,
        "completion_tokens_details": {"reasoning_tokens": 3},
    }


async def test_chat_defaults_without_ids_or_usage(
    provider: GeminiProvider, upstream: FakeGemini
) -> None:
    upstream.handler = reply({"candidates": [candidate("ok", finish=None)]})
    result = await provider.chat({"model": "gem", "messages": USER}, CTX)
    assert result["id"].startswith("chatcmpl-") and len(result["id"]) > len("chatcmpl-")
    assert result["model"] == "gemini-x"
    assert result["choices"][0]["finish_reason"] == "stop"
    assert result["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


@pytest.mark.parametrize(
    ("gemini_reason", "openai_reason"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
    ],
)
async def test_chat_finish_reasons(
    provider: GeminiProvider, upstream: FakeGemini, gemini_reason: str, openai_reason: str
) -> None:
    upstream.handler = reply({"candidates": [candidate("x", gemini_reason)]})
    result = await provider.chat({"model": "gem", "messages": USER}, CTX)
    assert result["choices"][0]["finish_reason"] == openai_reason


async def test_chat_blocked_prompt_is_content_filter(
    provider: GeminiProvider, upstream: FakeGemini
) -> None:
    upstream.handler = reply(
        {
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4},
        }
    )
    result = await provider.chat({"model": "gem", "messages": USER, "n": 2}, CTX)
    assert [
        (c["index"], c["message"]["content"], c["finish_reason"]) for c in result["choices"]
    ] == [
        (0, "", "content_filter"),
        (1, "", "content_filter"),
    ]
    assert result["usage"]["prompt_tokens"] == 4


async def test_model_prefix_and_missing_key(fake: tuple[FakeGemini, str]) -> None:
    upstream, url = fake
    upstream.handler = reply({"candidates": [candidate("ok")]})
    deployment = DeploymentConfig(id="g", provider="gemini", model="models/gemini-y", base_url=url)
    provider = GeminiProvider(deployment)
    await provider.start()
    try:
        await provider.chat({"model": "gem", "messages": USER}, CTX)
    finally:
        await provider.aclose()
    assert upstream.last.path == "/v1beta/models/gemini-y:generateContent"
    assert "x-goog-api-key" not in upstream.last.headers


# -- streaming --------------------------------------------------------------------


STREAM = [
    {
        "candidates": [candidate("Hel", finish=None)],
        "modelVersion": "gemini-x-001",
        "responseId": "r1",
    },
    {
        "candidates": [candidate("lo", finish=None)],
        "modelVersion": "gemini-x-001",
        "responseId": "r1",
    },
    {
        "candidates": [candidate("!", "STOP")],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5},
        "modelVersion": "gemini-x-001",
        "responseId": "r1",
    },
]


def choice(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


async def test_stream_with_usage(provider: GeminiProvider, upstream: FakeGemini) -> None:
    upstream.handler = sse(*STREAM)
    body = {
        "model": "gem",
        "messages": USER,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = await collect(provider, body)
    sent = upstream.last
    assert sent.path == "/v1beta/models/gemini-x:streamGenerateContent"
    assert sent.query == {"alt": "sse"}
    assert sent.headers["x-goog-api-key"] == "k"
    assert sent.headers["x-request-id"] == "req_test"
    assert sent.body == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    for chunk in chunks:
        assert chunk["id"] == "chatcmpl-r1"
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "gemini-x-001"
        assert chunk["system_fingerprint"] is None
    assert len({c["created"] for c in chunks}) == 1
    assert [(c["choices"], c["usage"]) for c in chunks] == [
        ([choice({"role": "assistant", "content": ""})], None),
        ([choice({"content": "Hel"})], None),
        ([choice({"content": "lo"})], None),
        ([choice({"content": "!"})], None),
        ([choice({}, "stop")], None),
        ([], {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}),
    ]


async def test_stream_without_usage(provider: GeminiProvider, upstream: FakeGemini) -> None:
    upstream.handler = sse(*STREAM)
    chunks = await collect(provider, {"model": "gem", "messages": USER, "stream": True})
    assert all("usage" not in c for c in chunks)
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == ["", "Hel", "lo", "!", None]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_stream_several_candidates(provider: GeminiProvider, upstream: FakeGemini) -> None:
    upstream.handler = sse(
        {"candidates": [candidate("a", None), candidate("b", None, index=1)]},
        {"candidates": [candidate("", "STOP"), candidate("c", "MAX_TOKENS", index=1)]},
    )
    chunks = await collect(provider, {"model": "gem", "messages": USER, "n": 2})
    assert [c["choices"] for c in chunks] == [
        [choice({"role": "assistant", "content": ""})],
        [choice({"content": "a"})],
        [choice({"role": "assistant", "content": ""}, index=1)],
        [choice({"content": "b"}, index=1)],
        [choice({}, "stop")],
        [choice({"content": "c"}, index=1)],
        [choice({}, "length", index=1)],
    ]
    assert chunks[0]["model"] == "gemini-x"


async def test_stream_blocked_prompt(provider: GeminiProvider, upstream: FakeGemini) -> None:
    upstream.handler = sse({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}})
    chunks = await collect(provider, {"model": "gem", "messages": USER})
    assert [c["choices"] for c in chunks] == [
        [choice({"role": "assistant", "content": ""})],
        [choice({}, "content_filter")],
    ]


async def test_stream_error_event(provider: GeminiProvider, upstream: FakeGemini) -> None:
    upstream.handler = sse(
        STREAM[0], {"error": {"code": 500, "message": "model overloaded", "status": "INTERNAL"}}
    )
    received = []
    with pytest.raises(UpstreamStatusError) as caught:
        async for chunk in provider.stream_chat({"model": "gem", "messages": USER}, CTX):
            received.append(chunk)
    assert caught.value.status_code == 502
    assert caught.value.message == "upstream reported an error mid-stream: model overloaded"
    assert caught.value.deployment == "gem-1"
    assert len(received) == 2  # role and "Hel" went out before the error


async def test_stream_connection_reset(provider: GeminiProvider, upstream: FakeGemini) -> None:
    upstream.handler = sse(STREAM[0], cut=True)
    received = []
    with pytest.raises(UpstreamConnectionError):
        async for chunk in provider.stream_chat({"model": "gem", "messages": USER}, CTX):
            received.append(chunk)
    assert len(received) == 2


async def test_stream_ending_before_finish(provider: GeminiProvider, upstream: FakeGemini) -> None:
    upstream.handler = sse(STREAM[0])
    with pytest.raises(UpstreamProtocolError, match="before every candidate finished"):
        await collect(provider, {"model": "gem", "messages": USER})


@pytest.mark.parametrize("event", [b"not json", b"[1, 2]", b'{"candidates": {}}'])
async def test_stream_garbage_event(
    provider: GeminiProvider, upstream: FakeGemini, event: bytes
) -> None:
    upstream.handler = sse(event)
    with pytest.raises(UpstreamProtocolError):
        await collect(provider, {"model": "gem", "messages": USER})


async def test_stream_error_status(provider: GeminiProvider, upstream: FakeGemini) -> None:
    upstream.handler = reply({"error": {"code": 429, "message": "slow down"}}, status=429)
    with pytest.raises(UpstreamStatusError) as caught:
        await collect(provider, {"model": "gem", "messages": USER})
    assert (caught.value.status_code, caught.value.message) == (
        429,
        "upstream rate limit reached (429): slow down",
    )


# -- embeddings -------------------------------------------------------------------


async def test_embed(provider: GeminiProvider, upstream: FakeGemini) -> None:
    upstream.handler = reply({"embeddings": [{"values": [0.5, -1]}, {"values": [0, 0.25]}]})
    result = await provider.embed({"model": "gem", "input": ["a", "b"], "dimensions": 2}, CTX)
    sent = upstream.last
    assert sent.path == "/v1beta/models/gemini-x:batchEmbedContents"
    assert sent.headers["x-goog-api-key"] == "k"
    assert sent.body == {
        "requests": [
            {
                "model": "models/gemini-x",
                "content": {"parts": [{"text": "a"}]},
                "outputDimensionality": 2,
            },
            {
                "model": "models/gemini-x",
                "content": {"parts": [{"text": "b"}]},
                "outputDimensionality": 2,
            },
        ]
    }
    assert result == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.5, -1.0]},
            {"object": "embedding", "index": 1, "embedding": [0.0, 0.25]},
        ],
        "model": "gemini-x",
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
    assert all(isinstance(v, float) for item in result["data"] for v in item["embedding"])


async def test_embed_single_string(provider: GeminiProvider, upstream: FakeGemini) -> None:
    upstream.handler = reply({"embeddings": [{"values": [1.0]}]})
    result = await provider.embed({"model": "gem", "input": "hello"}, CTX)
    assert upstream.last.body == {
        "requests": [{"model": "models/gemini-x", "content": {"parts": [{"text": "hello"}]}}]
    }
    assert result["data"][0]["embedding"] == [1.0]


@pytest.mark.parametrize(
    "body",
    [{"embeddings": [{"values": [1.0]}]}, {"embeddings": [{"values": ["x"]}, {}]}, {"data": []}],
)
async def test_embed_garbage(provider: GeminiProvider, upstream: FakeGemini, body: Any) -> None:
    upstream.handler = reply(body)
    with pytest.raises(UpstreamProtocolError):
        await provider.embed({"model": "gem", "input": ["a", "b"]}, CTX)


# -- errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [(400, 400), (429, 429), (500, 502), (503, 503), (403, 502)],
)
async def test_error_statuses(
    provider: GeminiProvider, upstream: FakeGemini, status: int, expected: int
) -> None:
    # Gemini sometimes wraps its error object in a list.
    error = [{"error": {"code": status, "message": f"gemini says {status}", "status": "X"}}]
    upstream.handler = reply(error, status=status)
    with pytest.raises(UpstreamStatusError) as caught:
        await provider.chat({"model": "gem", "messages": USER}, CTX)
    assert caught.value.status_code == expected
    assert caught.value.upstream_status == status
    assert caught.value.message.endswith(f" ({status}): gemini says {status}")
    assert caught.value.deployment == "gem-1"


@pytest.mark.parametrize(
    "body",
    [
        b"<html>oops</html>",
        b"[]",
        b"{}",
        b'{"candidates": "nope"}',
        b'{"candidates": [{"content": {"parts": "nope"}}]}',
    ],
)
async def test_chat_garbage_body(
    provider: GeminiProvider, upstream: FakeGemini, body: bytes
) -> None:
    upstream.handler = reply(body)
    with pytest.raises(UpstreamProtocolError) as caught:
        await provider.chat({"model": "gem", "messages": USER}, CTX)
    assert caught.value.status_code == 502
    assert caught.value.deployment == "gem-1"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {"messages": [*USER, {"role": "tool", "content": "42", "tool_call_id": "t"}]},
            "messages[1].tool_call_id",
        ),
        ({"messages": [{"role": "function", "content": "42"}]}, "messages[0].name"),
        ({"messages": [{"role": "critic", "content": "42"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "t"}]}]},
            "messages[0].tool_calls[0]",
        ),
        ({"messages": [{"role": "user", "content": None}]}, "messages[0].content"),
        ({"messages": USER, "tools": [{"type": "function"}]}, "tools[0].function.name"),
        ({"messages": USER, "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"messages": USER, "logprobs": True}, "logprobs"),
        ({"messages": USER, "parallel_tool_calls": False}, "parallel_tool_calls"),
        (
            {"messages": USER, "response_format": {"type": "json_schema"}},
            "response_format.json_schema.schema",
        ),
        ({"messages": [{"role": "system", "content": "only me"}]}, "messages"),
    ],
)
async def test_unsupported_chat_inputs(
    provider: GeminiProvider, upstream: FakeGemini, body: dict[str, Any], param: str
) -> None:
    body = {"model": "gem", **body}
    with pytest.raises(InvalidRequest) as caught:
        await provider.chat(body, CTX)
    assert caught.value.param == param
    with pytest.raises(InvalidRequest):
        await collect(provider, body)
    assert upstream.requests == []


@pytest.mark.parametrize("raw", [[1, 2, 3], [[1, 2], [3]], [], ["ok", 3]])
async def test_unsupported_embedding_inputs(
    provider: GeminiProvider, upstream: FakeGemini, raw: Any
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        await provider.embed({"model": "gem", "input": raw}, CTX)
    assert caught.value.param == "input"
    assert upstream.requests == []


async def test_cached_content_tokens_are_reported_as_cached_prompt_tokens(
    provider: GeminiProvider, upstream: FakeGemini
) -> None:
    usage = {"promptTokenCount": 50, "cachedContentTokenCount": 20, "candidatesTokenCount": 5}
    upstream.handler = reply({"candidates": [candidate("ok")], "usageMetadata": usage})
    result = await provider.chat({"model": "gem", "messages": USER}, CTX)
    assert result["usage"] == {
        "prompt_tokens": 50,
        "completion_tokens": 5,
        "total_tokens": 55,
        "prompt_tokens_details": {"cached_tokens": 20},
    }
