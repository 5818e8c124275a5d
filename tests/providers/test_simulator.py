from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from interlock.config import DeploymentConfig
from interlock.errors import (
    InvalidRequest,
    UpstreamConnectionError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from interlock.providers.base import CallContext
from interlock.providers.simulator import SimulatorProvider
from interlock.tokens import EstimatingCounter

CTX = CallContext(request_id="req_t", public_model="sim")
BODY = {"model": "sim", "messages": [{"role": "user", "content": "hello there"}]}


class FakeSleep:
    """Records requested delays instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make(sleep: FakeSleep | None = None, **params: Any) -> SimulatorProvider:
    deployment = DeploymentConfig(id="sim-1", provider="simulator", params=params)
    return SimulatorProvider(
        deployment, EstimatingCounter(), sleep=sleep or FakeSleep(), rng=random.Random(1)
    )


async def collect(provider: SimulatorProvider, body: dict[str, Any]) -> list[dict[str, Any]]:
    return [orjson.loads(c) async for c in provider.stream_chat(body, CTX)]


async def test_same_seed_and_prompt_give_same_text() -> None:
    a = await make(seed=3).chat(BODY, CTX)
    b = await make(seed=3).chat(BODY, CTX)
    c = await make(seed=4).chat(BODY, CTX)
    other = await make(seed=3).chat({**BODY, "messages": [{"role": "user", "content": "x"}]}, CTX)
    text = a["choices"][0]["message"]["content"]
    assert text == b["choices"][0]["message"]["content"]
    assert text != c["choices"][0]["message"]["content"]
    assert text != other["choices"][0]["message"]["content"]
    assert a["system_fingerprint"] == "interlock-simulator"


async def test_max_tokens_caps_length_and_reports_length() -> None:
    result = await make(max_tokens=50).chat({**BODY, "max_tokens": 3}, CTX)
    assert len(result["choices"][0]["message"]["content"].split()) == 3
    assert result["choices"][0]["finish_reason"] == "length"


async def test_stop_sequence_truncates() -> None:
    full = (await make(max_tokens=20).chat(BODY, CTX))["choices"][0]["message"]["content"]
    word = full.split()[3]
    result = await make(max_tokens=20).chat({**BODY, "stop": [" " + word]}, CTX)
    assert result["choices"][0]["message"]["content"] == full[: full.find(" " + word)]
    assert result["choices"][0]["finish_reason"] == "stop"
    # Which sequence cut it, as vLLM reports it; an answer that ended by itself names none.
    assert result["choices"][0]["stop_reason"] == " " + word
    unstopped = await make(max_tokens=20).chat({**BODY, "stop": ["never said"]}, CTX)
    assert "stop_reason" not in unstopped["choices"][0]
    chunks = await collect(make(max_tokens=20), {**BODY, "stop": ["never said", " " + word]})
    closing = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert closing == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop",
                        "stop_reason": " " + word}]  # fmt: skip


async def test_stream_matches_unary_and_paces_with_injected_sleep() -> None:
    sleep = FakeSleep()
    provider = make(sleep, ttft_ms=100, tokens_per_s=10, max_tokens=5)
    body = {**BODY, "stream_options": {"include_usage": True}}
    chunks = await collect(provider, body)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    unary = await make(max_tokens=5).chat(BODY, CTX)
    assert text == unary["choices"][0]["message"]["content"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])
    tokens = len(text.split())
    assert sleep.delays[0] == pytest.approx(0.1)
    assert sleep.delays[1:] == [pytest.approx(0.1)] * (tokens - 1)


async def test_n_choices() -> None:
    result = await make().chat({**BODY, "n": 3}, CTX)
    assert [c["index"] for c in result["choices"]] == [0, 1, 2]
    chunks = await collect(make(), {**BODY, "n": 2})
    assert {c["choices"][0]["index"] for c in chunks} == {0, 1}


@pytest.mark.parametrize(
    ("kind", "error", "status"),
    [
        ("server_error", UpstreamStatusError, 502),
        ("rate_limit", UpstreamStatusError, 429),
        ("bad_request", UpstreamStatusError, 400),
        ("timeout", UpstreamTimeout, 504),
        ("connection", UpstreamConnectionError, 502),
    ],
)
async def test_error_kinds(kind: str, error: type[Exception], status: int) -> None:
    provider = make(error_rate=1.0, error_kind=kind)
    with pytest.raises(error) as info:
        await provider.chat(BODY, CTX)
    assert info.value.status_code == status
    assert provider.calls == 1 and provider.failures == 1


async def test_error_rate_is_a_probability() -> None:
    provider = make(error_rate=0.5)
    for _ in range(200):
        try:
            await provider.chat(BODY, CTX)
        except UpstreamStatusError:
            pass
    assert provider.calls == 200 and 60 < provider.failures < 140


async def test_mid_stream_cut() -> None:
    provider = make(cut_after_tokens=2, max_tokens=10)
    seen = []
    with pytest.raises(UpstreamConnectionError):
        async for chunk in provider.stream_chat(BODY, CTX):
            seen.append(orjson.loads(chunk))
    content = [c for c in seen if c["choices"][0]["delta"].get("content")]
    assert len(content) == 2


async def test_embeddings_are_deterministic_unit_vectors() -> None:
    provider = make(dimensions=16)
    body = {"model": "e", "input": ["a", "b", "a"]}
    result = await provider.embed(body, CTX)
    vectors = [d["embedding"] for d in result["data"]]
    assert len(vectors[0]) == 16 and vectors[0] == vectors[2] != vectors[1]
    assert sum(v * v for v in vectors[0]) == pytest.approx(1.0)
    assert (await provider.embed({"input": "a", "dimensions": 4}, CTX))["data"][0]["embedding"]
    tokens = await provider.embed({"input": [1, 2, 3]}, CTX)
    assert len(tokens["data"]) == 1


# -- tools, tool results and JSON output ---------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "ratio": {"type": "number"},
                "metric": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}},
                "extra": {"type": "object"},
            },
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
WEATHER_ARGS = '{"city":"Paris","days":3,"ratio":1.5,"metric":true,"tags":[],"extra":{}}'
TOOLS_BODY = {**BODY, "tools": [WEATHER, TIME]}


def asking(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "sim", "messages": [{"role": "user", "content": text}], **extra}


def stream_calls(chunks: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    """Streamed tool calls put together as the SDKs do: by ``index``."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for part in choice["delta"].get("tool_calls") or ():
                call = calls.setdefault(part["index"], {"arguments": ""})
                if "id" in part:
                    assert "id" not in call, "each call is opened once"
                    call["id"], call["name"] = part["id"], part["function"]["name"]
                call["arguments"] += part["function"]["arguments"]
    return calls


async def test_tools_answer_with_a_call_to_the_first_tool() -> None:
    result = await make().chat(TOOLS_BODY, CTX)
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert message["content"] is None and message["refusal"] is None
    [call] = message["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert int(call["id"][5:], 16) >= 0
    assert call["function"] == {"name": "get_weather", "arguments": WEATHER_ARGS}
    tokens = EstimatingCounter().count(WEATHER_ARGS)
    assert result["usage"]["completion_tokens"] == tokens


@pytest.mark.parametrize(
    ("choice", "called"),
    [
        ("auto", "get_weather"),
        ("required", "get_weather"),
        ({"type": "function", "function": {"name": "get_time"}}, "get_time"),
    ],
)
async def test_tool_choice_picks_the_tool(choice: Any, called: str) -> None:
    result = await make().chat({**TOOLS_BODY, "tool_choice": choice}, CTX)
    [call] = result["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == called


async def test_tool_choice_none_answers_plain_text() -> None:
    plain = await make().chat(BODY, CTX)
    result = await make().chat({**TOOLS_BODY, "tool_choice": "none"}, CTX)
    assert result["choices"][0]["message"] == plain["choices"][0]["message"]
    assert result["choices"][0]["finish_reason"] in {"stop", "length"}


async def test_parallel_asks_for_the_first_two_tools() -> None:
    body = asking("Check both, in parallel please.", tools=[WEATHER, TIME])
    result = await make().chat({**body, "tool_choice": "required"}, CTX)
    calls = result["choices"][0]["message"]["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert calls[0]["id"] != calls[1]["id"]
    assert calls[1]["function"]["arguments"] == '{"zone":"Paris"}'
    one = await make().chat({**body, "parallel_tool_calls": False}, CTX)
    assert len(one["choices"][0]["message"]["tool_calls"]) == 1


async def test_stream_opens_each_call_then_sends_its_arguments_in_pieces() -> None:
    chunks = await collect(make(), {**TOOLS_BODY, "stream_options": {"include_usage": True}})
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    pieces = [c for c in chunks if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
    opened = pieces[0]["choices"][0]["delta"]["tool_calls"][0]
    assert opened["function"] == {"name": "get_weather", "arguments": ""}
    assert len(pieces) >= 4  # opened, then at least three argument pieces
    assert stream_calls(chunks) == {
        0: {"id": opened["id"], "name": "get_weather", "arguments": WEATHER_ARGS}
    }
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    unary = await make().chat(TOOLS_BODY, CTX)
    assert chunks[-1]["usage"] == unary["usage"]


async def test_stream_interleaves_parallel_calls() -> None:
    chunks = await collect(make(), asking("parallel", tools=[WEATHER, TIME]))
    order = [
        c["choices"][0]["delta"]["tool_calls"][0]["index"]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert order[:4] == [0, 1, 0, 1]
    calls = stream_calls(chunks)
    assert calls[0]["arguments"] == WEATHER_ARGS
    assert calls[1] == {"id": calls[1]["id"], "name": "get_time", "arguments": '{"zone":"Paris"}'}


async def test_legacy_functions_answer_with_function_call() -> None:
    body = {**BODY, "functions": [WEATHER["function"]], "function_call": "auto"}
    result = await make().chat(body, CTX)
    choice = result["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["function_call"] == {"name": "get_weather", "arguments": WEATHER_ARGS}
    assert "tool_calls" not in choice["message"]
    chunks = await collect(make(), body)
    deltas = [c["choices"][0]["delta"].get("function_call") for c in chunks]
    calls = [d for d in deltas if d]
    assert calls[0] == {"name": "get_weather", "arguments": ""} and len(calls) >= 4
    assert "".join(d["arguments"] for d in calls) == WEATHER_ARGS
    assert chunks[-1]["choices"][0]["finish_reason"] == "function_call"
    off = await make().chat({**body, "function_call": "none"}, CTX)
    assert off["choices"][0]["message"]["content"]


async def test_tool_results_are_read_back() -> None:
    messages = [
        {"role": "user", "content": "weather and time?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_time"}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "noon"}]},
    ]
    body = {**TOOLS_BODY, "messages": messages}
    result = await make().chat(body, CTX)
    assert result["choices"][0]["message"]["content"] == "Tool said: sunny; noon"
    assert result["choices"][0]["finish_reason"] == "stop"
    chunks = await collect(make(), body)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "Tool said: sunny; noon"
    # A new question after the answer calls the tool again.
    later = [*messages, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "?"}]
    again = await make().chat({**body, "messages": later}, CTX)
    assert again["choices"][0]["finish_reason"] == "tool_calls"


async def test_json_object_answers_compact_json() -> None:
    body = {**BODY, "response_format": {"type": "json_object"}}
    result = await make().chat(body, CTX)
    assert result["choices"][0]["message"]["content"] == '{"answer":"Paris"}'
    chunks = await collect(make(), body)
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
    assert len(pieces) >= 3 and "".join(pieces) == '{"answer":"Paris"}'


async def test_json_schema_answers_json_generated_from_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"$ref": "#/$defs/City"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/Day"}},
            "notes": {"type": "array", "items": {"type": "string"}},
            "hint": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 10}]},
        },
        "$defs": {
            "City": {"type": "object", "properties": {"name": {"type": "string"}}},
            "Day": {"type": "object", "properties": {"warm": {"type": ["boolean", "null"]}}},
        },
    }
    body = {
        **BODY,
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": schema}},
    }
    result = await make().chat(body, CTX)
    content = result["choices"][0]["message"]["content"]
    assert content == (
        '{"city":{"name":"Paris"},"unit":"celsius","days":[{"warm":true}],"notes":[],"hint":10}'
    )
    assert result["usage"]["completion_tokens"] == EstimatingCounter().count(content)


