"""``chat.completion`` -> Anthropic message, and errors in Anthropic's shape."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from interlock.api.messages import anthropic_error
from interlock.dialects.anthropic import error_body, error_type, message
from interlock.errors import (
    AuthenticationFailed,
    InterlockError,
    InvalidRequest,
    MethodNotAllowed,
    ModelNotFound,
    NoHealthyDeployment,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    TooManyRequests,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from interlock.redaction import Redactor


def _completion(reply: dict[str, Any], finish: str | None = "stop", **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [{"index": 0, "message": reply, "finish_reason": finish, **extra}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


def test_a_text_answer() -> None:
    answer = message(_completion({"role": "assistant", "content": "Hi."}))
    assert answer == {
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "gpt-4o",
        "content": [{"type": "text", "text": "Hi."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        },
    }


def test_an_anthropic_id_is_kept() -> None:
    completion = {**_completion({"role": "assistant", "content": "x"}), "id": "msg_01XY"}
    assert message(completion)["id"] == "msg_01XY"


def test_thinking_then_text_then_tool_use() -> None:
    reply = {
        "role": "assistant",
        "content": "Let me check.",
        "reasoning_content": "They want weather.",
        "thinking_blocks": [
            {"type": "thinking", "thinking": "They want weather.", "signature": "c2ln"},
            {"type": "redacted_thinking", "data": "b3Bh"},
        ],
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
            }
        ],
    }
    answer = message(_completion(reply, "tool_calls"))
    assert answer["content"] == [
        {"type": "thinking", "thinking": "They want weather.", "signature": "c2ln"},
        {"type": "redacted_thinking", "data": "b3Bh"},
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
    ]
    assert answer["stop_reason"] == "tool_use"


def test_unsigned_reasoning_becomes_one_thinking_block() -> None:
    reply = {"role": "assistant", "content": "42", "reasoning_content": "Six times seven."}
    assert message(_completion(reply))["content"][0] == {
        "type": "thinking",
        "thinking": "Six times seven.",
        "signature": "",
    }


def test_tool_call_arguments_must_be_an_object() -> None:
    def call(arguments: str) -> dict[str, Any]:
        function = {"name": "f", "arguments": arguments}
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c", "function": function}],
        }

    assert message(_completion(call(""), "tool_calls"))["content"][0]["input"] == {}
    with pytest.raises(UpstreamProtocolError):
        message(_completion(call("[1, 2]"), "tool_calls"))
    with pytest.raises(UpstreamProtocolError):
        message(_completion(call("{broken"), "tool_calls"))


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_stop_reasons(finish: str | None, reason: str) -> None:
    reply = {"role": "assistant", "content": "x"}
    assert message(_completion(reply, finish))["stop_reason"] == reason


def test_a_matched_stop_sequence_is_reported_when_the_upstream_names_it() -> None:
    # vLLM names the stop string that ended the answer in the choice's stop_reason.
    completion = _completion({"role": "assistant", "content": "1, 2"}, stop_reason="END")
    answer = message(completion, ["END"])
    assert (answer["stop_reason"], answer["stop_sequence"]) == ("stop_sequence", "END")
    answer = message(_completion({"role": "assistant", "content": "1, 2"}), ["END"])
    assert (answer["stop_reason"], answer["stop_sequence"]) == ("end_turn", None)


def test_usage_splits_cache_reads_and_writes_out_of_input_tokens() -> None:
    completion = _completion({"role": "assistant", "content": "x"})
    completion["usage"] = {
        "prompt_tokens": 168,
        "completion_tokens": 7,
        "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 50},
    }
    assert message(completion)["usage"] == {
        "input_tokens": 18,
        "output_tokens": 7,
        "cache_read_input_tokens": 100,
        "cache_creation_input_tokens": 50,
    }


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (InvalidRequest("bad"), "invalid_request_error"),
        (AuthenticationFailed("who"), "authentication_error"),
        (PermissionDenied("no"), "permission_error"),
        (ModelNotFound("m"), "not_found_error"),
        (PayloadTooLarge("big"), "request_too_large"),
        (TooManyRequests("slow down"), "rate_limit_error"),
        (Overloaded("busy"), "overloaded_error"),
        (NoHealthyDeployment("none"), "overloaded_error"),
        (UpstreamStatusError(529, "Overloaded"), "overloaded_error"),
        (UpstreamStatusError(400, "bad"), "invalid_request_error"),
        (UpstreamStatusError(500, "boom"), "api_error"),
        (UpstreamTimeout("slow"), "api_error"),
        (MethodNotAllowed("GET"), "invalid_request_error"),
        (InterlockError("ours"), "api_error"),
    ],
)
def test_error_types_follow_the_status(exc: InterlockError, kind: str) -> None:
    assert error_type(exc) == kind
    assert error_body(exc, "safe") == {"type": "error", "error": {"type": kind, "message": "safe"}}


def test_an_error_response_keeps_the_status_and_retry_after_and_scrubs_secrets() -> None:
    exc = UpstreamStatusError(529, "Overloaded, key sk-secret-123", retry_after_s=1.5)
    response = anthropic_error(exc, Redactor(["sk-secret-123"]))
    assert response.status_code == 503  # ours; only the type name is Anthropic's
    assert response.headers["retry-after"] == "2"
    body = orjson.loads(response.body)
    assert body["error"]["type"] == "overloaded_error"
    assert "sk-secret-123" not in body["error"]["message"]


_WRITTEN = [
    {"type": "text", "text": "Let me look. "},
    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"q": "x"}},
    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []},
    {"type": "text", "text": "Paris.", "citations": [{"type": "web_search_result_location"}]},
]


def test_an_anthropic_upstreams_own_blocks_come_back_as_written() -> None:
    reply = {"role": "assistant", "content": "Let me look. Paris.", "content_blocks": _WRITTEN}
    answer = message(_completion(reply, stop_reason="pause_turn"))
    assert answer["content"] == _WRITTEN
    assert answer["stop_reason"] == "pause_turn"


def test_rewritten_text_keeps_the_server_blocks_but_not_the_written_text() -> None:
    # A guardrail rewrote the answer: the written text blocks no longer say it.
    reply = {"role": "assistant", "content": "Let me look. [REDACTED]", "content_blocks": _WRITTEN}
    answer = message(_completion(reply))
    assert answer["content"] == [
        *_WRITTEN[1:3],
        {"type": "text", "text": "Let me look. [REDACTED]"},
    ]
