"""The Gemini adapter's full translation (tools, images, structured output,
reasoning, errors) against the contract fake (tests/support/fake_gemini.py),
and the official ``openai`` SDK through a live gateway in front of it."""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from aiohttp import web
from pydantic import BaseModel

from interlock.config import DeploymentConfig, Secret
from interlock.errors import InvalidRequest, UpstreamStatusError
from interlock.providers.base import CallContext
from interlock.providers.gemini import GeminiProvider
from interlock.providers.gemini_response import completion
from interlock.providers.gemini_wire import SIGNATURE_SEPARATOR, split_call_id, with_signature
from tests.conftest import TEST_KEY
from tests.support.fake_gemini import SIGNATURE, gemini_app
from tests.support.servers import FakeUpstream, GatewayProcess

CTX = CallContext(request_id="req_fidelity", public_model="gemini")
MODEL = "gemini-2.5-flash"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(32))
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather now",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "days": {"type": "integer"},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
TOOLS = [WEATHER, CLOCK]
DECLARATIONS = [
    {
        "name": "get_weather",
        "description": "Weather now",
        "parameters": {
            "type": "OBJECT",
            "properties": {
                "city": {"type": "STRING", "description": "City name"},
                "days": {"type": "INTEGER"},
            },
            "propertyOrdering": ["city", "days"],
            "required": ["city"],
        },
    },
    {"name": "get_time"},
]
WEATHER_ARGS = '{"city":"Paris","days":3}'


def user(*parts: Any) -> dict[str, Any]:
    content = parts[0] if len(parts) == 1 and isinstance(parts[0], str) else list(parts)
    return {"role": "user", "content": content}


@dataclass
class Fake:
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last(self) -> dict[str, Any]:
        body: dict[str, Any] = self.requests[-1]["body"]
        return body


Connect = Callable[..., Awaitable[GeminiProvider]]


@pytest.fixture
def fake(fake_upstream: Callable[[web.Application], FakeUpstream]) -> Fake:
    requests: list[dict[str, Any]] = []
    return Fake(fake_upstream(gemini_app(requests)).url, requests)


@pytest.fixture
async def connect(fake: Fake) -> AsyncIterator[Connect]:
    started: list[GeminiProvider] = []

    async def start(**overrides: Any) -> GeminiProvider:
        settings: dict[str, Any] = {
            "id": "gemini-1",
            "provider": "gemini",
            "model": MODEL,
            "base_url": fake.url,
            "api_key": Secret("test"),
            **overrides,
        }
        provider = GeminiProvider(DeploymentConfig(**settings))
        await provider.start()
        started.append(provider)
        return provider

    yield start
    for provider in started:
        await provider.aclose()


@pytest.fixture
async def provider(connect: Connect) -> GeminiProvider:
    return await connect()


async def collect(provider: GeminiProvider, body: dict[str, Any]) -> list[dict[str, Any]]:
    body = {"model": "gemini", "stream": True, **body}
    return [orjson.loads(chunk) async for chunk in provider.stream_chat(body, CTX)]


def deltas(chunks: list[dict[str, Any]], index: int = 0) -> list[dict[str, Any]]:
    return [c["delta"] for chunk in chunks for c in chunk["choices"] if c["index"] == index]


def joined(chunks: list[dict[str, Any]], key: str) -> str:
    return "".join(d.get(key) or "" for d in deltas(chunks))


# -- tools -------------------------------------------------------------------------


