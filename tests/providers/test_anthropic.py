"""The Anthropic adapter against a fake Anthropic server speaking the real wire format."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from interlock.config import DeploymentConfig, Secret
from interlock.errors import (
    InvalidRequest,
    UnsupportedOperation,
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamStatusError,
)
from interlock.providers.anthropic import AnthropicProvider
from interlock.providers.base import CallContext
from tests.support.servers import FakeUpstream

CTX = CallContext(request_id="req_test", public_model="claude")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Connect = Callable[[Handler], Awaitable[AnthropicProvider]]


class Recorder:
    """What the fake Anthropic server received: bodies and headers, in order."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    def app(self, handler: Handler) -> web.Application:
        async def record(request: web.Request) -> web.StreamResponse:
            self.bodies.append(await request.json())
            self.headers.append({k.lower(): v for k, v in request.headers.items()})
            return await handler(request)

        app = web.Application()
        app.router.add_post("/v1/messages", record)
        return app


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def connect(
    fake_upstream: Callable[[web.Application], FakeUpstream], recorder: Recorder
) -> AsyncIterator[Connect]:
    providers: list[AnthropicProvider] = []

    async def start(handler: Handler) -> AnthropicProvider:
        upstream = fake_upstream(recorder.app(handler))
        provider = AnthropicProvider(
            DeploymentConfig(
                id="anthropic-1",
                provider="anthropic",
                model="claude-x",
                base_url=upstream.url,
                api_key=Secret("k"),
            )
        )
        await provider.start()
        providers.append(provider)
        return provider

    yield start
    for provider in providers:
        await provider.aclose()


# -- the fake server's answers -------------------------------------------------


def message(**overrides: Any) -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-x-20250101",
        "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 5},
        **overrides,
    }


def replies(payload: Any, status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(payload, status=status)

    return handler


def anthropic_error(kind: str, text: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": text}}


def sse(kind: str, data: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def text_stream(
    texts: list[str], stop_reason: str = "end_turn", output_tokens: int = 7
) -> list[bytes]:
    start = {
        "type": "message_start",
        "message": {
            **message(content=[], stop_reason=None),
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 3, "output_tokens": 1},
        },
    }
    events = [
        sse("message_start", start),
        sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        sse("ping", {"type": "ping"}),
    ]
    for text in texts:
        delta = {"type": "text_delta", "text": text}
        events.append(
            sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        )
    events += [
        sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        ),
        sse("message_stop", {"type": "message_stop"}),
    ]
    return events


def streams(events: list[bytes], reset: bool = False) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        if reset:
            assert request.transport is not None
            request.transport.close()
            return response
        await response.write_eof()
        return response

    return handler


def body(**overrides: Any) -> dict[str, Any]:
    return {"model": "claude", "messages": [{"role": "user", "content": "Hi"}], **overrides}


async def collect(provider: AnthropicProvider, request: dict[str, Any]) -> list[dict[str, Any]]:
    return [orjson.loads(chunk) async for chunk in provider.stream_chat(request, CTX)]


# -- request translation -----------------------------------------------------


async def test_chat_translates_the_request(connect: Connect, recorder: Recorder) -> None:
    provider = await connect(replies(message()))
    request = body(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Be kind."}]},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "Anyone?"}]},
            {"role": "assistant", "content": "Yes."},
        ],
        stop="END",
        temperature=0.5,
        top_p=0.9,
        user="u-1",
        stream_options={"include_usage": True},
    )
    await provider.chat(request, CTX)

    assert recorder.bodies == [
        {
            "model": "claude-x",
            "system": "Be brief.\n\nBe kind.",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Hi"},
                        {"type": "text", "text": "Anyone?"},
                    ],
                },
                {"role": "assistant", "content": "Yes."},
            ],
            "max_tokens": 4096,
            "stop_sequences": ["END"],
            "temperature": 0.5,
            "top_p": 0.9,
            "metadata": {"user_id": "u-1"},
        }
    ]
    headers = recorder.headers[0]
    assert headers["x-api-key"] == "k"
    assert headers["anthropic-version"] == "2023-06-01"
    assert headers["x-request-id"] == "req_test"
    assert "authorization" not in headers


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"max_tokens": 50}, 50),
        ({"max_completion_tokens": 60, "max_tokens": 50}, 60),
        ({}, 4096),
    ],
)
async def test_chat_sends_max_tokens(
    connect: Connect, recorder: Recorder, limits: dict[str, int], expected: int
) -> None:
    provider = await connect(replies(message()))
    await provider.chat(body(stop=["a", "b"], **limits), CTX)
    assert recorder.bodies[0]["max_tokens"] == expected
    assert recorder.bodies[0]["stop_sequences"] == ["a", "b"]
    assert "system" not in recorder.bodies[0]


