"""The Bedrock adapter against a fake Bedrock runtime that checks SigV4
signatures and speaks the binary event stream (tests/support/fake_bedrock.py)."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web
from botocore.eventstream import EventStreamBuffer

from interlock.config import AwsConfig, ConfigError, DeploymentConfig, Secret
from interlock.errors import InvalidRequest, UpstreamProtocolError, UpstreamStatusError
from interlock.providers.base import CallContext
from interlock.providers.bedrock import BedrockProvider, SigV4Signer
from interlock.tokens import EstimatingCounter, TokenCounter
from tests.conftest import TEST_KEY
from tests.support.fake_bedrock import (
    REDACTED,
    SIGNATURE,
    TEST_ACCESS_KEY_ID,
    TEST_SECRET_ACCESS_KEY,
    bedrock_app,
    frame,
)
from tests.support.servers import FakeUpstream, GatewayProcess

CTX = CallContext(request_id="req_test", public_model="bedrock-claude")
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
KEYS: Any = {
    "region": "us-east-1",
    "access_key_id": Secret(TEST_ACCESS_KEY_ID),
    "secret_access_key": Secret(TEST_SECRET_ACCESS_KEY),
}
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
TIME: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"utc": {"type": "boolean"}}},
    },
}
Connect = Callable[..., Awaitable[BedrockProvider]]


@pytest.fixture
def requests() -> list[dict[str, Any]]:
    return []


@pytest.fixture
async def connect(
    fake_upstream: Callable[[web.Application], FakeUpstream], requests: list[dict[str, Any]]
) -> AsyncIterator[Connect]:
    """A started adapter for the fake (or for ``app``), estimating reasoning
    tokens with ``counter``; ``deployment`` fields override."""
    providers: list[BedrockProvider] = []

    async def start(
        app: web.Application | None = None,
        counter: TokenCounter | None = None,
        **deployment: Any,
    ) -> BedrockProvider:
        upstream = fake_upstream(app or bedrock_app(requests))
        fields = {"id": "bedrock-1", "provider": "bedrock", "model": MODEL, "aws": KEYS}
        provider = BedrockProvider(
            DeploymentConfig(**{**fields, **deployment}, base_url=upstream.url), None, counter
        )
        await provider.start()
        providers.append(provider)
        return provider

    yield start
    for provider in providers:
        await provider.aclose()


def chat(*messages: Any, **params: Any) -> dict[str, Any]:
    turns = [{"role": "user", "content": m} if isinstance(m, str) else m for m in messages]
    return {"model": "bedrock-claude", "messages": turns, **params}


async def collect(provider: BedrockProvider, body: dict[str, Any]) -> list[dict[str, Any]]:
    return [orjson.loads(chunk) async for chunk in provider.stream_chat(body, CTX)]


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


def finish(chunks: list[dict[str, Any]]) -> str | None:
    return next((c["choices"][0]["finish_reason"] for c in chunks[::-1] if c["choices"]), None)


def streamed_calls(chunks: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    """Tool calls rebuilt from the deltas, as an OpenAI client does."""
    calls: dict[int, dict[str, str]] = {}
    for delta in deltas(chunks):
        for piece in delta.get("tool_calls", []):
            call = calls.setdefault(piece["index"], {"arguments": ""})
            if "id" in piece:
                assert "id" not in call, "a tool call is opened once"
                call.update(id=piece["id"], name=piece["function"]["name"])
            call["arguments"] += piece["function"]["arguments"]
    return calls


# -- the fake's event-stream encoder -------------------------------------------


def test_botocore_decodes_the_fakes_frames_split_anywhere() -> None:
    frames = frame({":event-type": "messageStart", ":message-type": "event"}, b'{"role":"x"}')
    frames += frame({":exception-type": "throttlingException"}, b'{"message":"slow"}')
    for cut in range(1, len(frames)):
        buffer = EventStreamBuffer()
        buffer.add_data(frames[:cut])
        messages = list(buffer)
        buffer.add_data(frames[cut:])
        messages += list(buffer)
        assert [(m.headers, m.payload) for m in messages] == [
            ({":event-type": "messageStart", ":message-type": "event"}, b'{"role":"x"}'),
            ({":exception-type": "throttlingException"}, b'{"message":"slow"}'),
        ]


# -- requests and signing ---------------------------------------------------------


async def test_chat_translates_the_request(
    connect: Connect, requests: list[dict[str, Any]]
) -> None:
    provider = await connect()
    body = chat(
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Be kind."}]},
        "Hi",
        {"role": "user", "content": [{"type": "text", "text": "Anyone?"}]},
        {"role": "assistant", "content": "Yes."},
        "Tell me.",
        max_completion_tokens=100,
        temperature=0.5,
        top_p=0.9,
        stop="END",
        user="u-1",
        stream_options={"include_usage": True},
    )
    await provider.chat(body, CTX)
    [sent] = requests
    assert sent["path"] == "/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
    assert sent["body"] == {
        "messages": [
            {"role": "user", "content": [{"text": "Hi"}, {"text": "Anyone?"}]},
            {"role": "assistant", "content": [{"text": "Yes."}]},
            {"role": "user", "content": [{"text": "Tell me."}]},
        ],
        "system": [{"text": "Be brief."}, {"text": "Be kind."}],
        "inferenceConfig": {
            "maxTokens": 100,
            "temperature": 0.5,
            "topP": 0.9,
            "stopSequences": ["END"],
        },
    }


async def test_only_the_signature_and_our_headers_go_out(
    connect: Connect, requests: list[dict[str, Any]]
) -> None:
    provider = await connect()
    traced = CallContext(
        request_id="req_1", public_model="m", trace_headers={"traceparent": "00-ab-cd-01"}
    )
    await provider.chat(chat("Hi"), traced)
    [sent] = requests
    headers = sent["headers"]
    assert set(headers) == {
        "host",
        "content-type",
        "content-length",
        "x-amz-date",
        "authorization",
        "x-request-id",
        "traceparent",
    }
    assert headers["content-type"] == "application/json"
    assert headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={TEST_ACCESS_KEY_ID}/")
    assert (
        "/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date,"
        in (headers["authorization"])
    )
    assert headers["x-request-id"] == "req_1"


async def test_a_session_token_is_sent_and_signed(
    connect: Connect, requests: list[dict[str, Any]]
) -> None:
    provider = await connect(aws={**KEYS, "session_token": Secret("token-1")})
    completion = await provider.chat(chat("Hi"), CTX)
    assert completion["choices"][0]["message"]["content"] == "Hello from bedrock"
    headers = requests[0]["headers"]
    assert headers["x-amz-security-token"] == "token-1"
    assert (
        "SignedHeaders=content-type;host;x-amz-date;x-amz-security-token,"
        in (headers["authorization"])
    )


async def test_the_fake_refuses_a_signature_over_other_bytes(
    fake_upstream: Callable[[web.Application], FakeUpstream],
) -> None:
    upstream = fake_upstream(bedrock_app())
    url = f"{upstream.url}/model/m/converse"
    signer = SigV4Signer("b", AwsConfig(**KEYS))
    await signer.start()
    signed = orjson.dumps({"messages": [{"role": "user", "content": [{"text": "Hi"}]}]})
    headers = {**await signer.headers(url, signed), "content-type": "application/json"}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=signed, headers=headers) as ok:
            assert ok.status == 200
        async with session.post(url, data=signed + b" ", headers=headers) as tampered:
            assert tampered.status == 403
            assert tampered.headers["x-amzn-ErrorType"].startswith("InvalidSignatureException")


async def test_a_wrong_secret_key_is_refused_upstream_and_is_a_502(connect: Connect) -> None:
    provider = await connect(aws={**KEYS, "secret_access_key": Secret("not-the-secret")})
    with pytest.raises(UpstreamStatusError) as caught:
        await provider.chat(chat("Hi"), CTX)
    assert caught.value.status_code == 502
    assert caught.value.upstream_status == 403
    assert "signature we calculated does not match" in caught.value.message
    assert "not-the-secret" not in caught.value.message
    with pytest.raises(UpstreamStatusError) as streamed:
        await collect(provider, chat("Hi"))
    assert streamed.value.status_code == 502


async def test_credentials_come_from_botocores_chain_without_keys(
    connect: Connect, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _only_environment_credentials(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", TEST_ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", TEST_SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-token")
    provider = await connect(aws={"region": "us-east-1"})
    completion = await provider.chat(chat("Hi"), CTX)
    assert completion["choices"][0]["message"]["content"] == "Hello from bedrock"


async def test_role_credentials_are_refreshed_as_they_near_expiry(
    connect: Connect,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    requests: list[dict[str, Any]],
) -> None:
    """A ``credential_process`` profile: botocore's refreshable credentials,
    here within their refresh window, so each request refreshes them (in a
    thread) before signing."""
    _only_environment_credentials(monkeypatch, tmp_path)
    runs = tmp_path / "runs"
    script = tmp_path / "credentials.py"
    script.write_text(
        "import datetime, json, pathlib\n"
        f"pathlib.Path({str(runs)!r}).open('a').write('run\\n')\n"
        "expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=12)\n"
        "print(json.dumps({'Version': 1, 'AccessKeyId': 'AKIDTEST', 'SecretAccessKey': "
        "'test-secret', 'SessionToken': 'role-token', 'Expiration': expires.isoformat()}))\n"
    )
    config = tmp_path / "config"
    config.write_text(f"[profile bedrock]\ncredential_process = {sys.executable} {script}\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_PROFILE", "bedrock")
    provider = await connect(aws={"region": "us-east-1"})
    for _ in range(2):
        completion = await provider.chat(chat("Hi"), CTX)
        assert completion["choices"][0]["message"]["content"] == "Hello from bedrock"
    assert [r["headers"]["x-amz-security-token"] for r in requests] == ["role-token"] * 2
    assert len(runs.read_text().splitlines()) >= 3  # resolved at start, refreshed per request


async def test_a_missing_profile_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _only_environment_credentials(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_PROFILE", "nowhere")
    provider = BedrockProvider(
        DeploymentConfig(id="b", provider="bedrock", model=MODEL, aws=AwsConfig(region="us-east-1"))
    )
    with pytest.raises(ConfigError, match="nowhere"):
        await provider.start()
    await provider.aclose()


async def test_no_credentials_anywhere_stops_the_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _only_environment_credentials(monkeypatch, tmp_path)
    provider = BedrockProvider(
        DeploymentConfig(id="b", provider="bedrock", model=MODEL, aws=AwsConfig(region="us-east-1"))
    )
    with pytest.raises(ConfigError, match="no AWS credentials"):
        await provider.start()
    await provider.aclose()


def _only_environment_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """botocore's chain with no files, no instance metadata, no keys: only
    what a test puts in the environment."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_without_botocore_the_deployment_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "botocore" else real(name)
    )
    with pytest.raises(ConfigError, match=r"pip install 'interlock\[bedrock\]'"):
        BedrockProvider(DeploymentConfig(id="b", provider="bedrock", model=MODEL, aws=KEYS))


