"""The official ``openai`` SDK, unchanged, runs the same agent workloads
through every translating adapter: multi-turn tool loops (plain, streamed,
parallel), structured output parsed into a pydantic model, and images.

One gateway process serves one model per provider, each in front of a fake
server speaking that vendor's documented wire format (``tests/support``);
the fakes answer by one shared contract (call the first tool with
arguments generated from its schema, "Tool said: ..." after tool results,
JSON from the schema), so one test body checks them all.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from tests.conftest import TEST_KEY
from tests.support.fake_azure import CUSTOM_INPUT
from tests.support.provider_fleet import provider_gateway
from tests.support.servers import GatewayProcess

TRANSLATED = ["claude", "gemini", "bedrock"]
EVERY = [*TRANSLATED, "azure", "sim"]

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The local time in a city, with a UTC offset.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "offset": {"type": "integer"}},
            "required": ["city", "offset"],
        },
    },
}


# A custom (freeform) tool, as Codex's apply_patch: its input is text.
PATCH = {
    "type": "custom",
    "custom": {
        "name": "apply_patch",
        "description": "Edit files with a patch.",
        "format": {
            "type": "grammar",
            "grammar": {"syntax": "lark", "definition": 'start: "*** Begin Patch" /(.|\\n)+/'},
        },
    },
}
# Every provider takes it as a function of one string (the fakes answer
# "Paris" for a string); ``azure-native`` is sent it as it is, as OpenAI is.
CUSTOM = [*((model, "Paris") for model in EVERY), ("azure-native", CUSTOM_INPUT)]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    native = {"provider": "azure", "model": "gpt-5", "api_key": "test", "custom_tools": "native"}
    with provider_gateway(
        tmp_path_factory.mktemp("gw"), more_models={"azure-native": native}
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=gateway.base_url + "/v1", api_key=TEST_KEY, max_retries=0
    ) as client:
        yield client


def _assistant_turn(message: Any) -> dict[str, Any]:
    """The SDK's answer as the next request's history entry, as agents send it."""
    return message.model_dump(exclude_none=True, exclude={"refusal", "annotations", "audio"})


def _results(calls: list[dict[str, Any]], outputs: list[str]) -> list[dict[str, Any]]:
    return [
        {"role": "tool", "tool_call_id": call["id"], "content": output}
        for call, output in zip(calls, outputs, strict=True)
    ]


def _streamed(stream: Any) -> tuple[str, list[dict[str, Any]], str | None]:
    """Text, tool calls and finish reason put together from chunk deltas,
    as an agent framework does: calls by ``index``, arguments concatenated."""
    text, finish = "", None
    calls: dict[int, dict[str, Any]] = {}
    for chunk in stream:
        for choice in chunk.choices:
            delta = choice.delta
            text += delta.content or ""
            for piece in delta.tool_calls or []:
                call = calls.setdefault(
                    piece.index, {"id": None, "type": "function", "function": {}}
                )
                if piece.id:
                    assert call["id"] is None, "a call's id is sent once"
                    call["id"] = piece.id
                function = piece.function
                if function is not None and function.name:
                    assert "name" not in call["function"], "a call's name is sent once"
                    call["function"]["name"] = function.name
                if function is not None and function.arguments:
                    call["function"]["arguments"] = (
                        call["function"].get("arguments", "") + function.arguments
                    )
            finish = choice.finish_reason or finish
    return text, [calls[i] for i in sorted(calls)], finish


@pytest.mark.parametrize("model", EVERY)
def test_a_two_turn_tool_loop(client: openai.OpenAI, model: str) -> None:
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather"]
    assert calls[0].id and calls[0].type == "function"
    assert calls[0].function.arguments.replace(" ", "") == '{"city":"Paris"}'

    messages += [_assistant_turn(choice.message)]
    messages += _results([c.model_dump() for c in calls], ["18 degrees, sunny"])
    second = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "Tool said: 18 degrees, sunny"
    assert not second.choices[0].message.tool_calls


@pytest.mark.parametrize("model", EVERY)
def test_a_streamed_tool_loop(client: openai.OpenAI, model: str) -> None:
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    stream = client.chat.completions.create(
        model=model, messages=messages, tools=[WEATHER], stream=True
    )
    text, calls, finish = _streamed(stream)
    assert finish == "tool_calls"
    assert [c["function"]["name"] for c in calls] == ["get_weather"]
    assert calls[0]["function"]["arguments"].replace(" ", "") == '{"city":"Paris"}'

    messages += [{"role": "assistant", "content": text or None, "tool_calls": calls}]
    messages += _results(calls, ["18 degrees, sunny"])
    stream = client.chat.completions.create(
        model=model, messages=messages, tools=[WEATHER], stream=True
    )
    text, calls, finish = _streamed(stream)
    assert (text, calls, finish) == ("Tool said: 18 degrees, sunny", [], "stop")


@pytest.mark.parametrize("model", EVERY)
@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_parallel_tool_calls_come_back_apart(
    client: openai.OpenAI, model: str, stream: bool
) -> None:
    messages: list[Any] = [
        {"role": "user", "content": "Weather and time in Paris, both in parallel"}
    ]
    if stream:
        text, calls, finish = _streamed(
            client.chat.completions.create(
                model=model, messages=messages, tools=[WEATHER, TIME], stream=True
            )
        )
    else:
        answer = client.chat.completions.create(
            model=model, messages=messages, tools=[WEATHER, TIME]
        )
        finish, text = answer.choices[0].finish_reason, answer.choices[0].message.content or ""
        calls = [c.model_dump() for c in answer.choices[0].message.tool_calls or []]
    assert finish == "tool_calls"
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert len({c["id"] for c in calls}) == 2
    assert calls[1]["function"]["arguments"].replace(" ", "") == '{"city":"Paris","offset":3}'

    messages += [{"role": "assistant", "content": text or None, "tool_calls": calls}]
    messages += _results(calls, ["sunny", "noon"])
    final = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER, TIME])
    assert final.choices[0].message.content == "Tool said: sunny; noon"


@pytest.mark.parametrize(("model", "expected"), CUSTOM)
def test_a_custom_tool_loop(client: openai.OpenAI, model: str, expected: str) -> None:
    messages: list[Any] = [{"role": "user", "content": "Add a.py"}]
    first = client.chat.completions.create(model=model, messages=messages, tools=[PATCH])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.type == "custom" and call.id
    assert (call.custom.name, call.custom.input) == ("apply_patch", expected)

    messages += [_assistant_turn(choice.message)]
    messages += _results([call.model_dump()], ["patched"])
    second = client.chat.completions.create(model=model, messages=messages, tools=[PATCH])
    assert second.choices[0].message.content == "Tool said: patched"


@pytest.mark.parametrize(("model", "expected"), CUSTOM)
def test_a_streamed_custom_tool_call(client: openai.OpenAI, model: str, expected: str) -> None:
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Add a.py"}], tools=[PATCH], stream=True
    )
    pieces, finish = [], None
    for chunk in stream:
        for choice in chunk.choices:
            for piece in choice.delta.tool_calls or []:
                assert piece.function is None  # the SDK types custom pieces loosely
                pieces.append(piece.model_dump(exclude_none=True))
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    opened = pieces[0]
    assert opened["type"] == "custom" and opened["id"]
    assert opened["custom"]["name"] == "apply_patch"
    assert "".join(piece["custom"].get("input", "") for piece in pieces) == expected


@pytest.mark.parametrize("model", EVERY)
@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_parallel_tool_calls_false_means_one_call_a_turn(
    client: openai.OpenAI, model: str, stream: bool
) -> None:
    """Gemini and Bedrock cannot be told; the gateway keeps the first call."""
    messages: Any = [{"role": "user", "content": "Weather and time in Paris, both in parallel"}]
    asked: Any = {
        "model": model,
        "messages": messages,
        "tools": [WEATHER, TIME],
        "parallel_tool_calls": False,
    }
    if stream:
        _, calls, finish = _streamed(client.chat.completions.create(**asked, stream=True))
    else:
        answer = client.chat.completions.create(**asked)
        finish = answer.choices[0].finish_reason
        calls = [c.model_dump() for c in answer.choices[0].message.tool_calls or []]
    assert finish == "tool_calls"
    assert [c["function"]["name"] for c in calls] == ["get_weather"]


class Forecast(BaseModel):
    city: str
    days: int
    rain: bool


@pytest.mark.parametrize("model", EVERY)
def test_structured_output_parses_into_the_callers_model(client: openai.OpenAI, model: str) -> None:
    completion = client.chat.completions.parse(
        model=model,
        messages=[{"role": "user", "content": "Forecast for Paris"}],
        response_format=Forecast,
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.parsed == Forecast(city="Paris", days=3, rain=True)


def _png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("model", [*TRANSLATED, "azure"])
def test_an_inline_image_reaches_the_model(client: openai.OpenAI, model: str) -> None:
    image = _png(4, 4)
    url = "data:image/png;base64," + base64.b64encode(image).decode()
    answer = client.chat.completions.create(
        model=model,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": url}},
                ],
            }
        ],
    )
    assert answer.choices[0].message.content == f"I see a image/png image of {len(image)} bytes"


PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.mark.parametrize("model", [*TRANSLATED, "azure"])
@pytest.mark.parametrize(("media_type", "data"), [("application/pdf", PDF), ("text/plain", b"a\n")])
def test_a_document_reaches_the_model(
    client: openai.OpenAI, model: str, media_type: str, data: bytes
) -> None:
    file_data = f"data:{media_type};base64,{base64.b64encode(data).decode()}"
    answer = client.chat.completions.create(
        model=model,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "file", "file": {"file_data": file_data, "filename": "a b.pdf"}},
                    {"type": "text", "text": "Summarise it."},
                ],
            }
        ],
    )
    assert (
        answer.choices[0].message.content == f"I read a {media_type} document of {len(data)} bytes"
    )


@pytest.mark.parametrize("model", TRANSLATED)
@pytest.mark.parametrize(
    ("file", "param"),
    [
        ({"file_data": "data:image/png;base64,iVBORw=="}, "file.file_data"),
        ({"file_data": "data:application/pdf;base64,not base64!"}, "file.file_data"),
    ],
)
def test_a_document_no_upstream_can_read_is_named(
    client: openai.OpenAI, model: str, file: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": [{"type": "file", "file": file}]}],  # type: ignore[list-item]
        )
    assert caught.value.body["param"] == f"messages[0].content[0].{param}"  # type: ignore[index]


@pytest.mark.parametrize("model", ["gemini", "bedrock"])
def test_an_image_url_is_refused_where_the_provider_takes_none(
    client: openai.OpenAI, model: str
) -> None:
    # Nothing is fetched: the deployments allow no host (fetch_images_from).
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=model,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "http://169.254.169.254/x.png"}}
                    ],
                }
            ],
        )
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == "messages[0].content[0].image_url.url"
    assert "data:" in error["message"]


@pytest.mark.parametrize("model", TRANSLATED)
def test_a_parameter_the_provider_cannot_honour_is_named_not_dropped(
    client: openai.OpenAI, model: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], logprobs=True
        )
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == "logprobs"
    assert "drop_params" in error["message"]