@pytest.mark.parametrize(
    ("request_body", "param"),
    [
        (body(n=2), "n"),
        (body(seed=3), "seed"),
        (
            body(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "What is this?"},
                            {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}},
                        ],
                    }
                ]
            ),
            "messages[0].content[1].type",
        ),
        (
            body(messages=[{"role": "user", "content": [{"type": "file", "file": {}}]}]),
            "messages[0].content[0].file.file_data",
        ),
        (body(messages=[{"role": "tool", "content": "42"}]), "messages[0]"),
        (body(tools=[{"type": "web_search"}]), "tools[0].type"),
    ],
    ids=["n", "seed", "audio", "file", "tool-message-without-id", "non-function-tool"],
)
async def test_unsupported_inputs_are_refused_before_any_call(
    connect: Connect, recorder: Recorder, request_body: dict[str, Any], param: str
) -> None:
    provider = await connect(replies(message()))
    with pytest.raises(InvalidRequest) as chat_error:
        await provider.chat(request_body, CTX)
    with pytest.raises(InvalidRequest):
        await collect(provider, request_body)
    assert chat_error.value.param == param
    assert chat_error.value.status_code == 400
    assert recorder.bodies == []


async def test_embeddings_are_unsupported(connect: Connect) -> None:
    provider = await connect(replies(message()))
    with pytest.raises(UnsupportedOperation):
        await provider.embed({"model": "claude", "input": "x"}, CTX)


# -- non-streaming response --------------------------------------------------


async def test_chat_translates_the_response_and_usage(connect: Connect) -> None:
    usage = {
        "input_tokens": 12,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": None,
        "output_tokens": 5,
    }
    provider = await connect(replies(message(usage=usage)))
    completion = await provider.chat(body(), CTX)

    assert completion["id"] == "msg_01"
    assert completion["object"] == "chat.completion"
    assert isinstance(completion["created"], int)
    assert completion["model"] == "claude-x-20250101"
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert completion["usage"] == {
        "prompt_tokens": 112,
        "completion_tokens": 5,
        "total_tokens": 117,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 0},
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("pause_turn", "stop"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
    ],
)
async def test_chat_maps_stop_reasons(
    connect: Connect, stop_reason: str, finish_reason: str
) -> None:
    provider = await connect(replies(message(stop_reason=stop_reason)))
    completion = await provider.chat(body(), CTX)
    assert completion["choices"][0]["finish_reason"] == finish_reason


# -- streaming ---------------------------------------------------------------


async def test_stream_emits_openai_chunks(connect: Connect, recorder: Recorder) -> None:
    provider = await connect(streams(text_stream(["Hel", "lo"], stop_reason="max_tokens")))
    chunks = await collect(provider, body(stream=True))

    assert recorder.bodies[0]["stream"] is True
    assert [chunk["choices"][0]["delta"] for chunk in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hel"},
        {"content": "lo"},
        {},
    ]
    assert [chunk["choices"][0]["finish_reason"] for chunk in chunks] == [
        None,
        None,
        None,
        "length",
    ]
    for chunk in chunks:
        assert chunk["id"] == "msg_01"
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "claude-x-20250101"
        assert chunk["system_fingerprint"] is None
        assert chunk["choices"][0]["index"] == 0
        assert chunk["choices"][0]["logprobs"] is None
        assert "usage" not in chunk


