"""A Responses request as a chat body: messages, items, tools, formats,
parameters; and the 400s that name the field.

Every body ``_chat`` translates must also pass the chat schema: the pipeline
does not check a translated body twice (``ModelRequest.checked``)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from interlock.dialects.responses.answer import response_shell, to_response
from interlock.dialects.responses.compaction import compactable, compacted, compaction_item
from interlock.dialects.responses.request import (
    chat_body,
    encode_summary,
    encode_thinking,
    request_items,
    stored_input,
    stored_items,
)
from interlock.dialects.responses.schemas import input_items, validate_request
from interlock.errors import InvalidRequest, UpstreamProtocolError
from interlock.pipeline.schemas import ChatCompletionRequest, validate_body

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}


def _chat(**body: Any) -> dict[str, Any]:
    translated = chat_body(validate_request({"model": "m", **body}))
    validate_body(ChatCompletionRequest, translated)
    return translated


def _refused(**body: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        _chat(**body)
    return caught.value


def test_a_string_input_with_instructions_is_a_system_and_a_user_message() -> None:
    assert _chat(input="Hi", instructions="Be brief") == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief"},
            {"role": "user", "content": "Hi"},
        ],
    }


def test_message_parts_become_chat_parts_and_images_image_url_parts() -> None:
    body = _chat(
        input=[
            {"role": "developer", "content": "Rules."},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                    {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "low"},
                ],
            },
            {"role": "assistant", "content": [{"type": "output_text", "text": "A cat."}]},
        ]
    )
    assert body["messages"] == [
        {"role": "developer", "content": "Rules."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {
                    "type": "image_url",
                    "image_url": {"url": "https://x.test/a.png", "detail": "low"},
                },
            ],
        },
        {"role": "assistant", "content": "A cat."},
    ]


def test_function_calls_are_one_assistant_turn_and_outputs_tool_messages() -> None:
    body = _chat(
        input=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {
                "type": "function_call",
                "id": "fc_2",
                "call_id": "c2",
                "name": "get_weather",
                "arguments": '{"city":"Rome"}',
                "status": "completed",
            },
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "rain"}],
            },
        ]
    )
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                },
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "rain"},
    ]


def test_a_function_call_after_assistant_text_joins_that_turn() -> None:
    body = _chat(
        input=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Let me look."},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        ]
    )
    assert body["messages"][1] == {
        "role": "assistant",
        "content": "Let me look.",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }


def test_signed_thinking_goes_back_on_the_assistant_turn_after_its_reasoning_item() -> None:
    blocks = [{"type": "thinking", "thinking": "Hmm.", "signature": "sig"}]
    body = _chat(
        input=[
            {"role": "user", "content": "Hi"},
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "Hmm."}],
                "encrypted_content": encode_thinking(blocks),
            },
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        ]
    )
    assert body["messages"][1]["thinking_blocks"] == blocks
    assert body["messages"][1]["tool_calls"][0]["id"] == "c1"
    assert body["messages"][1]["reasoning_content"] == "Hmm."


def test_a_reasoning_item_s_text_goes_on_the_turn_after_it() -> None:
    def summary(*texts: str) -> dict[str, Any]:
        return {
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": t} for t in texts],
        }

    body = _chat(
        input=[
            {"role": "user", "content": "Hi"},
            {"type": "reasoning", "summary": []},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Weather?"},
            summary("First,", "then"),
            {"role": "assistant", "content": "Let me look."},
            summary("look it up."),
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            summary("Never answered."),  # no turn after it: left out
        ]
    )
    assert body["messages"][1] == {"role": "assistant", "content": "Hello"}
    assert body["messages"][3]["reasoning_content"] == "First,\n\nthen\n\nlook it up."
    assert body["messages"][3]["tool_calls"][0]["id"] == "c1"
    assert [m["role"] for m in body["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "tool",
    ]


def test_parameters_are_renamed_to_chat_completions_names() -> None:
    body = _chat(
        input="Hi",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        text={
            "format": {
                "type": "json_schema",
                "name": "w",
                "schema": {"type": "object"},
                "strict": True,
            }
        },
        max_output_tokens=50,
        temperature=0.5,
        top_p=0.9,
        reasoning={"effort": "low", "summary": "auto"},
        user="u1",
        metadata={"team": "a"},
        store=False,
        stream=True,
    )
    assert body == {
        "model": "m",
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather in a city.",
                    "parameters": WEATHER["parameters"],
                    "strict": True,
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": False,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True},
        },
        "max_completion_tokens": 50,
        "temperature": 0.5,
        "top_p": 0.9,
        "user": "u1",
        "reasoning_effort": "low",
        "reasoning_summary": "auto",  # a marker, for a Responses upstream alone
        "stream": True,
    }


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [({"type": "json_object"}, {"type": "json_object"}), ({"type": "text"}, None)],
)
def test_json_object_and_text_formats(fmt: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert _chat(input="Hi", text={"format": fmt}).get("response_format") == expected


@pytest.mark.parametrize("choice", ["auto", "none", "required"])
def test_tool_choice_strings_pass(choice: str) -> None:
    assert _chat(input="Hi", tools=[WEATHER], tool_choice=choice)["tool_choice"] == choice


def test_history_comes_first_and_instructions_before_it() -> None:
    history = input_items(
        [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "A"}]},
            {
                "type": "message",
                "role": "assistant",
                "id": "msg_1",
                "status": "completed",
                "content": [{"type": "output_text", "text": "B", "annotations": []}],
            },
        ]
    )
    body = chat_body(validate_request({"model": "m", "input": "C", "instructions": "I"}), history)
    assert body["messages"] == [
        {"role": "system", "content": "I"},
        {"role": "user", "content": [{"type": "text", "text": "A"}]},
        {"role": "assistant", "content": "B"},
        {"role": "user", "content": "C"},
    ]


def test_stored_items_get_ids_and_text_parts() -> None:
    asked = validate_request(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "Hi"},
                {"type": "function_call_output", "call_id": "c", "output": "x", "id": "fco_1"},
            ],
        }
    )
    stored = stored_items(request_items(asked), lambda prefix: f"{prefix}_new")
    assert stored == [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Hi"}],
            "id": "msg_new",
        },
        {"type": "function_call_output", "call_id": "c", "output": "x", "id": "fco_1"},
    ]
    assert input_items(stored)  # read back as input


@pytest.mark.parametrize(
    "body",
    [
        {"input": "Hi \u00e9"},
        {"input": [{"role": "user", "content": "Hi"}]},
        {"input": [{"type": "message", "role": "user", "content": "Hi"}]},
    ],
)
def test_a_string_input_is_stored_as_the_message_it_means(body: dict[str, object]) -> None:
    asked = validate_request({"model": "m", **body})
    as_message = validate_request({"model": "m", "input": [{"role": "user", "content": "Hi"}]})

    def new_id(prefix: str) -> str:
        return f"{prefix}_new"

    stored = stored_input(asked, new_id)
    text = asked.input if isinstance(asked.input, str) else "Hi"
    expected = stored_items(request_items(as_message), new_id)
    expected[0]["content"][0]["text"] = text
    assert stored == expected
    assert list(stored[0]) == list(expected[0])  # the same order of fields, as stored


def test_namespace_tools_go_flat_and_their_calls_back() -> None:
    crm = {
        "type": "namespace",
        "name": "crm",
        "description": "Customers.",
        "tools": [{"type": "function", "name": "lookup"}, {"type": "custom", "name": "note"}],
    }
    own = {"type": "function", "name": "mcp__own"}  # a client's name with the separator
    call = {"type": "function_call", "call_id": "c", "name": "lookup", "namespace": "crm"}
    body = _chat(
        input=[{"role": "user", "content": "Hi"}, {**call, "arguments": "{}"}],
        tools=[crm, own],
    )
    names = [tool.get("function", tool.get("custom", {})).get("name") for tool in body["tools"]]
    assert names == ["crm__lookup", "crm__note", "mcp__own"]
    assert body["messages"][1]["tool_calls"][0]["function"]["name"] == "crm__lookup"
    shell = response_shell(
        validate_request({"model": "m", "input": "x", "tools": [crm, own]}), "r", 1
    )
    answer = {
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "1",
                            "type": "function",
                            "function": {"name": "crm__lookup", "arguments": "{}"},
                        },
                        {
                            "id": "2",
                            "type": "function",
                            "function": {"name": "mcp__own", "arguments": "{}"},
                        },
                    ],
                },
            }
        ]
    }
    output = to_response(shell, answer)["output"]
    assert [(item["name"], item.get("namespace")) for item in output] == [
        ("lookup", "crm"),
        ("mcp__own", None),
    ]


def test_allowed_tools_offer_only_those() -> None:
    crm = {"type": "namespace", "name": "crm", "tools": [{"type": "function", "name": "lookup"}]}
    draw = {"type": "image_generation"}
    allowed = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [
            {"type": "function", "name": "get_weather"},
            {"type": "function", "name": "lookup", "namespace": "crm"},
            {"type": "image_generation"},
        ],
    }
    other = {"type": "function", "name": "other"}
    body = _chat(input="Hi", tools=[WEATHER, other, crm, draw], tool_choice=allowed)
    assert [tool["function"]["name"] for tool in body["tools"]] == ["get_weather", "crm__lookup"]
    assert body["tool_choice"] == "required"
    only_hosted = {**allowed, "tools": [{"type": "image_generation"}]}
    error = _refused(input="Hi", tools=[WEATHER, draw], tool_choice=only_hosted)
    assert error.param == "tool_choice"
    auto = _chat(input="Hi", tools=[WEATHER, draw], tool_choice={**only_hosted, "mode": "auto"})
    assert "tools" not in auto and "tool_choice" not in auto


def test_hosted_tools_are_left_out_of_the_call() -> None:
    """Codex offers OpenAI's hosted web search with every request: no chat
    model can call it, so the request goes on without it."""
    web_search = {"type": "web_search", "external_web_access": False}
    body = _chat(input="Hi", tools=[web_search, WEATHER], tool_choice="auto")
    assert [tool["function"]["name"] for tool in body["tools"]] == ["get_weather"]
    alone = _chat(input="Hi", tools=[web_search], tool_choice="auto", parallel_tool_calls=True)
    assert {"tools", "tool_choice", "parallel_tool_calls"}.isdisjoint(alone)


def test_custom_tools_and_their_items_become_chat_s_custom_tools_and_calls() -> None:
    grammar = {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}
    body = _chat(
        input=[
            {"role": "user", "content": "Fix it"},
            {"type": "custom_tool_call", "call_id": "c1", "name": "patch", "input": "*** x"},
            {"type": "custom_tool_call_output", "call_id": "c1", "output": "Done"},
        ],
        tools=[
            {"type": "custom", "name": "patch", "description": "Edit.", "format": grammar},
            {"type": "custom", "name": "note", "format": {"type": "text"}},
        ],
        tool_choice={"type": "custom", "name": "patch"},
    )
    assert body["tools"] == [
        {
            "type": "custom",
            "custom": {
                "name": "patch",
                "description": "Edit.",
                "format": {
                    "type": "grammar",
                    "grammar": {"definition": "start: /.+/", "syntax": "lark"},
                },
            },
        },
        {"type": "custom", "custom": {"name": "note", "format": {"type": "text"}}},
    ]
    assert body["tool_choice"] == {"type": "custom", "custom": {"name": "patch"}}
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "custom", "custom": {"name": "patch", "input": "*** x"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "Done"},
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "computer_use_preview"}]}, "tools[0].type"),
        ({"tools": [{**WEATHER, "name": "shell"}, {"type": "shell"}]}, "tools"),
        (
            {"tools": [{"type": "shell", "environment": {"type": "container_auto"}}]},
            "tools[0].environment",
        ),
        ({"input": [{"type": "shell_call", "call_id": "c"}]}, "input[0].action"),
        ({"input": [{"type": "apply_patch_call_output", "call_id": "c"}]}, "input[0].status"),
        ({"tools": [{"type": "web_search"}], "tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "custom"}]}, "tools[0].name"),
        (
            {"tools": [{"type": "custom", "name": "p", "format": {"type": "grammar"}}]},
            "tools[0].format.syntax",
        ),
        ({"tool_choice": {"type": "custom"}}, "tool_choice.name"),
        ({"input": [{"type": "custom_tool_call", "call_id": "c", "name": "p"}]}, "input[0].input"),
        ({"tools": [{"type": "function"}]}, "tools[0].name"),
        ({"input": [{"type": "mystery_call", "id": "x"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file"}]}]},
            "input[0].content[0].file_data",
        ),
        ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"input": [{"type": "function_call", "call_id": "c", "name": "f"}]}, "input[0].arguments"),
        ({"input": []}, "input"),
        ({"input": None}, "input"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input"),  # nothing to answer
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tool_choice": {"type": "function"}}, "tool_choice.name"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"temperature": 3}, "temperature"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"metadata": {"a": 1}}, "metadata.a"),
        ({"background": True, "store": False}, "store"),
        ({"background": True, "conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"conversation": "conv_1", "previous_response_id": "resp_1"}, "conversation"),
        ({"conversation": {"name": "x"}}, "conversation.id"),
        ({"conversation": 7}, "conversation"),
        ({"model": ""}, "model"),
    ],
)
def test_invalid_requests_are_refused_naming_the_field(body: dict[str, Any], param: str) -> None:
    error = _refused(**{"input": "Hi", **body})
    assert error.status_code == 400
    assert error.param == param


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "input_image", "file_id": "file-1"}, "input[0].content[0].image_url"),
        ({"type": "input_image", "image_url": "ftp://x/a.png"}, "input[0].content[0].image_url"),
    ],
)
def test_images_need_a_data_or_https_url(part: dict[str, Any], param: str) -> None:
    error = _refused(input=[{"role": "user", "content": [part]}])
    assert error.param == param


def test_encrypted_content_not_made_here_is_refused() -> None:
    error = _refused(
        input=[
            {"type": "reasoning", "summary": [], "encrypted_content": "gAAAA-not-ours"},
            {"role": "user", "content": "Hi"},
        ]
    )
    assert error.param == "input[0].encrypted_content"


def test_an_image_in_a_tool_output_is_refused() -> None:
    output = [{"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]
    error = _refused(input=[{"type": "function_call_output", "call_id": "c", "output": output}])
    assert error.param == "input[0].output[0]"


SHELL_ACTION = {"commands": ["ls -la"], "timeout_ms": 5000, "max_output_length": None}
PATCH_OPERATION = {"type": "update_file", "path": "a.py", "diff": "@@\n-x\n+y\n"}
EXEC = {"type": "exec", "command": ["ls"], "env": {}, "working_directory": "/w"}


def test_built_in_tools_are_functions_and_their_items_a_tool_loop() -> None:
    body = _chat(
        input=[
            {"role": "user", "content": "Tidy up"},
            {"type": "shell_call", "call_id": "s1", "action": SHELL_ACTION, "status": "completed"},
            {
                "type": "shell_call_output",
                "call_id": "s1",
                "output": [
                    {"stdout": "a.py", "stderr": "", "outcome": {"type": "exit", "exit_code": 0}}
                ],
            },
            {
                "type": "apply_patch_call",
                "call_id": "p1",
                "operation": PATCH_OPERATION,
                "status": "completed",
            },
            {
                "type": "apply_patch_call_output",
                "call_id": "p1",
                "status": "failed",
                "output": "no a.py",
            },
            {
                "type": "local_shell_call",
                "call_id": "l1",
                "id": "lsh_1",
                "action": EXEC,
                "status": "completed",
            },
            {"type": "local_shell_call_output", "id": "l1", "output": '{"output": "a.py"}'},
        ],
        tools=[
            {"type": "shell", "environment": {"type": "local"}},
            {"type": "apply_patch"},
            {"type": "local_shell"},
        ],
        tool_choice={"type": "apply_patch"},
    )
    assert [t["function"]["name"] for t in body["tools"]] == ["shell", "apply_patch", "local_shell"]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}
    calls = [m["tool_calls"][0] for m in body["messages"] if m.get("tool_calls")]
    assert [(c["id"], c["function"]["name"]) for c in calls] == [
        ("s1", "shell"),
        ("p1", "apply_patch"),
        ("l1", "local_shell"),
    ]
    assert [orjson.loads(c["function"]["arguments"]) for c in calls] == [
        {"commands": ["ls -la"], "timeout_ms": 5000},
        PATCH_OPERATION,
        {"command": ["ls"], "working_directory": "/w"},
    ]
    results = [m for m in body["messages"] if m["role"] == "tool"]
    assert [r["tool_call_id"] for r in results] == ["s1", "p1", "l1"]
    assert orjson.loads(results[0]["content"])[0]["stdout"] == "a.py"
    assert results[1]["content"] == "failed: no a.py"
    assert results[2]["content"] == '{"output": "a.py"}'


def test_allowed_tools_name_a_built_in_tool_by_its_type() -> None:
    body = _chat(
        input="Go",
        tools=[WEATHER, {"type": "shell"}],
        tool_choice={"type": "allowed_tools", "mode": "required", "tools": [{"type": "shell"}]},
    )
    assert [t["function"]["name"] for t in body["tools"]] == ["shell"]
    assert body["tool_choice"] == "required"


@pytest.mark.parametrize(
    ("kind", "arguments", "item"),
    [
        (
            "shell",
            '{"commands": ["ls"]}',
            {
                "action": {"commands": ["ls"], "timeout_ms": None, "max_output_length": None},
                "environment": None,
            },
        ),
        (
            "apply_patch",
            '{"type": "delete_file", "path": "a.py"}',
            {"operation": {"type": "delete_file", "path": "a.py"}},
        ),
        (
            "local_shell",
            '{"command": ["ls"]}',
            {
                "action": {
                    "type": "exec",
                    "command": ["ls"],
                    "timeout_ms": None,
                    "working_directory": None,
                    "env": {},
                    "user": None,
                }
            },
        ),
    ],
)
def test_a_call_of_a_built_in_tool_is_answered_as_its_item(
    kind: str, arguments: str, item: dict[str, Any]
) -> None:
    request = validate_request({"model": "m", "input": "Go", "tools": [{"type": kind}]})
    shell = response_shell(request, "resp_1", 0)
    call = {"id": "call_1", "type": "function", "function": {"name": kind, "arguments": arguments}}
    answer = {
        "choices": [
            {
                "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                "finish_reason": "tool_calls",
            }
        ]
    }
    [output] = to_response(shell, answer)["output"]
    assert output["type"] == f"{kind}_call" and output["call_id"] == "call_1"
    assert output["status"] == "completed"
    assert {k: v for k, v in output.items() if k in item} == item
    # Sent back, it is the model's call again, its arguments the action.
    sent_back = _chat(input=[output], tools=[{"type": kind}])["messages"][0]["tool_calls"][0]
    assert (sent_back["id"], sent_back["function"]["name"]) == ("call_1", kind)
    assert orjson.loads(sent_back["function"]["arguments"]) == orjson.loads(arguments)


def test_a_built_in_call_whose_arguments_are_not_its_action_is_an_upstream_error() -> None:
    request = validate_request({"model": "m", "input": "Go", "tools": [{"type": "apply_patch"}]})
    call = {
        "id": "c",
        "type": "function",
        "function": {"name": "apply_patch", "arguments": '{"type": "rename"}'},
    }
    answer = {
        "choices": [
            {"message": {"role": "assistant", "tool_calls": [call]}, "finish_reason": "tool_calls"}
        ]
    }
    with pytest.raises(UpstreamProtocolError, match="apply_patch"):
        to_response(response_shell(request, "resp_1", 0), answer)


def test_before_the_latest_compaction_only_the_messages_it_keeps_are_read() -> None:
    summary = {"type": "compaction", "encrypted_content": encode_summary("It rains.")}
    loop = [
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "Weather?"},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "rain"},
        {"role": "assistant", "content": "It rains."},
    ]
    sent = _chat(input=[*loop, summary, {"role": "user", "content": "Umbrella?"}])["messages"]
    assert [(m["role"], m["content"][:9]) for m in sent] == [
        ("developer", "Answer in"),
        ("user", "Weather?"),
        ("user", "The earli"),  # the summary
        ("user", "Umbrella?"),
    ]
    # A second compaction replaces the first: only the latest summary is read.
    again = {"type": "compaction", "encrypted_content": encode_summary("Bring one.")}
    sent = _chat(input=[*loop, summary, *loop[2:], again])["messages"]
    assert [m["role"] for m in sent] == ["developer", "user", "user"]
    assert sent[-1]["content"].endswith("Bring one.")


def test_only_a_conversation_with_more_than_kept_messages_is_compactable() -> None:
    asked = validate_request(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "Weather?"},
                {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "rain"},
            ],
        }
    )
    items = request_items(asked)
    assert compactable(items)
    shortened = compacted(items, compaction_item("cmp_1", "It rains."))
    assert [item.type for item in shortened] == ["message", "compaction"]
    assert not compactable(shortened)
    assert not compactable(
        [*shortened, *request_items(validate_request({"model": "m", "input": "Hi"}))]
    )