async def test_tools_are_declared_and_calls_come_back(provider: GeminiProvider, fake: Fake) -> None:
    result = await provider.chat({"messages": [user("Weather?")], "tools": TOOLS}, CTX)
    assert fake.last == {
        "contents": [{"role": "user", "parts": [{"text": "Weather?"}]}],
        "tools": [{"functionDeclarations": DECLARATIONS}],
    }
    assert fake.requests[-1]["path"] == f"/v1beta/models/{MODEL}:generateContent"
    choice = result["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    message = choice["message"]
    assert (message["content"], message["refusal"]) == (None, None)
    [call] = message["tool_calls"]
    assert call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": WEATHER_ARGS}
    assert call["id"].startswith("call_")
    assert call["id"].endswith(SIGNATURE_SEPARATOR + SIGNATURE)


@pytest.mark.parametrize(
    ("choice", "config", "called"),
    [
        ("auto", {"mode": "AUTO"}, "get_weather"),
        ("none", {"mode": "NONE"}, None),
        ("required", {"mode": "ANY"}, "get_weather"),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
            "get_time",
        ),
    ],
)
async def test_tool_choice_maps_to_function_calling_config(
    provider: GeminiProvider, fake: Fake, choice: Any, config: dict[str, Any], called: str | None
) -> None:
    body = {"messages": [user("Hi")], "tools": TOOLS, "tool_choice": choice}
    result = await provider.chat(body, CTX)
    assert fake.last["toolConfig"] == {"functionCallingConfig": config}
    calls = result["choices"][0]["message"].get("tool_calls") or []
    assert [c["function"]["name"] for c in calls] == ([called] if called else [])


async def test_legacy_functions_and_function_messages(provider: GeminiProvider, fake: Fake) -> None:
    functions = [t["function"] for t in TOOLS]
    first = await provider.chat(
        {"messages": [user("Hi")], "functions": functions, "function_call": {"name": "get_time"}},
        CTX,
    )
    assert fake.last["tools"] == [{"functionDeclarations": DECLARATIONS}]
    assert fake.last["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}
    }
    [call] = first["choices"][0]["message"]["tool_calls"]
    history = [
        user("Hi"),
        {"role": "assistant", "content": None, "function_call": call["function"]},
        {"role": "function", "name": "get_time", "content": "noon"},
    ]
    second = await provider.chat({"messages": history, "functions": functions}, CTX)
    assert fake.last["contents"][1:] == [
        {"role": "model", "parts": [{"functionCall": {"name": "get_time", "args": {}}}]},
        {
            "role": "user",
            "parts": [{"functionResponse": {"name": "get_time", "response": {"result": "noon"}}}],
        },
    ]
    assert second["choices"][0]["message"]["content"] == "Tool said: noon"


async def test_tool_loop_sends_calls_results_and_signatures_back(
    provider: GeminiProvider, fake: Fake
) -> None:
    messages = [user("Weather and time, in parallel")]
    first = await provider.chat({"messages": messages, "tools": TOOLS}, CTX)
    message = first["choices"][0]["message"]
    signed, unsigned = message["tool_calls"]
    assert split_call_id(signed["id"])[1] == SIGNATURE
    assert split_call_id(unsigned["id"]) == (unsigned["id"], None)  # Gemini signs the first only
    messages += [
        {"role": "assistant", "content": "Checking.", "tool_calls": message["tool_calls"]},
        {"role": "tool", "tool_call_id": signed["id"], "content": '{"temp": 21}'},
        {
            "role": "tool",
            "tool_call_id": unsigned["id"],
            "content": [{"type": "text", "text": "noon"}],
        },
    ]
    second = await provider.chat({"messages": messages, "tools": TOOLS}, CTX)
    assert fake.last["contents"] == [
        {"role": "user", "parts": [{"text": "Weather and time, in parallel"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Checking."},
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris", "days": 3}},
                    "thoughtSignature": SIGNATURE,
                },
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"temp": 21}}},
                {"functionResponse": {"name": "get_time", "response": {"result": "noon"}}},
            ],
        },
    ]
    answer = second["choices"][0]
    assert answer["message"]["content"] == 'Tool said: {"temp":21}; noon'
    assert answer["finish_reason"] == "stop"