async def test_stream_include_usage_ends_with_a_usage_chunk(connect: Connect) -> None:
    provider = await connect(streams(text_stream(["Hi"], output_tokens=9)))
    chunks = await collect(provider, body(stream=True, stream_options={"include_usage": True}))

    assert len(chunks) == 4
    assert all(chunk["usage"] is None for chunk in chunks[:-1])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 13,
        "completion_tokens": 9,
        "total_tokens": 22,
        "prompt_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
    }


@pytest.mark.parametrize(
    ("kind", "status"), [("overloaded_error", 503), ("rate_limit_error", 429), ("api_error", 502)]
)
async def test_stream_error_event_raises(connect: Connect, kind: str, status: int) -> None:
    events = [*text_stream(["partial"])[:4], sse("error", anthropic_error(kind, "Overloaded"))]
    provider = await connect(streams(events))
    received: list[bytes] = []
    with pytest.raises(UpstreamStatusError) as error:
        async for chunk in provider.stream_chat(body(stream=True), CTX):
            received.append(chunk)

    assert len(received) == 2  # the role chunk and "partial"
    assert error.value.status_code == status
    assert error.value.message == f"upstream reported an error mid-stream: {kind}: Overloaded"
    assert error.value.deployment == "anthropic-1"


async def test_stream_connection_reset_raises_connection_error(connect: Connect) -> None:
    provider = await connect(streams(text_stream(["partial"])[:4], reset=True))
    received: list[bytes] = []
    with pytest.raises(UpstreamConnectionError):
        async for chunk in provider.stream_chat(body(stream=True), CTX):
            received.append(chunk)
    assert len(received) == 2


async def test_stream_that_ends_without_message_stop_is_a_protocol_error(
    connect: Connect,
) -> None:
    provider = await connect(streams(text_stream(["partial"])[:-1]))
    with pytest.raises(UpstreamProtocolError, match="message_stop"):
        await collect(provider, body(stream=True))


@pytest.mark.parametrize(
    "events",
    [
        [b"event: message_start\ndata: not json\n\n"],
        [
            sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": "x"},
                },
            )
        ],
    ],
    ids=["not-json", "delta-before-start"],
)
async def test_stream_garbage_is_a_protocol_error(connect: Connect, events: list[bytes]) -> None:
    provider = await connect(streams(events))
    with pytest.raises(UpstreamProtocolError):
        await collect(provider, body(stream=True))


# -- upstream errors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("upstream_status", "kind", "status"),
    [
        (400, "invalid_request_error", 400),
        (429, "rate_limit_error", 429),
        (500, "api_error", 502),
        (529, "overloaded_error", 503),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
async def test_upstream_error_statuses(
    connect: Connect, upstream_status: int, kind: str, status: int, stream: bool
) -> None:
    provider = await connect(replies(anthropic_error(kind, f"said {kind}"), upstream_status))
    with pytest.raises(UpstreamStatusError) as error:
        if stream:
            await collect(provider, body(stream=True))
        else:
            await provider.chat(body(), CTX)

    assert error.value.upstream_status == upstream_status
    assert error.value.status_code == status
    assert error.value.message.endswith(f"said {kind}")


@pytest.mark.parametrize(
    "payload",
    [b"<html>oops</html>", b'{"choices": []}', b'{"id": "msg_01", "content": "text"}'],
    ids=["not-json", "openai-shape", "content-not-a-list"],
)
async def test_garbage_200_body_is_a_protocol_error(connect: Connect, payload: bytes) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=payload, content_type="application/json")

    provider = await connect(handler)
    with pytest.raises(UpstreamProtocolError):
        await provider.chat(body(), CTX)
