"""Anthropic Messages requests -> OpenAI chat bodies, as plain data.

Every body ``_body`` translates must also pass the chat schema: the pipeline
does not check a translated body twice (``ModelRequest.checked``)."""

from __future__ import annotations

from typing import Any

import pytest

from interlock.dialects.anthropic import (
    CountTokensRequest,
    MessagesRequest,
    chat_body,
    validate_request,
)
from interlock.errors import InvalidRequest
from interlock.pipeline.schemas import ChatCompletionRequest, validate_body

EPHEMERAL = {"type": "ephemeral"}
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def _body(**fields: Any) -> dict[str, Any]:
    request = {
        "model": "claude",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "Hello"}],
        **fields,
    }
    body = chat_body(validate_request(MessagesRequest, request))
    validate_body(ChatCompletionRequest, body)
    return body


def test_a_plain_request_translates_field_by_field() -> None:
    body = _body(
        system="Be brief.",
        stop_sequences=["END"],
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        metadata={"user_id": "u-1"},
    )
    assert body == {
        "model": "claude",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
        ],
        "max_tokens": 256,
        "stop": ["END"],
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "user": "u-1",
    }


def test_stream_asks_for_no_usage_chunk() -> None:
    # The edge reads the usage from the request's record (the pipeline
    # always asks the upstream for it): one chunk fewer through every stage.
    body = _body(stream=True)
    assert body["stream"] is True
    assert "stream_options" not in body


def test_system_blocks_keep_their_cache_markers() -> None:
    system = [
        {"type": "text", "text": "You are terse. "},
        {"type": "text", "text": "Long context.", "cache_control": EPHEMERAL},
    ]
    assert _body(system=system)["messages"][0] == {
        "role": "system",
        "content": [
            {"type": "text", "text": "You are terse. "},
            {"type": "text", "text": "Long context.", "cache_control": EPHEMERAL},
        ],
    }
    unmarked = [{"type": "text", "text": "A. "}, {"type": "text", "text": "B."}]
    assert _body(system=unmarked)["messages"][0] == {"role": "system", "content": "A. B."}


def test_images_become_image_url_parts() -> None:
    content = [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
            "cache_control": EPHEMERAL,
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
        {"type": "text", "text": "What are these?"},
    ]
    body = _body(messages=[{"role": "user", "content": content}])
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {
                    "type": "image_url",
                    "image_url": {"url": "data:image/png;base64,iVBORw0K"},
                    "cache_control": EPHEMERAL,
                },
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                {"type": "text", "text": "What are these?"},
            ],
        }
    ]


def test_a_tool_loop_translates_into_calls_and_tool_messages() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "no such city"}],
                    "is_error": True,
                },
                {"type": "text", "text": "Thanks."},
            ],
        },
    ]
    body = _body(messages=messages, tools=[WEATHER])
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no such city"},
        {"role": "user", "content": "Thanks."},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": "The weather in a city.",
            },
        }
    ]


def test_an_assistant_turn_of_calls_only_has_no_content() -> None:
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
    ]
    body = _body(messages=messages)
    assert body["messages"][1]["content"] is None
    assert body["messages"][1]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "t1", "content": ""}


def test_an_image_in_a_tool_result_follows_the_tool_messages() -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/gif", "data": "R0lG"},
    }
    messages = [
        {"role": "user", "content": "Screenshot?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "shoot", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [{"type": "text", "text": "Here."}, image],
                }
            ],
        },
    ]
    assert _body(messages=messages)["messages"][2:] == [
        {"role": "tool", "tool_call_id": "t1", "content": "Here."},
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lG"}}],
        },
    ]


def test_cache_markers_on_tool_blocks_mark_their_messages() -> None:
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "t1",
                    "name": "get_weather",
                    "input": {},
                    "cache_control": EPHEMERAL,
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": "sunny",
                    "cache_control": EPHEMERAL,
                }
            ],
        },
    ]
    tool = {**WEATHER, "cache_control": EPHEMERAL}
    body = _body(messages=messages, tools=[tool])
    assert body["messages"][1]["cache_control"] == EPHEMERAL
    assert body["messages"][2]["cache_control"] == EPHEMERAL
    assert body["tools"][0]["cache_control"] == EPHEMERAL


