"""A chat completion as a Response object, checked against the ``openai``
SDK's own model of it."""

from __future__ import annotations

from typing import Any

from openai.types.responses import Response

from interlock.dialects.responses.answer import response_shell, to_response
from interlock.dialects.responses.request import decode_thinking
from interlock.dialects.responses.schemas import validate_request

USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 5,
    "total_tokens": 17,
    "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 2},
    "completion_tokens_details": {"reasoning_tokens": 3},
}


def _completion(message: dict[str, Any], finish_reason: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "served-model",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": USAGE,
    }


def _response(
    message: dict[str, Any],
    finish_reason: str = "stop",
    reported: dict[str, Any] | None = None,
    **asked: Any,
) -> dict[str, Any]:
    """``reported``: more of the chat completion's fields."""
    request = validate_request({"model": "m", "input": "Hi", **asked})
    shell = response_shell(request, "resp_1", 1_700_000_000)
    response = to_response(shell, {**_completion(message, finish_reason), **(reported or {})})
    Response.model_validate(response)  # the SDK parses every field
    return response


def test_text_answer_is_one_message_with_output_text_and_usage() -> None:
    response = _response(
        {"role": "assistant", "content": "Hello"},
        instructions="Be brief",
        temperature=0.2,
        metadata={"k": "v"},
    )
    assert response["id"] == "resp_1" and response["object"] == "response"
    assert response["status"] == "completed" and response["incomplete_details"] is None
    assert response["model"] == "served-model"
    [item] = response["output"]
    assert item["type"] == "message" and item["id"].startswith("msg_")
    assert item["role"] == "assistant" and item["status"] == "completed"
    assert item["content"] == [
        {"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}
    ]
    assert response["usage"] == {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 2},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 3},
        "total_tokens": 17,
    }
    assert (response["instructions"], response["temperature"], response["metadata"]) == (
        "Be brief",
        0.2,
        {"k": "v"},
    )
    assert response["store"] is True and response["error"] is None
    assert response["text"] == {"format": {"type": "text"}}
    assert (response["tool_choice"], response["tools"], response["parallel_tool_calls"]) == (
        "auto",
        [],
        True,
    )
    assert "output_text" not in response  # the SDKs add it


def test_tool_calls_are_function_call_items_after_any_text() -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    tools = [{"type": "function", "name": "f"}, {"type": "function", "name": "g"}]
    only_calls = _response(
        {"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls", tools=tools
    )
    assert [(i["type"], i["call_id"], i["name"], i["arguments"]) for i in only_calls["output"]] == [
        ("function_call", "call_1", "f", '{"a":1}'),
        ("function_call", "call_2", "g", "{}"),
    ]
    assert all(
        i["id"].startswith("fc_") and i["status"] == "completed" for i in only_calls["output"]
    )
    assert only_calls["tools"] == tools
    with_text = _response(
        {"role": "assistant", "content": "Checking.", "tool_calls": calls[:1]}, "tool_calls"
    )
    assert [i["type"] for i in with_text["output"]] == ["message", "function_call"]


def test_length_makes_an_incomplete_response() -> None:
    response = _response({"role": "assistant", "content": "Hel"}, "length", max_output_tokens=3)
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"
    assert response["max_output_tokens"] == 3


def test_reasoning_is_a_summary_and_signed_thinking_encrypted_content() -> None:
    blocks = [{"type": "thinking", "thinking": "Let me think.", "signature": "sig"}]
    response = _response(
        {
            "role": "assistant",
            "content": "Paris",
            "reasoning_content": "Let me think.",
            "thinking_blocks": blocks,
        },
        reasoning={"effort": "low"},
    )
    reasoning, message = response["output"]
    assert reasoning["type"] == "reasoning" and reasoning["id"].startswith("rs_")
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Let me think."}]
    assert decode_thinking(reasoning["encrypted_content"], "x") == blocks
    assert message["content"][0]["text"] == "Paris"
    assert response["reasoning"] == {"effort": "low", "summary": None}


def test_refusal_is_a_refusal_part() -> None:
    response = _response({"role": "assistant", "content": None, "refusal": "I can't."})
    assert response["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't."}]


def test_prompt_cache_and_safety_settings_are_echoed_with_the_tier_that_served() -> None:
    asked = {
        "prompt_cache_key": "conversation-7",
        "prompt_cache_retention": "24h",
        "safety_identifier": "user-7",
        "service_tier": "auto",
    }
    message = {"role": "assistant", "content": "Hi"}
    response = _response(message, reported={"service_tier": "default"}, **asked)
    assert {name: response[name] for name in asked} == {**asked, "service_tier": "default"}
    unreported = _response(message, **asked)
    assert unreported["service_tier"] == "auto"  # what was asked, where no tier was reported
    unasked = _response(message)
    assert [unasked[name] for name in asked] == [None] * 4


def test_an_empty_answer_is_one_empty_message() -> None:
    response = _response({"role": "assistant", "content": ""})
    assert response["output"][0]["content"][0]["text"] == ""


def test_text_format_and_tool_choice_are_echoed() -> None:
    fmt = {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": True}
    response = _response(
        {"role": "assistant", "content": "{}"},
        text={"format": fmt},
        tools=[{"type": "function", "name": "f"}],
        tool_choice={"type": "function", "name": "f"},
        store=False,
        previous_response_id="resp_0",
    )
    assert response["text"] == {"format": fmt}
    assert response["tool_choice"] == {"type": "function", "name": "f"}
    assert response["store"] is False and response["previous_response_id"] == "resp_0"
