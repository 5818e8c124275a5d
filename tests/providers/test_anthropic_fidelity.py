"""The Anthropic adapter's full translation (tools, images, structured
output, prompt caching, reasoning) against the contract fake, which checks
the wire rules the real API checks; plus the official ``openai`` SDK through
a live gateway."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import openai
import orjson
import pytest
from aiohttp import web

from interlock.config import DeploymentConfig, Secret
from interlock.errors import InvalidRequest, UpstreamStatusError
from interlock.providers.anthropic import AnthropicProvider
from interlock.providers.anthropic_answer import completion
from interlock.providers.anthropic_stream import StreamTranslator
from interlock.providers.anthropic_wire import ShapeError
from interlock.providers.base import CallContext
from interlock.tokens import EstimatingCounter
from tests.conftest import TEST_KEY
from tests.support.fake_anthropic import SIGNATURE, anthropic_app
from tests.support.servers import FakeUpstream, GatewayProcess

CTX = CallContext(request_id="req_fidelity", public_model="claude")
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(24)).decode()  # 32 bytes
WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
TIME: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "time",
        "parameters": {"type": "object", "properties": {"utc": {"type": "boolean"}}},
    },
}
CITY_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
}


class Fake:
    """The contract fake on loopback, what it received, and adapters for it."""

    def __init__(self, upstream: FakeUpstream, requests: list[dict[str, Any]]):
        self.url = upstream.url
        self.requests = requests
        self.providers: list[AnthropicProvider] = []

    @property
    def sent(self) -> dict[str, Any]:
        body: dict[str, Any] = self.requests[-1]["body"]
        return body

    async def provider(self, drop: tuple[str, ...] = (), key: bool = True) -> AnthropicProvider:
        deployment = DeploymentConfig(
            id="anthropic-f",
            provider="anthropic",
            model="claude-x",
            base_url=self.url,
            api_key=Secret("k") if key else None,
            drop_params=list(drop),
        )
        provider = AnthropicProvider(deployment, counter=EstimatingCounter())
        await provider.start()
        self.providers.append(provider)
        return provider


@pytest.fixture
async def fake(fake_upstream: Callable[[web.Application], FakeUpstream]) -> AsyncIterator[Fake]:
    requests: list[dict[str, Any]] = []
    harness = Fake(fake_upstream(anthropic_app(requests)), requests)
    yield harness
    for provider in harness.providers:
        await provider.aclose()


def ask(text: str = "Hi", **extra: Any) -> dict[str, Any]:
    return {"model": "claude", "messages": [{"role": "user", "content": text}], **extra}


async def collect(provider: AnthropicProvider, body: dict[str, Any]) -> list[dict[str, Any]]:
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    return [orjson.loads(chunk) async for chunk in provider.stream_chat(body, CTX)]


def deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


def joined(chunks: list[dict[str, Any]], key: str) -> str:
    return "".join(d.get(key) or "" for d in deltas(chunks))


def finish(chunks: list[dict[str, Any]]) -> str:
    return str([c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1])


# -- request translation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, None),
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "time"}}, {"type": "tool", "name": "time"}),
    ],
    ids=["unset", "auto", "required", "none", "named"],
)
async def test_tools_and_tool_choice_translate(
    fake: Fake, choice: Any, expected: dict[str, Any] | None
) -> None:
    provider = await fake.provider()
    extra = {} if choice is None else {"tool_choice": choice}
    await provider.chat(ask(tools=[WEATHER, TIME], **extra), CTX)

    assert fake.sent["tools"] == [
        {
            "name": "weather",
            "description": "The weather in a city.",
            "input_schema": WEATHER["function"]["parameters"],
        },
        {"name": "time", "input_schema": TIME["function"]["parameters"]},
    ]
    assert fake.sent.get("tool_choice") == expected


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (None, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", {"type": "any", "disable_parallel_tool_use": True}),
        ("none", {"type": "none"}),
    ],
)
async def test_parallel_tool_calls_false_disables_parallel_use(
    fake: Fake, choice: str | None, expected: dict[str, Any]
) -> None:
    provider = await fake.provider()
    extra = {} if choice is None else {"tool_choice": choice}
    await provider.chat(ask(tools=[WEATHER], parallel_tool_calls=False, **extra), CTX)
    assert fake.sent["tool_choice"] == expected


async def test_legacy_functions_translate_as_tools(fake: Fake) -> None:
    provider = await fake.provider()
    request = ask(functions=[WEATHER["function"]], function_call={"name": "weather"})
    answer = await provider.chat(request, CTX)
    assert fake.sent["tools"][0]["name"] == "weather"
    assert fake.sent["tool_choice"] == {"type": "tool", "name": "weather"}
    assert answer["choices"][0]["finish_reason"] == "tool_calls"


async def test_tool_loop_history_translates(fake: Fake) -> None:
    provider = await fake.provider()
    call = {"type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [{**call, "id": "toolu_a"}, {**call, "id": "toolu_b"}],
        },
        {"role": "tool", "tool_call_id": "toolu_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_b", "content": [{"type": "text", "text": "rain"}]},
        {"role": "user", "content": "Which is warmer?"},
    ]
    answer = await provider.chat(ask(messages=messages, tools=[WEATHER]), CTX)

    assert fake.sent["system"] == "Be brief."
    assert fake.sent["messages"] == [
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_a", "name": "weather", "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "toolu_b", "name": "weather", "input": {"city": "Oslo"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": "sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_b",
                    "content": [{"type": "text", "text": "rain"}],
                },
                {"type": "text", "text": "Which is warmer?"},
            ],
        },
    ]
    assert answer["choices"][0]["message"]["content"] == "Tool said: sunny; rain"
    assert answer["choices"][0]["finish_reason"] == "stop"


async def test_images_translate_inline_and_as_urls(fake: Fake) -> None:
    provider = await fake.provider()
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://img.example/cat.jpg"}},
    ]
    answer = await provider.chat(ask(messages=[{"role": "user", "content": content}]), CTX)

    assert fake.sent["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://img.example/cat.jpg"}},
    ]
    assert answer["choices"][0]["message"]["content"] == "I see a image/png image of 32 bytes"


async def test_cache_control_passes_through_everywhere(fake: Fake) -> None:
    provider = await fake.provider()
    marker = {"type": "ephemeral"}
    messages = [
        {
            "role": "system",
            "content": [
                {"type": "text", "text": "Long instructions."},
                {"type": "text", "text": "More.", "cache_control": marker},
            ],
        },
        {"role": "system", "content": "Plain."},
        {"role": "user", "content": "A long document.", "cache_control": marker},
        {"role": "assistant", "content": "Read it."},
        {"role": "user", "content": [{"type": "text", "text": "Sum up.", "cache_control": marker}]},
    ]
    tool = {**WEATHER, "cache_control": marker}
    answer = await provider.chat(ask(messages=messages, tools=[tool], tool_choice="none"), CTX)

    assert fake.sent["tools"][0]["cache_control"] == marker
    assert fake.sent["system"] == [
        {"type": "text", "text": "Long instructions."},
        {"type": "text", "text": "More.", "cache_control": marker},
        {"type": "text", "text": "Plain."},
    ]
    assert fake.sent["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "A long document.", "cache_control": marker}],
        },
        {"role": "assistant", "content": "Read it."},
        {"role": "user", "content": [{"type": "text", "text": "Sum up.", "cache_control": marker}]},
    ]
    usage = answer["usage"]
    assert usage["prompt_tokens_details"] == {"cached_tokens": 100, "cache_write_tokens": 50}
    assert usage["prompt_tokens"] == fake_input_tokens(fake) + 150


def fake_input_tokens(fake: Fake) -> int:
    prompt = {k: fake.sent.get(k) for k in ("system", "messages", "tools")}
    return max(1, len(orjson.dumps(prompt)) // 4)


@pytest.mark.parametrize(
    ("effort", "max_tokens", "thinking", "sent_max"),
    [
        ("low", None, {"type": "enabled", "budget_tokens": 1024}, 4096),
        ("medium", 1000, {"type": "enabled", "budget_tokens": 2048}, 3048),
        ("high", 10000, {"type": "enabled", "budget_tokens": 4096}, 10000),
        ("none", 500, None, 500),
    ],
)
async def test_reasoning_effort_sets_a_thinking_budget(
    fake: Fake,
    effort: str,
    max_tokens: int | None,
    thinking: dict[str, Any] | None,
    sent_max: int,
) -> None:
    provider = await fake.provider()
    limit: dict[str, Any] = {} if max_tokens is None else {"max_tokens": max_tokens}
    await provider.chat(ask(reasoning_effort=effort, **limit), CTX)
    assert fake.sent.get("thinking") == thinking
    assert fake.sent["max_tokens"] == sent_max


async def test_native_thinking_and_top_k_pass_through(fake: Fake) -> None:
    provider = await fake.provider()
    native = {"type": "enabled", "budget_tokens": 1500}
    await provider.chat(ask(thinking=native, max_tokens=8000, user="u-7"), CTX)
    assert fake.sent["thinking"] == native
    assert fake.sent["max_tokens"] == 8000
    assert fake.sent["metadata"] == {"user_id": "u-7"}
    await provider.chat(ask(top_k=5, temperature=0.2), CTX)
    assert (fake.sent["top_k"], fake.sent["temperature"]) == (5, 0.2)


@pytest.mark.parametrize(
    ("param", "value"),
    [("temperature", 0.5), ("top_p", 0.5), ("top_k", 5)],
)
async def test_thinking_refuses_sampling_params_unless_dropped(
    fake: Fake, param: str, value: float
) -> None:
    sampling: dict[str, Any] = {param: value}
    request = ask(reasoning_effort="low", **sampling)
    strict = await fake.provider()
    with pytest.raises(InvalidRequest) as error:
        await strict.chat(request, CTX)
    assert error.value.param == param
    assert fake.requests == []

    lenient = await fake.provider(drop=(param,))
    answer = await lenient.chat(request, CTX)
    assert param not in fake.sent
    assert answer["choices"][0]["message"]["reasoning_content"] == "Let me think."


async def test_thinking_allows_what_anthropic_allows(fake: Fake) -> None:
    provider = await fake.provider()
    await provider.chat(ask(reasoning_effort="low", temperature=1, top_p=0.95), CTX)
    assert (fake.sent["temperature"], fake.sent["top_p"]) == (1, 0.95)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"tools": [WEATHER], "tool_choice": "required"}, "tool_choice"),
    ],
    ids=["response_format", "forced-tool"],
)
async def test_thinking_with_a_forced_tool_is_refused(
    fake: Fake, extra: dict[str, Any], param: str
) -> None:
    provider = await fake.provider()
    with pytest.raises(InvalidRequest) as error:
        await provider.chat(ask(reasoning_effort="medium", **extra), CTX)
    assert error.value.param == param
    assert fake.requests == []


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"seed": 7}, "seed"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"logprobs": True}, "logprobs"),
        ({"n": 2}, "n"),
    ],
)
async def test_unsupported_params_are_refused_or_dropped(
    fake: Fake, extra: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequest) as error:
        await (await fake.provider()).chat(ask(**extra), CTX)
    assert error.value.param == param
    assert param in error.value.message

    answer = await (await fake.provider(drop=(param,))).chat(ask(**extra), CTX)
    assert param not in fake.sent
    assert answer["choices"][0]["message"]["content"] == "Hello from anthropic"


async def test_json_tool_name_clash_is_refused(fake: Fake) -> None:
    provider = await fake.provider()
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": CITY_SCHEMA}}
    with pytest.raises(InvalidRequest) as error:
        await provider.chat(ask(tools=[WEATHER], response_format=fmt), CTX)
    assert error.value.param == "response_format"


# -- answers -------------------------------------------------------------------


async def test_tool_call_answer(fake: Fake) -> None:
    provider = await fake.provider()
    answer = await provider.chat(ask("Weather?", tools=[WEATHER]), CTX)
    choice = answer["choices"][0]
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {
                "id": "toolu_010fake",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city":"Paris","days":3}'},
            }
        ],
    }
    assert choice["finish_reason"] == "tool_calls"


async def test_parallel_tool_calls_stream_interleaved_keep_their_index(fake: Fake) -> None:
    provider = await fake.provider()
    chunks = await collect(provider, ask("Both in parallel please", tools=[WEATHER, TIME]))

    calls = [call for d in deltas(chunks) for call in d.get("tool_calls", [])]
    opened = [(c["index"], c["id"], c["function"]["name"]) for c in calls if "id" in c]
    assert opened == [(0, "toolu_010fake", "weather"), (1, "toolu_011fake", "time")]
    pieces = [(c["index"], c["function"]["arguments"]) for c in calls if "id" not in c]
    assert [i for i, _ in pieces] == [0, 1, 0, 1, 0, 1]  # interleaved upstream
    assert "".join(p for i, p in pieces if i == 0) == '{"city":"Paris","days":3}'
    assert "".join(p for i, p in pieces if i == 1) == '{"utc":true}'
    assert joined(chunks, "content") == ""
    assert finish(chunks) == "tool_calls"

    unary = await provider.chat(ask("Both in parallel please", tools=[WEATHER, TIME]), CTX)
    assert [c["function"]["name"] for c in unary["choices"][0]["message"]["tool_calls"]] == [
        "weather",
        "time",
    ]


@pytest.mark.parametrize(
    ("fmt", "tool", "content"),
    [
        (
            {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY_SCHEMA}},
            {
                "name": "city",
                "description": "Give the answer by calling this tool: its input is the response.",
                "input_schema": CITY_SCHEMA,
            },
            '{"name":"Paris","population":3}',
        ),
        (
            {"type": "json_object"},
            {
                "name": "json_response",
                "description": "Give the answer by calling this tool: its input is the response.",
                "input_schema": {"type": "object"},
            },
            '{"answer":"Paris"}',
        ),
    ],
    ids=["json_schema", "json_object"],
)
async def test_response_format_is_a_forced_tool_answered_as_content(
    fake: Fake, fmt: dict[str, Any], tool: dict[str, Any], content: str
) -> None:
    provider = await fake.provider()
    answer = await provider.chat(ask(response_format=fmt), CTX)
    assert fake.sent["tools"] == [tool]
    assert fake.sent["tool_choice"] == {"type": "tool", "name": tool["name"]}
    message = answer["choices"][0]["message"]
    assert message["content"] == content
    assert "tool_calls" not in message
    assert answer["choices"][0]["finish_reason"] == "stop"

    chunks = await collect(provider, ask(response_format=fmt))
    assert joined(chunks, "content") == content
    assert not any("tool_calls" in d for d in deltas(chunks))
    assert finish(chunks) == "stop"


async def test_response_format_with_caller_tools_only_json_becomes_content(fake: Fake) -> None:
    provider = await fake.provider()
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": CITY_SCHEMA}}
    answer = await provider.chat(ask("Go parallel", tools=[WEATHER], response_format=fmt), CTX)

    assert [t["name"] for t in fake.sent["tools"]] == ["weather", "city"]
    assert fake.sent["tool_choice"] == {"type": "any"}
    message = answer["choices"][0]["message"]
    assert message["content"] == '{"name":"Paris","population":3}'
    assert [c["function"]["name"] for c in message["tool_calls"]] == ["weather"]
    assert answer["choices"][0]["finish_reason"] == "tool_calls"

    named = {"type": "function", "function": {"name": "weather"}}
    await provider.chat(ask(tools=[WEATHER], tool_choice=named, response_format=fmt), CTX)
    assert fake.sent["tool_choice"] == {"type": "tool", "name": "weather"}


async def test_thinking_answer_has_reasoning_content_blocks_and_estimate(fake: Fake) -> None:
    provider = await fake.provider()
    answer = await provider.chat(ask(reasoning_effort="low"), CTX)
    message = answer["choices"][0]["message"]
    assert message["content"] == "Hello from anthropic"
    assert message["reasoning_content"] == "Let me think."
    assert message["thinking_blocks"] == [
        {"type": "thinking", "thinking": "Let me think.", "signature": SIGNATURE}
    ]
    # EstimatingCounter: ceil(13 characters / 4)
    assert answer["usage"]["completion_tokens_details"] == {"reasoning_tokens": 4}

    chunks = await collect(provider, ask(reasoning_effort="low"))
    assert joined(chunks, "reasoning_content") == "Let me think."
    assert joined(chunks, "content") == "Hello from anthropic"
    blocks = [d["thinking_blocks"] for d in deltas(chunks) if "thinking_blocks" in d]
    assert blocks == [message["thinking_blocks"]]
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 4}
    assert chunks[-1]["usage"]["completion_tokens"] == answer["usage"]["completion_tokens"]


async def test_thinking_blocks_go_back_first_in_a_tool_loop(fake: Fake) -> None:
    provider = await fake.provider()
    request = ask("Weather?", tools=[WEATHER], reasoning_effort="low")
    first = (await provider.chat(request, CTX))["choices"][0]["message"]
    call = first["tool_calls"][0]
    request["messages"] += [
        {k: v for k, v in first.items() if k != "reasoning_content"},
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"},
    ]
    second = await provider.chat(request, CTX)

    sent_back = fake.sent["messages"][1]["content"]
    assert [b["type"] for b in sent_back] == ["thinking", "tool_use"]
    assert sent_back[0]["signature"] == SIGNATURE
    assert second["choices"][0]["message"]["content"] == "Tool said: sunny"

    request["messages"][1].pop("thinking_blocks")  # the fake refuses, as Anthropic does
    with pytest.raises(UpstreamStatusError) as error:
        await provider.chat(request, CTX)
    assert error.value.status_code == 400


async def test_stream_usage_reports_cache_reads_and_writes(fake: Fake) -> None:
    provider = await fake.provider()
    cached = {"role": "user", "content": "Hi", "cache_control": {"type": "ephemeral"}}
    chunks = await collect(provider, ask(messages=[cached]))
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == []
    assert usage["prompt_tokens_details"] == {"cached_tokens": 100, "cache_write_tokens": 50}
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert deltas(chunks)[0] == {"role": "assistant", "content": ""}
    assert len([d for d in deltas(chunks) if d.get("content")]) >= 3


@pytest.mark.parametrize(
    ("said", "status"), [("overload me", 503), ("rate limit me", 429)], ids=["529", "429"]
)
@pytest.mark.parametrize("stream", [False, True], ids=["chat", "stream"])
async def test_fake_overload_and_rate_limit(
    fake: Fake, said: str, status: int, stream: bool
) -> None:
    provider = await fake.provider()
    with pytest.raises(UpstreamStatusError) as error:
        if stream:
            await collect(provider, ask(said))
        else:
            await provider.chat(ask(said), CTX)
    assert error.value.status_code == status


# -- the translation, event by event ---------------------------------------------


def message(content: list[dict[str, Any]], stop_reason: str) -> dict[str, Any]:
    usage = {"input_tokens": 5, "output_tokens": 2}
    return {"id": "msg_1", "content": content, "stop_reason": stop_reason, "usage": usage}


@pytest.mark.parametrize(
    ("stop_reason", "content", "expected"),
    [
        ("end_turn", [], "stop"),
        ("stop_sequence", [], "stop"),
        ("max_tokens", [], "length"),
        ("refusal", [], "content_filter"),
        ("pause_turn", [], "stop"),
        ("model_context_window_exceeded", [], "length"),
        ("tool_use", [{"type": "tool_use", "id": "t", "name": "f", "input": {}}], "tool_calls"),
        ("tool_use", [{"type": "tool_use", "id": "t", "name": "out", "input": {}}], "stop"),
        ("something_new", [], "stop"),
    ],
)
def test_stop_reason_table(stop_reason: str, content: list[Any], expected: str) -> None:
    answer = completion(message(content, stop_reason), "m", "out", None)
    assert answer["choices"][0]["finish_reason"] == expected

    translator = StreamTranslator("m", include_usage=False, json_tool="out")
    events: list[dict[str, Any]] = [{"type": "message_start", "message": message([], "")}]
    for i, block in enumerate(content):
        events.append({"type": "content_block_start", "index": i, "content_block": block})
    events += [
        {"type": "message_delta", "delta": {"stop_reason": stop_reason}, "usage": {}},
        {"type": "message_stop"},
    ]
    chunks = [orjson.loads(c) for e in events for c in translator.feed(e)]
    assert finish(chunks) == expected


def test_stream_translator_interleaved_calls_json_and_redacted_thinking() -> None:
    translator = StreamTranslator("m", include_usage=False, json_tool="out")

    def delta(index: int, piece: str) -> dict[str, Any]:
        delta = {"type": "input_json_delta", "partial_json": piece}
        return {"type": "content_block_delta", "index": index, "delta": delta}

    def start(index: int, block: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_start", "index": index, "content_block": block}

    events = [
        {"type": "message_start", "message": message([], "")},
        start(0, {"type": "redacted_thinking", "data": "opaque"}),
        {"type": "content_block_stop", "index": 0},
        start(1, {"type": "tool_use", "id": "t1", "name": "f", "input": {}}),
        start(2, {"type": "tool_use", "id": "j", "name": "out", "input": {}}),
        start(3, {"type": "tool_use", "id": "t2", "name": "g", "input": {}}),
        delta(3, '{"b"'),
        delta(1, '{"a"'),
        delta(2, '{"x":'),
        delta(3, ":2}"),
        delta(1, ":1}"),
        delta(2, "1}"),
        {"type": "message_stop"},
    ]
    out = [orjson.loads(c)["choices"][0]["delta"] for e in events for c in translator.feed(e)]

    assert out[1] == {"thinking_blocks": [{"type": "redacted_thinking", "data": "opaque"}]}
    calls = [c for d in out for c in d.get("tool_calls", [])]
    assert [(c["index"], c.get("id")) for c in calls if "id" in c] == [(0, "t1"), (1, "t2")]
    args = {0: "", 1: ""}
    for call in calls:
        args[call["index"]] += call["function"]["arguments"]
    assert args == {0: '{"a":1}', 1: '{"b":2}'}
    assert "".join(d.get("content") or "" for d in out) == '{"x":1}'


def test_redacted_thinking_answer_keeps_its_data() -> None:
    content = [
        {"type": "redacted_thinking", "data": "opaque"},
        {"type": "text", "text": "Done."},
    ]
    reply = completion(message(content, "end_turn"), "m", None, EstimatingCounter())
    answer = reply["choices"][0]["message"]
    assert answer["thinking_blocks"] == [{"type": "redacted_thinking", "data": "opaque"}]
    assert "reasoning_content" not in answer
    assert "completion_tokens_details" not in reply["usage"]


# -- the fake refuses what the real API refuses -----------------------------------


async def post(fake: Fake, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.url}/v1/messages", json=body, headers=headers) as response,
    ):
        return response.status, await response.json()


HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
TOOL = {"name": "f", "input_schema": {"type": "object"}}


@pytest.mark.parametrize(
    ("headers", "messages", "status", "kind"),
    [
        ({"anthropic-version": "2023-06-01"}, [{"role": "user", "content": "Hi"}], 401, "auth"),
        ({"x-api-key": "k"}, [{"role": "user", "content": "Hi"}], 400, "invalid"),
        (HEADERS, [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], 400, ""),
        (
            HEADERS,
            [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f"}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "b"},
                        {"type": "tool_result", "tool_use_id": "t", "content": "x"},
                    ],
                },
            ],
            400,
            "",
        ),
    ],
    ids=["no-key", "no-version", "no-alternation", "tool-result-not-first"],
)
async def test_fake_refuses_like_the_real_api(
    fake: Fake, headers: dict[str, str], messages: list[Any], status: int, kind: str
) -> None:
    body = {"model": "m", "max_tokens": 10, "messages": messages, "tools": [TOOL]}
    got, payload = await post(fake, body, headers)
    assert got == status
    assert payload["type"] == "error"
    expected = "authentication_error" if status == 401 else "invalid_request_error"
    assert payload["error"]["type"] == expected


async def test_missing_key_is_the_gateways_problem(fake: Fake) -> None:
    provider = await fake.provider(key=False)
    with pytest.raises(UpstreamStatusError) as error:
        await provider.chat(ask(), CTX)
    assert (error.value.upstream_status, error.value.status_code) == (401, 502)


# -- the official SDK through a live gateway -------------------------------------


async def test_openai_sdk_tool_loop_and_image_through_the_gateway(
    fake: Fake, start_gateway: Callable[..., GatewayProcess]
) -> None:
    config = {
        "models": [
            {
                "name": "claude",
                "deployments": [
                    {
                        "id": "claude-1",
                        "provider": "anthropic",
                        "model": "claude-x",
                        "base_url": fake.url,
                        "api_key": "test",
                    }
                ],
            }
        ],
        "keys": [{"name": "test", "key": "os.environ/TEST_KEY"}],
    }
    gateway = start_gateway(config)
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url + "/v1", api_key=TEST_KEY, max_retries=0
    ) as client:
        await sdk_tool_loop(client, stream=False)
        await sdk_tool_loop(client, stream=True)
        image = f"data:image/png;base64,{PNG}"
        content: Any = [
            {"type": "text", "text": "What?"},
            {"type": "image_url", "image_url": {"url": image}},
        ]
        seen = await client.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": content}]
        )
    assert seen.choices[0].message.content == "I see a image/png image of 32 bytes"
    assert fake.requests[-1]["headers"]["x-api-key"] == "test"


async def sdk_tool_loop(client: openai.AsyncOpenAI, stream: bool) -> None:
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    tools: Any = [WEATHER]
    if stream:
        chunks = await client.chat.completions.create(
            model="claude", messages=messages, tools=tools, stream=True
        )
        calls: dict[int, dict[str, str]] = {}
        reason = None
        async for chunk in chunks:
            choice = chunk.choices[0]
            reason = choice.finish_reason or reason
            for part in choice.delta.tool_calls or []:
                call = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += part.id or ""
                assert part.function is not None
                call["name"] += part.function.name or ""
                call["arguments"] += part.function.arguments or ""
        assert reason == "tool_calls"
        found = [(c["id"], c["name"], c["arguments"]) for c in calls.values()]
    else:
        answer = await client.chat.completions.create(
            model="claude", messages=messages, tools=tools
        )
        assert answer.choices[0].finish_reason == "tool_calls"
        found = [
            (c.id, c.function.name, c.function.arguments)
            for c in answer.choices[0].message.tool_calls or []
            if c.type == "function"
        ]
    assert [(name, orjson.loads(args)) for _, name, args in found] == [
        ("weather", {"city": "Paris", "days": 3})
    ]
    call_id, name, arguments = found[0]
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "22 C and sunny"},
    ]
    final = await client.chat.completions.create(model="claude", messages=messages, tools=tools)
    assert final.choices[0].message.content == "Tool said: 22 C and sunny"
    assert final.choices[0].finish_reason == "stop"


def test_a_server_tool_input_that_is_not_json_is_an_upstream_error() -> None:
    translator = StreamTranslator("m", include_usage=False)
    call = {"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {}}
    translator.feed({"type": "message_start", "message": message([], "")})
    translator.feed({"type": "content_block_start", "index": 0, "content_block": call})
    piece = {"type": "input_json_delta", "partial_json": '{"query": '}
    translator.feed({"type": "content_block_delta", "index": 0, "delta": piece})
    with pytest.raises(ShapeError):
        translator.feed({"type": "content_block_stop", "index": 0})


def test_a_stop_sequence_anthropic_names_is_the_choices_stop_reason() -> None:
    answer = message([{"type": "text", "text": "One, two"}], "stop_sequence")
    answer["stop_sequence"] = ", three"
    choice = completion(answer, "m", None, None)["choices"][0]
    assert (choice["finish_reason"], choice["stop_reason"]) == ("stop", ", three")