async def test_stream_tool_calls_open_then_carry_whole_arguments(
    provider: GeminiProvider, fake: Fake
) -> None:
    chunks = await collect(provider, {"messages": [user("Both, in parallel")], "tools": TOOLS})
    assert fake.requests[-1]["path"] == f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    first, second = (
        d["tool_calls"][0]["id"] for d in deltas(chunks) if d.get("tool_calls", [{}])[0].get("id")
    )
    assert split_call_id(first)[1] == SIGNATURE and first != second
    assert [c["choices"][0] for c in chunks] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
         "finish_reason": None},
        {"index": 0, "logprobs": None, "finish_reason": None, "delta": {"tool_calls": [
            {"index": 0, "id": first, "type": "function",
             "function": {"name": "get_weather", "arguments": ""}}]}},
        {"index": 0, "logprobs": None, "finish_reason": None, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": WEATHER_ARGS}}]}},
        {"index": 0, "logprobs": None, "finish_reason": None, "delta": {"tool_calls": [
            {"index": 1, "id": second, "type": "function",
             "function": {"name": "get_time", "arguments": ""}}]}},
        {"index": 0, "logprobs": None, "finish_reason": None, "delta": {"tool_calls": [
            {"index": 1, "function": {"arguments": "{}"}}]}},
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"},
    ]  # fmt: skip


async def test_stream_tool_call_indexes_count_per_candidate(provider: GeminiProvider) -> None:
    chunks = await collect(provider, {"messages": [user("parallel")], "tools": TOOLS, "n": 2})
    for candidate in (0, 1):
        opened = [
            (d["tool_calls"][0]["index"], d["tool_calls"][0]["function"]["name"])
            for d in deltas(chunks, candidate)
            if "tool_calls" in d and "id" in d["tool_calls"][0]
        ]
        assert opened == [(0, "get_weather"), (1, "get_time")]
    finishes = [c for chunk in chunks for c in chunk["choices"] if c["finish_reason"]]
    assert sorted((c["index"], c["finish_reason"]) for c in finishes) == [
        (0, "tool_calls"),
        (1, "tool_calls"),
    ]


# -- parameters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("parallel_tool_calls", False),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("logit_bias", {"1": 2}),
    ],
)
async def test_unsupported_parameters_are_refused_unless_dropped(
    connect: Connect, fake: Fake, param: str, value: Any
) -> None:
    body = {"messages": [user("Hi")], "tools": TOOLS, "tool_choice": "none", param: value}
    strict = await connect()
    with pytest.raises(InvalidRequest) as caught:
        await strict.chat(body, CTX)
    assert (caught.value.param, caught.value.code) == (param, "unsupported_parameter")
    assert "drop_params" in caught.value.message
    assert fake.requests == []
    lenient = await connect(drop_params=[param])
    result = await lenient.chat(body, CTX)
    assert result["choices"][0]["message"]["content"] == "Hello from gemini"
    assert param not in orjson.dumps(fake.last).decode()


# -- images ------------------------------------------------------------------------


async def test_data_url_image_is_sent_inline(provider: GeminiProvider, fake: Fake) -> None:
    image = {"type": "image_url", "image_url": {"url": PNG_URL, "detail": "high"}}
    result = await provider.chat(
        {"messages": [user({"type": "text", "text": "What?"}, image)]}, CTX
    )
    assert fake.last["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "What?"},
                {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}},
            ],
        }
    ]
    assert (
        result["choices"][0]["message"]["content"] == f"I see a image/png image of {len(PNG)} bytes"
    )


def image_server(hits: list[str]) -> web.Application:
    async def serve(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=PNG, content_type="image/png")

    app = web.Application()
    app.router.add_get("/cat.png", serve)
    return app