async def test_recursive_schemas_end() -> None:
    schema = {
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {"next": {"$ref": "#/$defs/Node"}, "id": {"type": "integer"}},
            }
        },
        "$ref": "#/$defs/Node",
    }
    body = {**BODY, "response_format": {"type": "json_schema", "json_schema": {"schema": schema}}}
    content = (await make().chat(body, CTX))["choices"][0]["message"]["content"]
    depth = content.count('"next"')
    assert 1 < depth < 20 and content.startswith('{"next":{"next":')


async def test_tool_answers_keep_the_simulator_params() -> None:
    sleep = FakeSleep()
    chunks = await collect(make(sleep, ttft_ms=100, tokens_per_s=10), TOOLS_BODY)
    steps = len([c for c in chunks if "tool_calls" in c["choices"][0]["delta"]])
    assert sleep.delays == [pytest.approx(0.1)] * steps
    unary_sleep = FakeSleep()
    await make(unary_sleep, ttft_ms=100, tokens_per_s=10).chat(TOOLS_BODY, CTX)
    assert unary_sleep.delays == [pytest.approx(0.1 + 0.1 * steps)]
    with pytest.raises(UpstreamStatusError):
        await make(error_rate=1.0, error_kind="rate_limit").chat(TOOLS_BODY, CTX)
    seen = []
    with pytest.raises(UpstreamConnectionError):
        async for chunk in make(cut_after_tokens=2).stream_chat(TOOLS_BODY, CTX):
            seen.append(orjson.loads(chunk))
    assert len(seen) == 3  # the role chunk, the call opened, one argument piece