async def test_parameters_bedrock_cannot_honour_are_refused_or_dropped(connect: Connect) -> None:
    provider = await connect()
    with pytest.raises(InvalidRequest) as caught:
        await provider.chat(chat("Hi", seed=7), CTX)
    assert caught.value.param == "seed"
    dropping = await connect(drop_params=["seed", "logprobs"])
    completion = await dropping.chat(chat("Hi", seed=7, logprobs=True), CTX)
    assert completion["choices"][0]["message"]["content"] == "Hello from bedrock"


async def test_content_parts_bedrock_cannot_take_are_refused(connect: Connect) -> None:
    provider = await connect()
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with pytest.raises(InvalidRequest) as caught:
        await provider.chat(chat({"role": "user", "content": [audio]}), CTX)
    assert caught.value.param == "messages[0].content[0].type"


# -- text answers, streaming and usage ---------------------------------------------


async def test_chat_answers_text_with_usage(connect: Connect) -> None:
    provider = await connect()
    completion = await provider.chat(chat("Hi"), CTX)
    assert completion["object"] == "chat.completion"
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello from bedrock", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    usage = completion["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert "prompt_tokens_details" not in usage


async def test_stream_follows_openai_chunk_conventions(connect: Connect) -> None:
    provider = await connect()
    chunks = await collect(provider, chat("Hi", stream_options={"include_usage": True}))
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    pieces = deltas(chunks)
    assert pieces[0] == {"role": "assistant", "content": ""}
    texts = [d["content"] for d in pieces[1:] if d.get("content")]
    assert len(texts) >= 3 and "".join(texts) == "Hello from bedrock"
    assert finish(chunks) == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])