async def test_image_url_from_an_allowed_host_is_fetched_and_inlined(
    connect: Connect, fake: Fake, fake_upstream: Callable[[web.Application], FakeUpstream]
) -> None:
    hits: list[str] = []
    images = fake_upstream(image_server(hits))
    provider = await connect(fetch_images_from=[f"127.0.0.1:{images.port}"])
    image = {"type": "image_url", "image_url": {"url": f"{images.url}/cat.png"}}
    chunks = await collect(provider, {"messages": [user({"type": "text", "text": "See"}, image)]})
    assert hits == ["/cat.png"]
    inline = fake.last["contents"][0]["parts"][1]
    assert inline == {
        "inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}
    }
    assert joined(chunks, "content") == f"I see a image/png image of {len(PNG)} bytes"
    assert "x-goog-api-key" in fake.requests[-1]["headers"]


@pytest.mark.parametrize("allowed", [[], ["images.example.com"]])
async def test_image_url_from_another_host_is_refused_without_connecting(
    connect: Connect,
    fake: Fake,
    fake_upstream: Callable[[web.Application], FakeUpstream],
    allowed: list[str],
) -> None:
    hits: list[str] = []
    images = fake_upstream(image_server(hits))
    provider = await connect(fetch_images_from=allowed)
    image = {"type": "image_url", "image_url": {"url": f"{images.url}/cat.png"}}
    body = {"messages": [user({"type": "text", "text": "See"}, image)]}
    for call in (provider.chat(body, CTX), collect(provider, body)):
        with pytest.raises(InvalidRequest) as caught:
            await call
        assert caught.value.param == "messages[0].content[1].image_url.url"
        assert caught.value.code == "image_url_not_allowed"
    assert hits == []
    assert fake.requests == []


# -- structured output ------------------------------------------------------------------


class Unit(enum.StrEnum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Place(BaseModel):
    city: str
    country: str | None


class Report(BaseModel):
    place: Place
    unit: Unit
    high: float
    days: int
    sunny: bool
    notes: list[str]


REPORT = Report(
    place=Place(city="Paris", country="Paris"),
    unit=Unit.CELSIUS,
    high=1.5,
    days=3,
    sunny=True,
    notes=[],
)


async def test_json_object_response_format(provider: GeminiProvider, fake: Fake) -> None:
    body = {"messages": [user("JSON please")], "response_format": {"type": "json_object"}}
    result = await provider.chat(body, CTX)
    assert fake.last["generationConfig"] == {"responseMimeType": "application/json"}
    assert json.loads(result["choices"][0]["message"]["content"]) == {"answer": "Paris"}


async def test_json_schema_response_format_sends_the_converted_schema(
    provider: GeminiProvider, fake: Fake
) -> None:
    schema = Report.model_json_schema()
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "report", "schema": schema, "strict": True},
    }
    chunks = await collect(
        provider, {"messages": [user("Report")], "response_format": response_format}
    )
    place = {
        "type": "OBJECT",
        "title": "Place",
        "properties": {
            "city": {"type": "STRING", "title": "City"},
            "country": {"type": "STRING", "title": "Country", "nullable": True},
        },
        "propertyOrdering": ["city", "country"],
        "required": ["city", "country"],
    }
    assert fake.last["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "title": "Report",
            "properties": {
                "place": place,
                "unit": {"type": "STRING", "title": "Unit", "enum": ["celsius", "fahrenheit"]},
                "high": {"type": "NUMBER", "title": "High"},
                "days": {"type": "INTEGER", "title": "Days"},
                "sunny": {"type": "BOOLEAN", "title": "Sunny"},
                "notes": {"type": "ARRAY", "title": "Notes", "items": {"type": "STRING"}},
            },
            "propertyOrdering": ["place", "unit", "high", "days", "sunny", "notes"],
            "required": ["place", "unit", "high", "days", "sunny", "notes"],
        },
    }
    assert Report.model_validate_json(joined(chunks, "content")) == REPORT


async def test_recursive_json_schema_is_refused(provider: GeminiProvider, fake: Fake) -> None:
    schema = {
        "type": "object",
        "properties": {"next": {"$ref": "#/$defs/Node"}},
        "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
    }
    body = {
        "messages": [user("Loop")],
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
    }
    with pytest.raises(InvalidRequest) as caught:
        await provider.chat(body, CTX)
    assert caught.value.param == "response_format"
    assert fake.requests == []