def test_thinking_blocks_go_back_as_thinking_blocks() -> None:
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "Hmm.", "signature": "c2ln"},
                {"type": "redacted_thinking", "data": "b3BhcXVl"},
                {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}],
        },
    ]
    assistant = _body(messages=messages)["messages"][1]
    assert assistant["thinking_blocks"] == [
        {"type": "thinking", "thinking": "Hmm.", "signature": "c2ln"},
        {"type": "redacted_thinking", "data": "b3BhcXVl"},
    ]
    # The text, for an upstream that takes a turn's reasoning back as text (DeepSeek).
    assert assistant["reasoning_content"] == "Hmm."
    only_redacted = [messages[0], {**messages[1], "content": messages[1]["content"][1:]}]
    assert "reasoning_content" not in _body(messages=[*only_redacted, messages[2]])["messages"][1]


@pytest.mark.parametrize(
    ("budget", "effort"), [(1024, "low"), (2048, "medium"), (2049, "high"), (32000, "high")]
)
def test_thinking_stays_native_and_gets_the_nearest_effort(budget: int, effort: str) -> None:
    body = _body(max_tokens=40000, thinking={"type": "enabled", "budget_tokens": budget})
    assert body["thinking"] == {"type": "enabled", "budget_tokens": budget}
    assert body["reasoning_effort"] == effort
    # Anthropic's max_tokens includes the thinking, as max_completion_tokens does.
    assert body["max_completion_tokens"] == 40000
    assert "max_tokens" not in body


def test_thinking_disabled_sends_nothing_and_adaptive_stays_native() -> None:
    disabled = _body(thinking={"type": "disabled"})
    assert "thinking" not in disabled and "reasoning_effort" not in disabled
    adaptive = _body(thinking={"type": "adaptive"})
    assert adaptive["thinking"] == {"type": "adaptive"}
    assert "reasoning_effort" not in adaptive


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        (
            {"type": "tool", "name": "get_weather"},
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        ),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "any", "disable_parallel_tool_use": True},
            {"tool_choice": "required", "parallel_tool_calls": False},
        ),
    ],
)
def test_tool_choice_maps_to_openai(choice: dict[str, Any], expected: dict[str, Any]) -> None:
    body = _body(tools=[WEATHER], tool_choice=choice)
    assert {k: body[k] for k in expected} == expected
    if "parallel_tool_calls" not in expected:
        assert "parallel_tool_calls" not in body


def test_count_tokens_translates_the_prompt_only() -> None:
    request = validate_request(
        CountTokensRequest,
        {"model": "claude", "system": "Hi", "messages": [{"role": "user", "content": "Yo"}]},
    )
    assert chat_body(request) == {
        "model": "claude",
        "messages": [{"role": "system", "content": "Hi"}, {"role": "user", "content": "Yo"}],
    }


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
            "messages[0].content[0].source",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            "messages[0].content[0].text",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image", "source": {"type": "base64", "data": "x"}}],
                    }
                ]
            },
            "messages[0].content[0].source.media_type",
        ),
        ({"thinking": {"type": "enabled"}}, "thinking"),
        ({"tools": [{"type": "web_search", "name": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "web_search_20250305"}]}, "tools[0].name"),
        (
            {"messages": [{"role": "user", "content": [{"type": "search_result_thing"}]}]},
            "messages[0].content[0].type",
        ),
        ({"mcp_servers": []}, "mcp_servers"),
        ({"system": [{"type": "text", "text": "a", "cache_contol": {}}]}, "system[0].cache_contol"),
    ],
)
def test_a_bad_request_is_a_400_naming_the_field(fields: dict[str, Any], param: str) -> None:
    request: dict[str, Any] = {
        "model": "claude",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "Hello"}],
    }
    request.update(fields)
    request = {k: v for k, v in request.items() if v is not None}
    with pytest.raises(InvalidRequest) as caught:
        validate_request(MessagesRequest, request)
    assert caught.value.param == param
    assert caught.value.message.startswith(param)


WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}


