"""Custom (freeform) tools sent to an upstream as functions, and their calls
read back as custom calls: the body, a whole answer, and a stream whose
argument JSON is cut anywhere."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import orjson
import pytest

from interlock.errors import InvalidRequest
from interlock.pipeline.custom_tools import (
    ArgumentInput,
    CustomCallChunks,
    as_custom_calls,
    as_functions,
    uses_custom_tools,
)

PATCH = {
    "type": "custom",
    "custom": {
        "name": "apply_patch",
        "description": "Edit files.",
        "format": {"type": "grammar", "grammar": {"syntax": "lark", "definition": "start: /.+/"}},
    },
}
WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
# What JSON escapes, and characters outside the BMP (a surrogate pair when escaped).
TEXT = '*** Begin Patch\n+print("a\\b")\t\u0007 é 😀 end'


def _body(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "Fix it"}], **extra}


def test_a_body_without_custom_tools_is_left_alone() -> None:
    assert not uses_custom_tools(_body())
    assert not uses_custom_tools(_body(tools=[WEATHER], tool_choice="auto"))


def test_custom_tools_become_functions_of_one_string() -> None:
    body = _body(
        tools=[WEATHER, PATCH], tool_choice={"type": "custom", "custom": {"name": "apply_patch"}}
    )
    before = copy.deepcopy(body)
    assert uses_custom_tools(body)
    sent, names = as_functions(body)
    assert body == before  # the client's body is not changed
    assert names == {"apply_patch"}
    assert sent["tools"][0] == WEATHER
    function = sent["tools"][1]["function"]
    assert sent["tools"][1]["type"] == "function" and function["name"] == "apply_patch"
    assert function["parameters"]["required"] == ["input"]
    assert function["parameters"]["properties"]["input"]["type"] == "string"
    # The grammar cannot bind a function's argument; the model reads it instead.
    assert function["description"].startswith("Edit files.")
    assert "Lark grammar" in function["description"]
    assert function["description"].endswith("start: /.+/")
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}


def test_custom_calls_in_the_history_are_sent_as_function_calls() -> None:
    call = {"id": "call_1", "type": "custom", "custom": {"name": "apply_patch", "input": TEXT}}
    body = _body()
    body["messages"] += [
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Done"},
    ]
    assert uses_custom_tools(body)  # even without the tool on offer any more
    sent, names = as_functions(body)
    assert names == frozenset()
    [replayed] = sent["messages"][1]["tool_calls"]
    assert replayed["id"] == "call_1" and replayed["type"] == "function"
    assert replayed["function"]["name"] == "apply_patch"
    assert json.loads(replayed["function"]["arguments"]) == {"input": TEXT}
    assert sent["messages"][0] is body["messages"][0]


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "custom"}]}, "tools[0].custom.name"),
        ({"tools": [{"type": "custom", "custom": {"name": ""}}]}, "tools[0].custom.name"),
        ({"tool_choice": {"type": "custom", "custom": {}}}, "tool_choice.custom.name"),
    ],
)
def test_a_custom_tool_without_a_name_is_a_400(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        as_functions(_body(**extra))
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (json.dumps({"input": TEXT}), TEXT),
        ('{"patch": "the one string"}', "the one string"),  # another name for it
        ('{"a": "x", "b": "y"}', '{"a": "x", "b": "y"}'),  # as the model wrote it
        ("not json", "not json"),
    ],
)
def test_a_whole_answer_s_calls_come_back_as_custom_calls(arguments: str, expected: str) -> None:
    calls = [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}},
        {
            "id": "c2",
            "type": "function",
            "function": {"name": "apply_patch", "arguments": arguments},
        },
    ]
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "tool_calls": calls}}]}
    as_custom_calls(answer, frozenset({"apply_patch"}))
    weather, patch = answer["choices"][0]["message"]["tool_calls"]
    assert weather["type"] == "function"
    assert patch == {
        "id": "c2",
        "type": "custom",
        "custom": {"name": "apply_patch", "input": expected},
    }


@pytest.mark.parametrize("ascii_only", [True, False])
def test_the_input_decodes_as_its_json_arrives_cut_anywhere(ascii_only: bool) -> None:
    arguments = json.dumps({"input": TEXT}, ensure_ascii=ascii_only)
    for seed in range(500):
        rng = random.Random(seed)
        count = rng.randint(1, 15)
        cuts = sorted(rng.sample(range(1, len(arguments)), count))
        pieces = [arguments[a:b] for a, b in zip([0, *cuts], [*cuts, len(arguments)], strict=True)]
        decoder = ArgumentInput()
        decoded = [decoder.feed(piece) for piece in pieces]
        # All of it decoded by the time the JSON is whole: nothing waits for the end.
        assert "".join(decoded) == TEXT, pieces
        assert decoder.finish() == ""


def test_arguments_of_another_shape_are_read_whole_at_the_end() -> None:
    decoder = ArgumentInput()
    assert decoder.feed('{"pat') == decoder.feed('ch": "x"}') == ""
    assert decoder.finish() == "x"
    spaced = ArgumentInput()
    assert spaced.feed('{ "input" :') == ""  # still may be the usual shape
    assert spaced.feed(' "ab') == "ab"
    assert spaced.feed('c"}') == "c" and spaced.finish() == ""


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return orjson.dumps({"id": "x", "object": "chat.completion.chunk", "choices": [choice]})


def _pieces(raw: list[bytes]) -> list[dict[str, Any]]:
    return [
        piece
        for chunk in raw
        for choice in orjson.loads(chunk)["choices"]
        for piece in choice["delta"].get("tool_calls") or ()
    ]


def test_a_stream_s_calls_become_custom_calls_piece_by_piece() -> None:
    chunks = CustomCallChunks(frozenset({"apply_patch"}))
    text = _chunk({"role": "assistant", "content": "Let me fix it."})
    assert chunks.chunk(text) is text  # no call yet: the same bytes
    opened = {"index": 0, "id": "call_1", "type": "function"}
    weather = {"index": 1, "id": "call_2", "type": "function"}
    arguments = json.dumps({"input": TEXT})
    cut = arguments.index("print")
    out = [
        chunks.chunk(
            _chunk(
                {"tool_calls": [{**opened, "function": {"name": "apply_patch", "arguments": ""}}]}
            )
        ),
        chunks.chunk(
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[:cut]}}]})
        ),
        chunks.chunk(
            _chunk(
                {"tool_calls": [{**weather, "function": {"name": "weather", "arguments": "{}"}}]}
            )
        ),
        chunks.chunk(
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[cut:]}}]})
        ),
        chunks.chunk(_chunk({}, "tool_calls")),
    ]
    first, second, other, third = _pieces(out)
    assert first == {
        "index": 0,
        "id": "call_1",
        "type": "custom",
        "custom": {"name": "apply_patch", "input": ""},
    }
    assert other["function"] == {"name": "weather", "arguments": "{}"}  # a function stays one
    assert second["custom"]["input"] + third["custom"]["input"] == TEXT
    assert "function" not in second and "function" not in third
    assert orjson.loads(out[-1])["choices"][0]["finish_reason"] == "tool_calls"


def test_arguments_of_another_shape_come_whole_with_the_finish_chunk() -> None:
    chunks = CustomCallChunks(frozenset({"apply_patch"}))
    opened = {"index": 0, "id": "call_1", "type": "function"}
    out = [
        chunks.chunk(
            _chunk(
                {
                    "tool_calls": [
                        {**opened, "function": {"name": "apply_patch", "arguments": '{"p'}}
                    ]
                }
            )
        ),
        chunks.chunk(
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'atch": "x"}'}}]})
        ),
        chunks.chunk(_chunk({}, "tool_calls")),
    ]
    assert orjson.loads(out[1])["choices"][0]["delta"] == {}  # nothing to say yet
    last = orjson.loads(out[2])["choices"][0]
    assert last["delta"]["tool_calls"] == [{"index": 0, "custom": {"input": "x"}}]
    assert last["finish_reason"] == "tool_calls"