async def test_stream_without_include_usage_has_no_usage(connect: Connect) -> None:
    provider = await connect()
    chunks = await collect(provider, chat("Hi"))
    assert all(c["choices"] for c in chunks)
    assert all("usage" not in c for c in chunks)


# -- tools ---------------------------------------------------------------------------


async def test_tools_and_a_tool_call(connect: Connect, requests: list[dict[str, Any]]) -> None:
    provider = await connect()
    completion = await provider.chat(chat("Weather in Paris?", tools=[WEATHER, TIME]), CTX)
    assert requests[0]["body"]["toolConfig"] == {
        "tools": [
            {
                "toolSpec": {
                    "name": "get_weather",
                    "inputSchema": {"json": WEATHER["function"]["parameters"]},
                    "description": "The weather in a city.",
                }
            },
            {
                "toolSpec": {
                    "name": "get_time",
                    "inputSchema": {"json": TIME["function"]["parameters"]},
                }
            },
        ],
        "toolChoice": {"auto": {}},
    }
    [choice] = completion["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    [call] = choice["message"]["tool_calls"]
    assert call == {
        "id": "tooluse_get_weather_0",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris","days":3}'},
    }


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "get_time"}}, {"tool": {"name": "get_time"}}),
    ],
)
async def test_tool_choice(
    connect: Connect, requests: list[dict[str, Any]], choice: Any, wire: dict[str, Any]
) -> None:
    provider = await connect()
    completion = await provider.chat(chat("Go", tools=[WEATHER, TIME], tool_choice=choice), CTX)
    assert requests[0]["body"]["toolConfig"]["toolChoice"] == wire
    expected = "get_time" if wire.get("tool") else "get_weather"
    assert completion["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == expected


async def test_tool_choice_none_sends_no_tools_or_is_refused_after_tool_use(
    connect: Connect, requests: list[dict[str, Any]]
) -> None:
    provider = await connect()
    completion = await provider.chat(chat("Hi", tools=[WEATHER], tool_choice="none"), CTX)
    assert "toolConfig" not in requests[0]["body"]
    assert completion["choices"][0]["message"]["content"] == "Hello from bedrock"
    history = [*_first_turn(), _result("call_1", "sunny")]
    with pytest.raises(InvalidRequest) as caught:
        await provider.chat(chat(*history, tools=[WEATHER], tool_choice="none"), CTX)
    assert caught.value.param == "tool_choice"
    with pytest.raises(InvalidRequest) as undeclared:
        await provider.chat(chat(*history), CTX)
    assert undeclared.value.param == "tools"


def _first_turn(*call_ids: str) -> list[dict[str, Any]]:
    calls = [
        {
            "id": call_id,
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
        for call_id in call_ids or ("call_1",)
    ]
    return [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
    ]


def _result(call_id: str, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


async def test_legacy_functions_and_function_messages(
    connect: Connect, requests: list[dict[str, Any]]
) -> None:
    provider = await connect()
    function = WEATHER["function"]
    first = await provider.chat(
        chat("Weather?", functions=[function], function_call={"name": "get_weather"}), CTX
    )
    assert requests[0]["body"]["toolConfig"]["toolChoice"] == {"tool": {"name": "get_weather"}}
    assert first["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    history = [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "function_call": {"name": "get_weather", "arguments": "{}"}},
        {"role": "function", "name": "get_weather", "content": "rainy"},
    ]
    second = await provider.chat(chat(*history, functions=[function]), CTX)
    assert second["choices"][0]["message"]["content"] == "Tool said: rainy"


async def test_tool_loop_sends_calls_and_results_back(
    connect: Connect, requests: list[dict[str, Any]]
) -> None:
    provider = await connect()
    history = [
        *_first_turn("call_1", "call_2"),
        _result("call_1", "sunny"),
        _result("call_2", '{"celsius": 21}'),
        {"role": "user", "content": "And so?"},
    ]
    completion = await provider.chat(chat(*history, tools=[WEATHER]), CTX)
    assert requests[0]["body"]["messages"] == [
        {"role": "user", "content": [{"text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "toolUse": {
                        "toolUseId": "call_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                },
                {
                    "toolUse": {
                        "toolUseId": "call_2",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": "call_1",
                        "content": [{"text": "sunny"}],
                        "status": "success",
                    }
                },
                {
                    "toolResult": {
                        "toolUseId": "call_2",
                        "content": [{"json": {"celsius": 21}}],
                        "status": "success",
                    }
                },
                {"text": "And so?"},
            ],
        },
    ]
    message = completion["choices"][0]["message"]
    assert message["content"] == 'Tool said: sunny; {"celsius":21}'
    assert completion["choices"][0]["finish_reason"] == "stop"


async def test_parallel_tool_calls(connect: Connect) -> None:
    provider = await connect()
    body = chat("Both in parallel please", tools=[WEATHER, TIME])
    completion = await provider.chat(body, CTX)
    calls = completion["choices"][0]["message"]["tool_calls"]
    assert [(c["id"], c["function"]["name"]) for c in calls] == [
        ("tooluse_get_weather_0", "get_weather"),
        ("tooluse_get_time_1", "get_time"),
    ]
    chunks = await collect(provider, body)
    # The fake interleaves the two calls' fragments; each keeps its own index.
    indexes = [p["index"] for d in deltas(chunks) for p in d.get("tool_calls", [])]
    assert indexes[:2] == [0, 1] and indexes[2:4] == [0, 1]
    assert streamed_calls(chunks) == {
        0: {
            "id": "tooluse_get_weather_0",
            "name": "get_weather",
            "arguments": calls[0]["function"]["arguments"],
        },
        1: {"id": "tooluse_get_time_1", "name": "get_time", "arguments": '{"utc":true}'},
    }
    assert finish(chunks) == "tool_calls"


async def test_streamed_tool_arguments_come_in_pieces(connect: Connect) -> None:
    provider = await connect()
    chunks = await collect(provider, chat("Weather?", tools=[WEATHER]))
    pieces = [p["function"]["arguments"] for d in deltas(chunks) for p in d.get("tool_calls", [])]
    assert pieces[0] == "" and len(pieces) >= 4
    assert json.loads("".join(pieces)) == {"city": "Paris", "days": 3}


# -- images --------------------------------------------------------------------------


def _image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


async def test_data_url_images_go_inline(connect: Connect, requests: list[dict[str, Any]]) -> None:
    provider = await connect()
    data = base64.b64encode(PNG).decode()
    content = [
        {"type": "text", "text": "What is this?"},
        _image_part(f"data:image/png;base64,{data}"),
    ]
    completion = await provider.chat(chat({"role": "user", "content": content}), CTX)
    assert requests[0]["body"]["messages"][0]["content"][1] == {
        "image": {"format": "png", "source": {"bytes": data}}
    }
    assert completion["choices"][0]["message"]["content"] == (
        f"I see a image/png image of {len(PNG)} bytes"
    )


async def test_image_urls_are_fetched_only_from_allowed_hosts(
    connect: Connect,
    fake_upstream: Callable[[web.Application], FakeUpstream],
    requests: list[dict[str, Any]],
) -> None:
    async def png(request: web.Request) -> web.Response:
        return web.Response(body=PNG, content_type="image/png")

    images = web.Application()
    images.router.add_get("/cat.png", png)
    host = fake_upstream(images)
    content = [_image_part(f"{host.url}/cat.png")]
    refusing = await connect()
    with pytest.raises(InvalidRequest) as caught:
        await refusing.chat(chat({"role": "user", "content": content}), CTX)
    assert caught.value.code == "image_url_not_allowed"
    assert requests == []
    fetching = await connect(fetch_images_from=[f"127.0.0.1:{host.port}"])
    completion = await fetching.chat(chat({"role": "user", "content": content}), CTX)
    assert requests[0]["body"]["messages"][0]["content"][0]["image"]["format"] == "png"
    assert completion["choices"][0]["message"]["content"].endswith(f"{len(PNG)} bytes")


# -- structured output ----------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "score": {"type": "number"}},
    "required": ["city", "score"],
}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA}}


async def test_json_schema_is_a_forced_tool_answered_as_content(
    connect: Connect, requests: list[dict[str, Any]]
) -> None:
    provider = await connect()
    completion = await provider.chat(chat("Where?", response_format=JSON_SCHEMA), CTX)
    tool_config = requests[0]["body"]["toolConfig"]
    assert tool_config["toolChoice"] == {"tool": {"name": "place"}}
    [tool] = tool_config["tools"]
    assert tool["toolSpec"]["name"] == "place"
    assert tool["toolSpec"]["inputSchema"] == {"json": SCHEMA}
    [choice] = completion["choices"]
    assert "tool_calls" not in choice["message"]
    assert json.loads(choice["message"]["content"]) == {"city": "Paris", "score": 1.5}
    assert choice["finish_reason"] == "stop"
    chunks = await collect(provider, chat("Where?", response_format=JSON_SCHEMA))
    texts = [d["content"] for d in deltas(chunks) if d.get("content")]
    assert len(texts) >= 3 and json.loads("".join(texts)) == {"city": "Paris", "score": 1.5}
    assert not any("tool_calls" in d for d in deltas(chunks))
    assert finish(chunks) == "stop"


async def test_json_object(connect: Connect) -> None:
    provider = await connect()
    body = chat("Answer in JSON", response_format={"type": "json_object"})
    completion = await provider.chat(body, CTX)
    assert json.loads(completion["choices"][0]["message"]["content"]) == {"answer": "Paris"}


async def test_structured_output_beside_tools_lets_the_model_call_either(
    connect: Connect, requests: list[dict[str, Any]]
) -> None:
    provider = await connect()
    completion = await provider.chat(chat("Go", tools=[WEATHER], response_format=JSON_SCHEMA), CTX)
    tool_config = requests[0]["body"]["toolConfig"]
    assert [t["toolSpec"]["name"] for t in tool_config["tools"]] == ["get_weather", "place"]
    assert tool_config["toolChoice"] == {"any": {}}
    assert completion["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "get_weather"
    clash = {"type": "json_schema", "json_schema": {"name": "get_weather", "schema": SCHEMA}}
    with pytest.raises(InvalidRequest) as caught:
        await provider.chat(chat("Go", tools=[WEATHER], response_format=clash), CTX)
    assert caught.value.param == "response_format.json_schema.name"


# -- reasoning --------------------------------------------------------------------------


async def test_reasoning_effort_is_claude_thinking(
    connect: Connect, requests: list[dict[str, Any]]
) -> None:
    provider = await connect()
    completion = await provider.chat(chat("Think", reasoning_effort="medium"), CTX)
    body = requests[0]["body"]
    assert body["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2048}
    }
    assert body["inferenceConfig"] == {"maxTokens": 2048 + 4096}  # room past the budget
    message = completion["choices"][0]["message"]
    assert message["reasoning_content"] == "Let me think."
    assert message["content"] == "Hello from bedrock"
    chunks = await collect(provider, chat("Think", reasoning_effort="high", max_tokens=9000))
    assert requests[1]["body"]["inferenceConfig"] == {"maxTokens": 9000}
    thoughts = [d["reasoning_content"] for d in deltas(chunks) if "reasoning_content" in d]
    assert len(thoughts) >= 3 and "".join(thoughts) == "Let me think."
    texts = "".join(d.get("content") or "" for d in deltas(chunks))
    assert texts == "Hello from bedrock"
    await provider.chat(chat("Hi", reasoning_effort="none"), CTX)
    assert "additionalModelRequestFields" not in requests[2]["body"]


THOUGHT = {"type": "thinking", "thinking": "Let me think.", "signature": SIGNATURE}
SECRET = {"type": "redacted_thinking", "data": base64.b64encode(REDACTED).decode()}


def streamed_message(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant message a client rebuilds from the chunks, to send back."""
    calls = streamed_calls(chunks)
    return {
        "role": "assistant",
        "content": "".join(d.get("content") or "" for d in deltas(chunks)) or None,
        "tool_calls": [
            {
                "id": c["id"],
                "type": "function",
                "function": {k: c[k] for k in ("name", "arguments")},
            }
            for _, c in sorted(calls.items())
        ],
        "thinking_blocks": [b for d in deltas(chunks) for b in d.get("thinking_blocks", [])],
    }


async def test_thinking_answers_carry_signed_thinking_blocks_and_an_estimate(
    connect: Connect,
) -> None:
    provider = await connect(counter=EstimatingCounter())
    completion = await provider.chat(chat("Think", reasoning_effort="low"), CTX)
    message = completion["choices"][0]["message"]
    assert message["reasoning_content"] == "Let me think."
    assert message["thinking_blocks"] == [THOUGHT]
    # An estimate, Converse counting thinking only as output: ceil(13 characters / 4).
    usage = completion["usage"]
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 4}
    assert usage["completion_tokens"] > 4

    body = chat("Think", reasoning_effort="low", stream_options={"include_usage": True})
    chunks = await collect(provider, body)
    pieces = deltas(chunks)
    blocks = [i for i, d in enumerate(pieces) if "thinking_blocks" in d]
    thoughts = [i for i, d in enumerate(pieces) if "reasoning_content" in d]
    texts = [i for i, d in enumerate(pieces) if d.get("content")]
    assert [pieces[i]["thinking_blocks"] for i in blocks] == [[THOUGHT]]
    assert thoughts[-1] < blocks[0] < texts[0]  # sent whole when its block stops
    assert chunks[-1]["usage"] == usage

    plain = await connect()  # without a counter nothing is guessed
    unestimated = await plain.chat(chat("Think", reasoning_effort="low"), CTX)
    assert "completion_tokens_details" not in unestimated["usage"]


async def test_redacted_reasoning_is_a_redacted_thinking_block(connect: Connect) -> None:
    provider = await connect(counter=EstimatingCounter())
    body = chat("redact your thinking", reasoning_effort="low")
    completion = await provider.chat(body, CTX)
    message = completion["choices"][0]["message"]
    assert message["thinking_blocks"] == [SECRET]
    assert "reasoning_content" not in message
    assert "completion_tokens_details" not in completion["usage"]  # no text to count
    # Two deltas, each its own base64: the block is the bytes of both, encoded once.
    chunks = await collect(provider, body)
    assert [d["thinking_blocks"] for d in deltas(chunks) if "thinking_blocks" in d] == [[SECRET]]
    assert not any("reasoning_content" in d for d in deltas(chunks))


async def test_thinking_blocks_go_back_first_in_a_tool_loop(
    connect: Connect, requests: list[dict[str, Any]]
) -> None:
    provider = await connect()
    body = chat("Weather in Paris?", tools=[WEATHER], reasoning_effort="low")
    first = (await provider.chat(body, CTX))["choices"][0]["message"]
    [call] = first["tool_calls"]
    assert first["thinking_blocks"] == [THOUGHT]
    body["messages"] += [
        {k: v for k, v in first.items() if k != "reasoning_content"},
        _result(call["id"], "sunny"),
    ]
    second = await provider.chat(body, CTX)
    assert requests[1]["body"]["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "Let me think.", "signature": SIGNATURE}}},
        {
            "toolUse": {
                "toolUseId": call["id"],
                "name": "get_weather",
                "input": {"city": "Paris", "days": 3},
            }
        },
    ]
    assert second["choices"][0]["message"]["content"] == "Tool said: sunny"

    # The fake refuses what Bedrock refuses: no reasoning, or reasoning changed.
    body["messages"][1] = {**first, "thinking_blocks": []}
    with pytest.raises(UpstreamStatusError) as missing:
        await provider.chat(body, CTX)
    assert missing.value.upstream_status == 400
    assert "must start with a thinking block" in missing.value.message
    body["messages"][1] = {**first, "thinking_blocks": [{**THOUGHT, "signature": "Zm9yZ2Vk"}]}
    with pytest.raises(UpstreamStatusError) as forged:
        await provider.chat(body, CTX)
    assert forged.value.upstream_status == 400
    assert "Invalid `signature`" in forged.value.message


@pytest.mark.parametrize(
    ("said", "block"), [("Weather?", THOUGHT), ("redact your thinking", SECRET)]
)
async def test_streamed_thinking_blocks_go_back_in_a_streamed_tool_loop(
    connect: Connect, requests: list[dict[str, Any]], said: str, block: dict[str, Any]
) -> None:
    provider = await connect()
    body = chat(said, tools=[WEATHER], reasoning_effort="low")
    first = streamed_message(await collect(provider, body))
    assert first["thinking_blocks"] == [block]
    body["messages"] += [first, _result(first["tool_calls"][0]["id"], "sunny")]
    second = await collect(provider, body)
    assert "".join(d.get("content") or "" for d in deltas(second)) == "Tool said: sunny"
    assert "reasoningContent" in requests[1]["body"]["messages"][1]["content"][0]


async def test_reasoning_without_a_signature_round_trips(
    connect: Connect, requests: list[dict[str, Any]]
) -> None:
    """Models other than Claude reason unsigned; an unknown kind of reasoning is skipped."""
    content = [
        {"reasoningContent": {"reasoningText": {"text": "Hmm."}}},
        {"reasoningContent": {"somethingNew": {}}},
        {"text": "Hi"},
    ]
    answer = {
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 3, "outputTokens": 5, "totalTokens": 8},
    }
    stream = [
        event("messageStart", {"role": "assistant"}),
        event(
            "contentBlockDelta",
            {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Hmm."}}},
        ),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("messageStop", {"stopReason": "end_turn"}),
    ]
    unsigned = {"type": "thinking", "thinking": "Hmm.", "signature": None}
    provider = await connect(canned(answer, stream))
    message = (await provider.chat(chat("Hi"), CTX))["choices"][0]["message"]
    assert message["thinking_blocks"] == [unsigned]
    chunks = await collect(provider, chat("Hi"))
    assert [d["thinking_blocks"] for d in deltas(chunks) if "thinking_blocks" in d] == [[unsigned]]

    echo = await connect()
    await echo.chat(chat("Hi", message, "Go on"), CTX)
    sent = requests[0]["body"]["messages"][1]["content"]
    assert sent == [{"reasoningContent": {"reasoningText": {"text": "Hmm."}}}, {"text": "Hi"}]


async def test_reasoning_leads_a_merged_assistant_turn(
    connect: Connect, requests: list[dict[str, Any]]
) -> None:
    provider = await connect()
    history = [
        "Hi",
        {"role": "assistant", "content": "One."},
        {"role": "assistant", "content": "Two.", "thinking_blocks": [THOUGHT, SECRET]},
        "Go on",
    ]
    await provider.chat(chat(*history), CTX)
    assert requests[0]["body"]["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "Let me think.", "signature": SIGNATURE}}},
        {"reasoningContent": {"redactedContent": SECRET["data"]}},
        {"text": "One."},
        {"text": "Two."},
    ]


@pytest.mark.parametrize(
    ("blocks", "param"),
    [
        ({"type": "thinking"}, "messages[1].thinking_blocks"),
        ([{"type": "thinking", "signature": SIGNATURE}], "messages[1].thinking_blocks[0]"),
        (
            [THOUGHT, {"type": "redacted_thinking", "data": "not base64!"}],
            "messages[1].thinking_blocks[1]",
        ),
        ([{"type": "text", "text": "Hi"}], "messages[1].thinking_blocks[0]"),
    ],
)
async def test_thinking_blocks_that_cannot_go_back_are_refused(
    connect: Connect, requests: list[dict[str, Any]], blocks: Any, param: str
) -> None:
    provider = await connect()
    assistant = {"role": "assistant", "content": "Yes.", "thinking_blocks": blocks}
    with pytest.raises(InvalidRequest) as caught:
        await provider.chat(chat("Hi", assistant, "Go on"), CTX)
    assert caught.value.param == param
    assert requests == []


# -- prompt caching and usage ---------------------------------------------------------------


async def test_cache_control_markers_become_cache_points(
    connect: Connect, requests: list[dict[str, Any]]
) -> None:
    provider = await connect()
    marker = {"type": "ephemeral"}
    cached_tool = {**WEATHER, "cache_control": marker}
    body = chat(
        {"role": "system", "content": "Long rules.", "cache_control": marker},
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": "A long document.",
                    "cache_control": {**marker, "ttl": "1h"},
                },
                {"type": "text", "text": "Question?"},
            ],
        },
        tools=[cached_tool],
        tool_choice="none",
    )
    completion = await provider.chat(body, CTX)
    sent = requests[0]["body"]
    assert sent["system"] == [{"text": "Long rules."}, {"cachePoint": {"type": "default"}}]
    assert sent["messages"][0]["content"] == [
        {"text": "A long document."},
        {"cachePoint": {"type": "default", "ttl": "1h"}},
        {"text": "Question?"},
    ]
    await provider.chat({**body, "tool_choice": "auto"}, CTX)
    tools = requests[1]["body"]["toolConfig"]["tools"]
    assert tools[1] == {"cachePoint": {"type": "default"}}
    usage = completion["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 100, "cache_write_tokens": 50}
    # inputTokens leaves the cache out, so the cached tokens are added to it.
    uncached = (await provider.chat(chat("Hi"), CTX))["usage"]["prompt_tokens"]
    assert usage["prompt_tokens"] > 150 and uncached < usage["prompt_tokens"] - 150 + 20
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    chunks = await collect(provider, {**body, "stream_options": {"include_usage": True}})
    assert chunks[-1]["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 100,
        "cache_write_tokens": 50,
    }


# -- stop reasons (a canned upstream) ---------------------------------------------------------


def canned(answer: dict[str, Any], stream: list[bytes] | bytes) -> web.Application:
    """An upstream that answers the same thing to every request."""

    async def converse(request: web.Request) -> web.Response:
        return web.json_response(answer)

    async def converse_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"content-type": "application/vnd.amazon.eventstream"}
        )
        await response.prepare(request)
        await response.write(stream if isinstance(stream, bytes) else b"".join(stream))
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/model/{model_id}/converse", converse)
    app.router.add_post("/model/{model_id}/converse-stream", converse_stream)
    return app


def event(kind: str, payload: dict[str, Any]) -> bytes:
    headers = {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}
    return frame(headers, orjson.dumps(payload))


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("tool_use", "tool_calls"),
    ],
)
async def test_stop_reasons(connect: Connect, stop_reason: str, expected: str) -> None:
    blocks: list[dict[str, Any]] = [{"text": "Hi"}]
    stream = [event("messageStart", {"role": "assistant"})]
    stream.append(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}))
    if stop_reason == "tool_use":
        blocks.append({"toolUse": {"toolUseId": "t1", "name": "get_time", "input": {}}})
        start = {"toolUse": {"toolUseId": "t1", "name": "get_time"}}
        stream.append(event("contentBlockStart", {"contentBlockIndex": 1, "start": start}))
        stream.append(event("contentBlockStop", {"contentBlockIndex": 1}))
    stream += [
        event("messageStop", {"stopReason": stop_reason}),
        event("metadata", {"usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4}}),
    ]
    answer = {
        "output": {"message": {"role": "assistant", "content": blocks}},
        "stopReason": stop_reason,
        "usage": {"inputTokens": 3, "outputTokens": 1, "totalTokens": 4},
    }
    provider = await connect(canned(answer, stream))
    completion = await provider.chat(chat("Hi", tools=[TIME]), CTX)
    assert completion["choices"][0]["finish_reason"] == expected
    chunks = await collect(provider, chat("Hi", tools=[TIME]))
    assert finish(chunks) == expected
    if stop_reason == "tool_use":  # a call without input still has an arguments object
        assert completion["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == "{}"
        assert streamed_calls(chunks)[0]["arguments"] == "{}"


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exception", "status"),
    [
        ("throttlingException", 429),
        ("serviceUnavailableException", 503),
        ("validationException", 400),
        ("modelStreamErrorException", 502),
        ("internalServerException", 502),
    ],
)
async def test_stream_exceptions_mid_stream_keep_their_status(
    connect: Connect, exception: str, status: int
) -> None:
    provider = await connect()
    seen: list[dict[str, Any]] = []
    with pytest.raises(UpstreamStatusError) as caught:
        async for chunk in provider.stream_chat(chat(f"stream exception {exception}"), CTX):
            seen.append(orjson.loads(chunk))
    assert "".join(d.get("content") or "" for d in deltas(seen)) == "Hello from bedrock"
    assert caught.value.status_code == status
    assert "mid-stream" in caught.value.message and exception in caught.value.message


@pytest.mark.parametrize(
    ("text", "status", "code"),
    [("rate limit me", 429, "upstream_429"), ("overload me", 503, "upstream_overloaded")],
)
async def test_http_errors_and_first_frame_exceptions_are_mapped(
    connect: Connect, text: str, status: int, code: str
) -> None:
    provider = await connect()
    with pytest.raises(UpstreamStatusError) as caught:
        await provider.chat(chat(text), CTX)
    assert (caught.value.status_code, caught.value.code) == (status, code)
    seen: list[bytes] = []
    with pytest.raises(UpstreamStatusError) as streamed:
        async for chunk in provider.stream_chat(chat(text), CTX):
            seen.append(chunk)
    assert seen == []  # nothing was sent, so the gateway can still answer with the status
    assert streamed.value.status_code == status


async def test_a_broken_event_stream_is_a_protocol_error(connect: Connect) -> None:
    good = event("messageStart", {"role": "assistant"})
    broken = good[:-1] + bytes([good[-1] ^ 0xFF])  # the message CRC no longer matches
    provider = await connect(canned({"output": {}}, broken))
    with pytest.raises(UpstreamProtocolError, match="malformed upstream event stream"):
        await collect(provider, chat("Hi"))
    with pytest.raises(UpstreamProtocolError, match=r"output\.message\.content"):
        await provider.chat(chat("Hi"), CTX)


async def test_a_stream_cut_before_message_stop_is_a_protocol_error(connect: Connect) -> None:
    cut = [
        event("messageStart", {"role": "assistant"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hi"}}),
    ]
    provider = await connect(canned({}, cut))
    with pytest.raises(UpstreamProtocolError, match="before messageStop"):
        await collect(provider, chat("Hi"))


# -- the official SDK through a real gateway ------------------------------------------------


@pytest.fixture
def gateway(
    start_gateway: Callable[..., GatewayProcess],
    fake_upstream: Callable[[web.Application], FakeUpstream],
    requests: list[dict[str, Any]],
) -> Iterator[GatewayProcess]:
    upstream = fake_upstream(bedrock_app(requests))
    deployment = {
        "id": "bedrock-1",
        "provider": "bedrock",
        "model": MODEL,
        "base_url": upstream.url,
        "aws": {
            "region": "us-east-1",
            "access_key_id": TEST_ACCESS_KEY_ID,
            "secret_access_key": TEST_SECRET_ACCESS_KEY,
        },
    }
    config = {
        "models": [{"name": "bedrock-claude", "deployments": [deployment]}],
        "keys": [{"name": "test", "key": "os.environ/TEST_KEY"}],
    }
    yield start_gateway(config)


async def test_openai_sdk_tool_loop_through_the_gateway(
    gateway: GatewayProcess, requests: list[dict[str, Any]]
) -> None:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url + "/v1", api_key=TEST_KEY, max_retries=0
    ) as client:
        for stream in (False, True):
            messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
            first = await _sdk_turn(client, messages, stream)
            assert first["finish_reason"] == "tool_calls"
            [call] = first["tool_calls"]
            assert call["function"]["name"] == "get_weather"
            assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "days": 3}
            messages += [
                {"role": "assistant", "content": None, "tool_calls": first["tool_calls"]},
                {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
            ]
            second = await _sdk_turn(client, messages, stream)
            assert second["content"] == "Tool said: sunny"
            assert second["finish_reason"] == "stop"
    assert [r["path"].rsplit("/", 1)[1] for r in requests] == [
        "converse",
        "converse",
        "converse-stream",
        "converse-stream",
    ]


async def _sdk_turn(
    client: openai.AsyncOpenAI, messages: list[Any], stream: bool
) -> dict[str, Any]:
    """One turn's content, tool calls and finish reason, streamed or not."""
    if not stream:
        completion = await client.chat.completions.create(
            model="bedrock-claude",
            messages=messages,
            tools=[WEATHER],
        )
        answer = completion.choices[0]
        calls = [
            c.model_dump(include={"id", "type", "function"})
            for c in answer.message.tool_calls or []
        ]
        return {
            "content": answer.message.content,
            "tool_calls": calls,
            "finish_reason": answer.finish_reason,
        }
    chunks = await client.chat.completions.create(
        model="bedrock-claude",
        messages=messages,
        tools=[WEATHER],
        stream=True,
        stream_options={"include_usage": True},
    )
    content, reason = "", None
    calls_by_index: dict[int, dict[str, Any]] = {}
    usage = None
    async for chunk in chunks:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            content += choice.delta.content or ""
            reason = choice.finish_reason or reason
            for piece in choice.delta.tool_calls or []:
                call = calls_by_index.setdefault(
                    piece.index,
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                call["id"] = piece.id or call["id"]
                if piece.function is not None:
                    call["function"]["name"] += piece.function.name or ""
                    call["function"]["arguments"] += piece.function.arguments or ""
    assert usage is not None and usage.prompt_tokens > 0
    calls = [calls_by_index[i] for i in sorted(calls_by_index)]
    return {"content": content or None, "tool_calls": calls, "finish_reason": reason}


async def test_openai_sdk_tool_loop_with_thinking_through_the_gateway(
    gateway: GatewayProcess, requests: list[dict[str, Any]]
) -> None:
    """The gateway hands ``thinking_blocks`` out and back, and estimates the
    reasoning tokens with its own counter."""
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url + "/v1", api_key=TEST_KEY, max_retries=0
    ) as client:
        messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
        first = await client.chat.completions.create(
            model="bedrock-claude", messages=messages, tools=[WEATHER], reasoning_effort="low"
        )
        message = first.choices[0].message
        assert (message.model_extra or {})["thinking_blocks"] == [THOUGHT]
        assert first.usage is not None and first.usage.completion_tokens_details is not None
        assert 0 < (first.usage.completion_tokens_details.reasoning_tokens or 0) <= 13
        [call] = message.tool_calls or []
        messages += [
            message.model_dump(include={"role", "content", "tool_calls", "thinking_blocks"}),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ]
        second = await client.chat.completions.create(
            model="bedrock-claude", messages=messages, tools=[WEATHER], reasoning_effort="low"
        )
        assert second.choices[0].message.content == "Tool said: sunny"
    assert requests[1]["body"]["messages"][1]["content"][0] == {
        "reasoningContent": {"reasoningText": {"text": "Let me think.", "signature": SIGNATURE}}
    }