# -- reasoning ---------------------------------------------------------------------------


async def test_reasoning_effort_sets_thinking_and_returns_reasoning(
    provider: GeminiProvider, fake: Fake
) -> None:
    result = await provider.chat({"messages": [user("Think")], "reasoning_effort": "low"}, CTX)
    assert fake.last["generationConfig"] == {
        "thinkingConfig": {"thinkingBudget": 1024, "includeThoughts": True}
    }
    assert result["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Hello from gemini",
        "refusal": None,
        "reasoning_content": "Let me think.",
    }
    assert result["usage"]["completion_tokens_details"] == {"reasoning_tokens": 4}


async def test_streamed_reasoning_comes_before_the_answer(provider: GeminiProvider) -> None:
    body = {
        "messages": [user("Think")],
        "reasoning_effort": "high",
        "stream_options": {"include_usage": True},
    }
    chunks = await collect(provider, body)
    kinds = [next(iter(d)) for d in deltas(chunks)[1:] if d]
    assert kinds == ["reasoning_content"] * 3 + ["content"] * 3
    assert joined(chunks, "reasoning_content") == "Let me think."
    assert joined(chunks, "content") == "Hello from gemini"
    assert chunks[-1]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 4}


async def test_reasoning_effort_none_turns_thinking_off(
    provider: GeminiProvider, fake: Fake
) -> None:
    result = await provider.chat({"messages": [user("Quick")], "reasoning_effort": "none"}, CTX)
    assert fake.last["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 0}}
    assert "reasoning_content" not in result["choices"][0]["message"]
    assert "completion_tokens_details" not in result["usage"]


# -- answers and errors ------------------------------------------------------------------


async def test_plain_text_streams_in_pieces_with_usage(provider: GeminiProvider) -> None:
    chunks = await collect(
        provider, {"messages": [user("Hi")], "stream_options": {"include_usage": True}}
    )
    pieces = [d["content"] for d in deltas(chunks) if d.get("content")]
    assert len(pieces) >= 3 and "".join(pieces) == "Hello from gemini"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    usage = chunks[-1]["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("text", "status", "code"),
    [("overload me", 503, "upstream_overloaded"), ("rate limit me", 429, "upstream_429")],
)
async def test_overload_and_rate_limit_keep_their_status(
    provider: GeminiProvider, stream: bool, text: str, status: int, code: str
) -> None:
    body = {"messages": [user(text)]}
    with pytest.raises(UpstreamStatusError) as caught:
        await (collect(provider, body) if stream else provider.chat(body, CTX))
    assert (caught.value.status_code, caught.value.code) == (status, code)


@pytest.mark.parametrize(
    ("status", "expected"), [("RESOURCE_EXHAUSTED", 429), ("UNAVAILABLE", 503), ("INTERNAL", 502)]
)
async def test_error_object_mid_stream_keeps_its_status(
    provider: GeminiProvider, status: str, expected: int
) -> None:
    received = []
    with pytest.raises(UpstreamStatusError) as caught:
        body = {"model": "gemini", "messages": [user(f"stream error {status}")]}
        async for chunk in provider.stream_chat(body, CTX):
            received.append(chunk)
    assert caught.value.status_code == expected
    assert caught.value.message.startswith("upstream reported an error mid-stream")
    assert received  # the words before the error went out


async def test_missing_api_key_is_the_gateways_problem(connect: Connect) -> None:
    provider = await connect(api_key=None)
    with pytest.raises(UpstreamStatusError) as caught:
        await provider.chat({"messages": [user("Hi")]}, CTX)
    assert (caught.value.upstream_status, caught.value.status_code) == (403, 502)


def candidate_with(parts: list[dict[str, Any]], reason: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
    if reason is not None:
        out["finishReason"] = reason
    return out


CALL_PART = {"functionCall": {"name": "f", "args": {}}}


@pytest.mark.parametrize(
    ("parts", "reason", "finish"),
    [
        ([{"text": "x"}], "STOP", "stop"),
        ([CALL_PART], "STOP", "tool_calls"),
        ([CALL_PART], None, "tool_calls"),
        ([{"text": "x"}], "MAX_TOKENS", "length"),
        *[
            ([{"text": "x"}], reason, "content_filter")
            for reason in (
                "SAFETY",
                "RECITATION",
                "BLOCKLIST",
                "PROHIBITED_CONTENT",
                "SPII",
                "IMAGE_SAFETY",
                "LANGUAGE",
            )
        ],
        *[
            ([{"text": "x"}], reason, "stop")
            for reason in ("MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "OTHER", "NEW_ONE")
        ],
    ],
)
def test_finish_reason_table(parts: list[dict[str, Any]], reason: str | None, finish: str) -> None:
    result = completion({"candidates": [candidate_with(parts, reason)]}, 1, MODEL)
    assert result["choices"][0]["finish_reason"] == finish


def test_function_call_id_from_gemini_is_kept() -> None:
    part = {
        "functionCall": {"id": "fc-7", "name": "f", "args": {"a": 1}},
        "thoughtSignature": "c2ln",
    }
    result = completion({"candidates": [candidate_with([part], "STOP")]}, 1, MODEL)
    [call] = result["choices"][0]["message"]["tool_calls"]
    assert call["id"] == "fc-7.ts.c2ln"
    assert call["function"] == {"name": "f", "arguments": '{"a":1}'}


@pytest.mark.parametrize(
    ("call_id", "signature", "encoded"),
    [
        ("call_ab", "Zm9v+/8=", "call_ab.ts.Zm9v+/8="),
        ("call_ab", "Zm9v-_8", "call_ab.ts.Zm9v-_8"),
        ("call_ab", None, "call_ab"),
        ("call_ab", "not base64!", "call_ab"),
    ],
)
def test_thought_signature_rides_in_the_call_id(
    call_id: str, signature: str | None, encoded: str
) -> None:
    assert with_signature(call_id, signature) == encoded
    assert split_call_id(encoded) == (call_id, signature if encoded != call_id else None)


@pytest.mark.parametrize("call_id", ["call.ts.not base64", ".ts.abc", "x.ts."])
def test_ids_that_only_look_signed_are_left_alone(call_id: str) -> None:
    assert split_call_id(call_id) == (call_id, None)


# -- the fake refuses what Gemini refuses ------------------------------------------------------

CALL_TURN = {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]}


def response_turn(*names: str) -> dict[str, Any]:
    parts = [{"functionResponse": {"name": n, "response": {"result": "ok"}}} for n in names]
    return {"role": "user", "parts": parts}


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"contents": [{"role": "user", "parts": [{"text": "a"}]}]}, 403, "unregistered callers"),
        (
            {"contents": [{"role": "user", "parts": [{"text": "a"}]}] * 2},
            400,
            "alternate between user and model",
        ),
        ({"contents": [{"role": "user", "parts": [{"text": "a"}]}, CALL_TURN]}, 400, "ends with"),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "a"}]},
                    CALL_TURN,
                    response_turn("g"),
                ]
            },
            400,
            "no functionCall used",
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "a"}]},
                    CALL_TURN,
                    response_turn("f", "f"),
                ]
            },
            400,
            "number of function response parts",
        ),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "a"}]},
                    {
                        "role": "model",
                        "parts": [{**CALL_TURN["parts"][0], "thoughtSignature": "eA=="}],
                    },
                    response_turn("f"),
                ]
            },
            400,
            "Thought signature is not valid",
        ),
        (
            {
                "contents": [{"role": "user", "parts": [{"text": "a"}]}],
                "generationConfig": {
                    "responseSchema": {"type": "OBJECT", "additionalProperties": False}
                },
            },
            400,
            "additionalProperties",
        ),
        (
            {
                "contents": [{"role": "user", "parts": [{"text": "a"}]}],
                "generationConfig": {"topk": 3},
            },
            400,
            "topk",
        ),
    ],
)
async def test_fake_refuses_what_gemini_refuses(
    fake: Fake, body: dict[str, Any], status: int, words: str
) -> None:
    headers = {} if status == 403 else {"x-goog-api-key": "test"}
    async with httpx.AsyncClient(base_url=fake.url) as client:
        response = await client.post(
            f"/v1beta/models/{MODEL}:generateContent", json=body, headers=headers
        )
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == status
    assert error["status"] == ("PERMISSION_DENIED" if status == 403 else "INVALID_ARGUMENT")
    assert words in error["message"]


