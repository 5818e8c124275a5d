"""The Azure OpenAI adapter against a fake Azure data plane speaking its wire format."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import openai
import orjson
import pytest
from aiohttp import web

from interlock.config import DeploymentConfig, Secret
from interlock.config.deployments import DEFAULT_AZURE_API_VERSION
from interlock.errors import UpstreamStatusError
from interlock.providers.azure import AzureOpenAIProvider
from interlock.providers.base import CallContext
from tests.conftest import TEST_KEY
from tests.support.fake_azure import COMPLETION_FILTERS, PROMPT_FILTERS, azure_app
from tests.support.servers import FakeUpstream, GatewayProcess

CTX = CallContext(request_id="req_az", public_model="azure-gpt")
WEATHER = {
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
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}
Connect = Callable[..., AzureOpenAIProvider]


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "azure-gpt", "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
def requests() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def fake(
    fake_upstream: Callable[[web.Application], FakeUpstream], requests: list[dict[str, Any]]
) -> FakeUpstream:
    return fake_upstream(azure_app(requests))


@pytest.fixture
async def connect(fake: FakeUpstream) -> AsyncIterator[Connect]:
    started: list[AzureOpenAIProvider] = []

    def start(**settings: Any) -> AzureOpenAIProvider:
        deployment = DeploymentConfig.model_validate(
            {
                "id": "azure-1",
                "provider": "azure",
                "model": "gpt4o-prod",
                "base_url": fake.url,
                "api_key": Secret("azure-key-123"),
                **settings,
            }
        )
        provider = AzureOpenAIProvider(deployment)
        started.append(provider)
        return provider

    yield start
    for provider in started:
        await provider.aclose()


async def started(connect: Connect, **settings: Any) -> AzureOpenAIProvider:
    provider = connect(**settings)
    await provider.start()
    return provider


async def collect(provider: AzureOpenAIProvider, body: dict[str, Any]) -> list[dict[str, Any]]:
    return [orjson.loads(chunk) async for chunk in provider.stream_chat(body, CTX)]


# -- requests --------------------------------------------------------------------


async def test_chat_goes_to_the_deployment_url_with_the_api_key_header(
    connect: Connect, requests: list[dict[str, Any]]
) -> None:
    provider = await started(connect)
    result = await provider.chat(ask("Hi"), CTX)
    assert result["choices"][0]["message"]["content"] == "Hello from azure"
    # Azure's extras pass through.
    assert result["prompt_filter_results"] == PROMPT_FILTERS
    assert result["choices"][0]["content_filter_results"] == COMPLETION_FILTERS
    [sent] = requests
    assert sent["path"] == "/openai/deployments/gpt4o-prod/chat/completions"
    assert sent["query"] == {"api-version": DEFAULT_AZURE_API_VERSION}
    assert sent["headers"]["api-key"] == "azure-key-123"
    assert "authorization" not in sent["headers"]
    assert sent["headers"]["x-request-id"] == "req_az"
    assert sent["body"]["model"] == "gpt4o-prod" and "stream" not in sent["body"]
    assert provider.provider_name == "azure.ai.openai"


async def test_api_version_and_resource_url_forms(
    connect: Connect, fake: FakeUpstream, requests: list[dict[str, Any]]
) -> None:
    provider = await started(
        connect, api_version="2025-01-01-preview", base_url=fake.url + "/openai/"
    )
    await provider.chat(ask("Hi"), CTX)
    assert requests[0]["path"] == "/openai/deployments/gpt4o-prod/chat/completions"
    assert requests[0]["query"] == {"api-version": "2025-01-01-preview"}


async def test_embeddings_url_and_floats(connect: Connect, requests: list[dict[str, Any]]) -> None:
    provider = await started(connect, model="embed-prod")
    body = {"model": "e", "input": ["a", "b"], "encoding_format": "base64"}
    result = await provider.embed(body, CTX)
    assert [d["index"] for d in result["data"]] == [0, 1]
    assert len(result["data"][0]["embedding"]) == 8
    assert requests[0]["path"] == "/openai/deployments/embed-prod/embeddings"
    assert requests[0]["query"] == {"api-version": DEFAULT_AZURE_API_VERSION}
    assert requests[0]["body"]["encoding_format"] == "float"
    assert requests[0]["headers"]["api-key"] == "azure-key-123"


async def test_tools_pass_through_and_calls_come_back(
    connect: Connect, requests: list[dict[str, Any]]
) -> None:
    provider = await started(connect)
    named = {"type": "function", "function": {"name": "get_time"}}
    body = ask("What time is it?", tools=[WEATHER, TIME], tool_choice=named)
    result = await provider.chat(body, CTX)
    assert requests[0]["body"]["tools"] == [WEATHER, TIME]
    assert requests[0]["body"]["tool_choice"] == named
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "get_time", "arguments": '{"zone":"Paris"}'}


# -- streams ---------------------------------------------------------------------


async def test_stream_passes_azure_chunks_through_unchanged(
    connect: Connect, requests: list[dict[str, Any]]
) -> None:
    provider = await started(connect)
    chunks = await collect(provider, ask("Hi", stream_options={"include_usage": True}))
    assert requests[0]["body"]["stream"] is True
    # Azure's first chunk: no choices, the prompt's filter results.
    assert chunks[0] == {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": PROMPT_FILTERS,
    }
    texts = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["delta"]]
    pieces = [t["delta"]["content"] for t in texts if t["delta"].get("content")]
    assert pieces == ["Hello", " from", " azure"]
    assert all(t["content_filter_results"] == COMPLETION_FILTERS for t in texts[1:])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


async def test_stream_of_parallel_tool_calls(connect: Connect) -> None:
    provider = await started(connect)
    chunks = await collect(provider, ask("Both, in parallel.", tools=[WEATHER, TIME]))
    parts = [
        part
        for c in chunks
        if c["choices"]
        for part in c["choices"][0]["delta"].get("tool_calls") or ()
    ]
    assert [p["index"] for p in parts[:4]] == [0, 1, 0, 1]
    arguments = {0: "", 1: ""}
    for part in parts:
        arguments[part["index"]] += part["function"]["arguments"]
    assert arguments == {0: '{"city":"Paris","days":3}', 1: '{"zone":"Paris"}'}
    assert len(parts) >= 2 + 2 * 3  # two openings, at least three fragments each
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


# -- errors ----------------------------------------------------------------------


async def test_rate_limit_keeps_429_and_retry_after(connect: Connect) -> None:
    provider = await started(connect)
    with pytest.raises(UpstreamStatusError) as info:
        await provider.chat(ask("rate limit me"), CTX)
    assert info.value.status_code == 429 and info.value.retry_after_s == 1
    assert "exceeded token rate limit" in info.value.message
    with pytest.raises(UpstreamStatusError) as streamed:
        await collect(provider, ask("rate limit me"))
    assert streamed.value.status_code == 429


async def test_content_filter_stays_a_400(connect: Connect) -> None:
    provider = await started(connect)
    with pytest.raises(UpstreamStatusError) as info:
        await provider.chat(ask("filter me"), CTX)
    assert info.value.status_code == 400
    assert info.value.error_type == "invalid_request_error"
    # The code clients act on is kept (not upstream_400).
    assert info.value.code == "content_filter"
    assert "content management policy" in info.value.message
    with pytest.raises(UpstreamStatusError) as streamed:
        await collect(provider, ask("filter me"))
    assert streamed.value.status_code == 400 and streamed.value.code == "content_filter"


async def test_overload_is_a_503(connect: Connect) -> None:
    provider = await started(connect)
    with pytest.raises(UpstreamStatusError) as info:
        await provider.chat(ask("overload me"), CTX)
    assert info.value.status_code == 503 and info.value.code == "upstream_overloaded"


async def test_a_rejected_key_is_the_gateways_problem(connect: Connect) -> None:
    provider = await started(connect, api_key=None)
    with pytest.raises(UpstreamStatusError) as info:
        await provider.chat(ask("Hi"), CTX)
    assert info.value.upstream_status == 401 and info.value.status_code == 502
    assert "Access denied" in info.value.message


# -- the official SDK through a live gateway ---------------------------------------


def gateway_config(url: str) -> dict[str, Any]:
    deployment = {
        "id": "azure-1",
        "provider": "azure",
        "model": "gpt4o-prod",
        "base_url": url,
        "api_key": "test",
    }
    return {
        "models": [{"name": "azure-gpt", "deployments": [deployment]}],
        "keys": [{"name": "test", "key": "os.environ/TEST_KEY"}],
    }


async def test_openai_sdk_tool_loop_through_the_gateway(
    fake: FakeUpstream,
    start_gateway: Callable[..., GatewayProcess],
    requests: list[dict[str, Any]],
) -> None:
    gateway = start_gateway(gateway_config(fake.url))
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url + "/v1", api_key=TEST_KEY, max_retries=0
    ) as client:
        # Non-streamed: a call, then its result read back.
        messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
        first = await client.chat.completions.create(
            model="azure-gpt", messages=messages, tools=[WEATHER]
        )
        assert first.choices[0].finish_reason == "tool_calls"
        [call] = first.choices[0].message.tool_calls or []
        assert call.function.name == "get_weather"
        assert call.function.arguments == '{"city":"Paris","days":3}'
        messages += [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ]
        second = await client.chat.completions.create(
            model="azure-gpt", messages=messages, tools=[WEATHER]
        )
        assert second.choices[0].message.content == "Tool said: sunny"
        assert requests[-1]["headers"]["api-key"] == "test"

        # Streamed: two parallel calls put together by the SDK's reader, then their results.
        messages = [{"role": "user", "content": "Weather and time, in parallel."}]
        stream = await client.chat.completions.create(
            model="azure-gpt",
            messages=messages,
            tools=[WEATHER, TIME],
            stream=True,
            stream_options={"include_usage": True},
        )
        calls: dict[int, dict[str, str]] = {}
        finish, usage = None, None
        async for chunk in stream:
            usage = chunk.usage or usage
            for choice in chunk.choices:  # Azure's filter-results chunk has none
                finish = choice.finish_reason or finish
                for part in choice.delta.tool_calls or ():
                    entry = calls.setdefault(part.index, {"arguments": ""})
                    if part.id:
                        entry["id"] = part.id
                    if part.function and part.function.name:
                        entry["name"] = part.function.name
                    if part.function and part.function.arguments:
                        entry["arguments"] += part.function.arguments
        assert finish == "tool_calls" and usage is not None and usage.completion_tokens > 0
        assert [calls[i]["name"] for i in sorted(calls)] == ["get_weather", "get_time"]
        assert calls[1]["arguments"] == '{"zone":"Paris"}'
        messages += [
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                    }
                    for c in calls.values()
                ],
            },
            {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"},
            {"role": "tool", "tool_call_id": calls[1]["id"], "content": "noon"},
        ]
        answer = await client.chat.completions.create(
            model="azure-gpt", messages=messages, tools=[WEATHER, TIME], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in answer if c.choices])
        assert text == "Tool said: sunny; noon"