def test_anthropic_own_tools_ride_as_a_marker_as_the_client_sent_them() -> None:
    body = _body(
        tools=[WEATHER, WEB_SEARCH, {"type": "bash_20250124", "name": "bash"}],
        tool_choice={"type": "tool", "name": "web_search"},
    )
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]
    assert body["anthropic_tools"] == [WEB_SEARCH, {"type": "bash_20250124", "name": "bash"}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "web_search"}}


def test_a_turn_with_server_blocks_keeps_them_next_to_its_text() -> None:
    turn = [
        {"type": "text", "text": "Let me look. "},
        {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"q": "x"}},
        {
            "type": "web_search_tool_result",
            "tool_use_id": "srvtoolu_1",
            "content": [{"type": "web_search_result", "url": "https://a.example", "title": "A"}],
        },
        {"type": "text", "text": "Paris.", "citations": [{"type": "web_search_result_location"}]},
    ]
    body = _body(
        messages=[
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": turn},
            {"role": "user", "content": "Thanks"},
        ],
        tools=[WEB_SEARCH],
    )
    assistant = body["messages"][1]
    assert assistant["content"] == "Let me look. Paris."
    assert assistant["content_blocks"] == turn


def test_a_turn_of_plain_blocks_has_no_written_blocks() -> None:
    body = _body(
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "Yo", "citations": None}]},
            {"role": "user", "content": "Bye"},
        ]
    )
    assert "content_blocks" not in body["messages"][1]


def test_a_tool_search_s_references_ride_on_its_tool_message() -> None:
    search = {**WEATHER, "name": "ToolSearch"}
    deferred = {**WEATHER, "defer_loading": True}
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "ToolSearch", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [
                        {"type": "text", "text": "Found one."},
                        {"type": "tool_reference", "tool_name": "get_weather"},
                    ],
                }
            ],
        },
    ]
    body = _body(messages=messages, tools=[search, deferred])
    assert body["messages"][2] == {
        "role": "tool",
        "tool_call_id": "t1",
        "content": "Found one.",
        "tool_references": ["get_weather"],
    }
    assert body["deferred_tools"] is True
    assert body["tools"][1]["defer_loading"] is True  # for Anthropic upstreams


def test_no_tool_search_no_marker() -> None:
    assert "deferred_tools" not in _body(tools=[WEATHER])


def test_a_reference_outside_a_tool_result_is_refused() -> None:
    reference = {"type": "tool_reference", "tool_name": "get_weather"}
    with pytest.raises(InvalidRequest) as refused:
        _body(messages=[{"role": "user", "content": [reference]}])
    assert refused.value.param == "messages[0].content[0].type"


SEARCHED = {
    "type": "search_result",
    "source": "https://docs.example.com/rain",
    "title": "Rain",
    "content": [{"type": "text", "text": "It rains."}, {"type": "text", "text": "Often."}],
}


def test_search_results_are_read_as_text_in_a_turn_and_in_a_tool_result() -> None:
    said = "Search result: Rain\nSource: https://docs.example.com/rain\nIt rains.\nOften."
    turn = [{"role": "user", "content": [{"type": "text", "text": "Rain?"}, SEARCHED]}]
    assert _body(messages=turn)["messages"] == [{"role": "user", "content": f"Rain?\n\n{said}"}]
    messages = [
        {"role": "user", "content": "Search."},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "search", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [SEARCHED, {**SEARCHED, "cache_control": EPHEMERAL}],
                }
            ],
        },
    ]
    [result] = _body(messages=messages)["messages"][2:]
    assert result["content"] == [
        {"type": "text", "text": said},
        {"type": "text", "text": f"\n\n{said}", "cache_control": EPHEMERAL},
    ]


def test_a_search_result_s_citations_turn_off_only() -> None:
    cited = {**SEARCHED, "citations": {"enabled": True}}
    with pytest.raises(InvalidRequest) as refused:
        _body(messages=[{"role": "user", "content": [cited]}])
    assert "only Anthropic answers cite search results" in str(refused.value)
    plain = {**SEARCHED, "citations": {"enabled": False}}
    assert _body(messages=[{"role": "user", "content": [plain]}])["messages"][0]["content"]