# -- the openai SDK through a live gateway -----------------------------------------------------


@dataclass
class Gateway:
    process: GatewayProcess
    requests: list[dict[str, Any]]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    requests: list[dict[str, Any]] = []
    with FakeUpstream(gemini_app(requests)) as upstream:
        deployment = {
            "id": "gemini-1",
            "provider": "gemini",
            "model": MODEL,
            "base_url": upstream.url,
            "api_key": "test",
        }
        config = {
            "models": [{"name": "gemini", "deployments": [deployment]}],
            "keys": [{"name": "test", "key": "os.environ/TEST_KEY"}],
        }
        tmp_path: Path = tmp_path_factory.mktemp("gemini-gateway")
        process = GatewayProcess(config, tmp_path, env={"TEST_KEY": TEST_KEY})
        try:
            yield Gateway(process, requests)
        finally:
            process.close()


@pytest.fixture
async def client(gateway: Gateway) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.process.base_url + "/v1", api_key=TEST_KEY, max_retries=0
    ) as client:
        yield client


SDK_TOOLS: Any = [WEATHER]


async def test_sdk_tool_loop(client: openai.AsyncOpenAI, gateway: Gateway) -> None:
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = await client.chat.completions.create(model="gemini", messages=messages, tools=SDK_TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    assert (call.function.name, json.loads(call.function.arguments)) == (
        "get_weather",
        {"city": "Paris", "days": 3},
    )
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "22 degrees"},
    ]
    second = await client.chat.completions.create(
        model="gemini", messages=messages, tools=SDK_TOOLS
    )
    assert second.choices[0].message.content == "Tool said: 22 degrees"
    assert second.choices[0].finish_reason == "stop"
    model_turn = gateway.requests[-1]["body"]["contents"][1]
    assert model_turn["parts"][0]["thoughtSignature"] == SIGNATURE


async def test_sdk_streamed_tool_loop(client: openai.AsyncOpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    stream = await client.chat.completions.create(
        model="gemini", messages=messages, tools=SDK_TOOLS, stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                call["id"] += delta.id or ""
                call["name"] += (delta.function and delta.function.name) or ""
                call["arguments"] += (delta.function and delta.function.arguments) or ""
    assert finish == "tool_calls"
    [call] = calls.values()
    assert (call["name"], json.loads(call["arguments"])) == (
        "get_weather",
        {"city": "Paris", "days": 3},
    )
    messages += [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": "22 degrees"},
    ]
    stream = await client.chat.completions.create(
        model="gemini", messages=messages, tools=SDK_TOOLS, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Tool said: 22 degrees"


async def test_sdk_parse_with_a_pydantic_model(
    client: openai.AsyncOpenAI, gateway: Gateway
) -> None:
    result = await client.chat.completions.parse(
        model="gemini", messages=[{"role": "user", "content": "Report"}], response_format=Report
    )
    assert result.choices[0].message.parsed == REPORT
    config = gateway.requests[-1]["body"]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"]["properties"]["place"]["properties"]["country"] == {
        "type": "STRING",
        "title": "Country",
        "nullable": True,
    }