async def test_n_choices_each_get_the_calls() -> None:
    result = await make().chat({**TOOLS_BODY, "n": 2}, CTX)
    ids = [c["message"]["tool_calls"][0]["id"] for c in result["choices"]]
    assert len(set(ids)) == 2
    chunks = await collect(make(), {**TOOLS_BODY, "n": 2})
    finishes = [c["choices"][0] for c in chunks if c["choices"][0]["finish_reason"]]
    assert [(f["index"], f["finish_reason"]) for f in finishes] == [
        (0, "tool_calls"),
        (1, "tool_calls"),
    ]


async def test_malformed_tools_are_refused() -> None:
    with pytest.raises(InvalidRequest) as info:
        await make().chat({**BODY, "tools": [{"type": "function", "function": {}}]}, CTX)
    assert info.value.param == "tools[0].function.name"
    with pytest.raises(InvalidRequest):
        named = {"type": "function", "function": {"name": "nope"}}
        await make().chat({**TOOLS_BODY, "tool_choice": named}, CTX)


async def test_logprobs_give_each_token_its_entry_and_its_alternatives_in_order() -> None:
    asked = {**BODY, "logprobs": True, "top_logprobs": 3}
    answer = await make(max_tokens=8).chat(asked, CTX)
    choice = answer["choices"][0]
    entries = choice["logprobs"]["content"]
    assert "".join(e["token"] for e in entries) == choice["message"]["content"]
    for entry in entries:
        assert entry["logprob"] < 0 and entry["bytes"] == list(entry["token"].encode())
        top = entry["top_logprobs"]
        assert len(top) == 3 and top[0]["token"] == entry["token"]
        assert len({t["token"] for t in top}) == 3
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        assert top[0]["logprob"] == entry["logprob"]
    again = await make(max_tokens=8).chat(asked, CTX)
    assert again["choices"][0]["logprobs"] == choice["logprobs"]


async def test_logprobs_without_top_logprobs_list_no_alternatives_and_none_unasked() -> None:
    plain = await make().chat({**BODY, "logprobs": True}, CTX)
    assert all(e["top_logprobs"] == [] for e in plain["choices"][0]["logprobs"]["content"])
    assert (await make().chat(BODY, CTX))["choices"][0]["logprobs"] is None
    assert (await make().chat({**BODY, "logprobs": False}, CTX))["choices"][0]["logprobs"] is None


async def test_streamed_logprobs_match_the_unary_ones_delta_by_delta() -> None:
    asked = {**BODY, "logprobs": True, "top_logprobs": 2, "max_tokens": 6}
    unary = (await make().chat(asked, CTX))["choices"][0]["logprobs"]["content"]
    streamed = [
        (c["choices"][0]["delta"]["content"], c["choices"][0]["logprobs"])
        for c in await collect(make(), {**asked, "stream": True})
        if c["choices"] and c["choices"][0]["delta"].get("content")
    ]
    assert [logprobs["content"] for _, logprobs in streamed] == [[e] for e in unary]
    assert [text for text, _ in streamed] == [e["token"] for e in unary]
