"""The chat shape to OpenAI's Responses API and back (``api: responses``),
without I/O: the request, the answer and the stream events."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from interlock.config import DeploymentConfig
from interlock.errors import InvalidRequest
from interlock.providers.openai_responses_answer import UpstreamFailed, chat_completion
from interlock.providers.openai_responses_stream import ChunkWriter
from interlock.providers.openai_responses_wire import responses_body
from interlock.providers.upstream_errors import ShapeError

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}
PATCH = {
    "type": "custom",
    "custom": {
        "name": "apply_patch",
        "description": "Edit files",
        "format": {"type": "grammar", "grammar": {"syntax": "lark", "definition": "start: /.+/"}},
    },
}


def test_a_tool_loop_in_chat_s_shape_is_written_as_input_items() -> None:
    chat = {
        "model": "public",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                ],
            },
            {
                "role": "assistant",
                "content": "Looking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "custom",
                        "custom": {"name": "apply_patch", "input": "*** Begin Patch"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "ok"}]},
        ],
        "tools": [WEATHER, PATCH],
        "tool_choice": {"type": "function", "function": {"name": "weather"}},
        "parallel_tool_calls": False,
        "max_completion_tokens": 300,
        "temperature": 0.5,
        "reasoning_effort": "low",
        "verbosity": "low",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": True},
        },
        "user": "u-1",
        "prompt_cache_key": "k",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    body = responses_body(chat, "gpt-5-codex", ())
    assert body["model"] == "gpt-5-codex" and body["store"] is False
    assert body["input"] == [
        {"type": "message", "role": "system", "content": "Be brief."},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Weather?"},
                {
                    "type": "input_image",
                    "image_url": "data:image/png;base64,AAAA",
                    "detail": "auto",
                },
            ],
        },
        {"type": "message", "role": "assistant", "content": "Looking."},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "weather",
            "arguments": '{"city":"Oslo"}',
        },
        {
            "type": "custom_tool_call",
            "call_id": "call_2",
            "name": "apply_patch",
            "input": "*** Begin Patch",
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "rain"},
        {"type": "custom_tool_call_output", "call_id": "call_2", "output": "ok"},
    ]
    assert body["tools"] == [
        {"type": "function", **WEATHER["function"]},  # type: ignore[dict-item]
        {
            "type": "custom",
            "name": "apply_patch",
            "description": "Edit files",
            "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"},
        },
    ]
    assert body["tool_choice"] == {"type": "function", "name": "weather"}
    assert body["text"] == {
        "format": {
            "type": "json_schema",
            "name": "w",
            "schema": {"type": "object"},
            "strict": True,
        },
        "verbosity": "low",
    }
    assert body["reasoning"] == {"effort": "low"}
    assert (body["max_output_tokens"], body["temperature"], body["parallel_tool_calls"]) == (
        300,
        0.5,
        False,
    )
    assert (body["user"], body["prompt_cache_key"]) == ("u-1", "k")
    for chat_only in ("messages", "max_completion_tokens", "response_format", "stream_options"):
        assert chat_only not in body


def test_what_this_api_has_no_word_for_is_a_400_unless_dropped() -> None:
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stop": ["\n"]}
    with pytest.raises(InvalidRequest) as refused:
        responses_body(chat, "x", ())
    assert refused.value.param == "stop"
    assert "stop" not in responses_body(chat, "x", ("stop",))
    assert responses_body({**chat, "stop": None, "n": 1}, "x", ())["input"]  # neutral values pass
    with pytest.raises(InvalidRequest):
        responses_body({**chat, "stop": None, "n": 2}, "x", ())
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    with pytest.raises(InvalidRequest) as part:
        responses_body({"model": "m", "messages": [{"role": "user", "content": [audio]}]}, "x", ())
    assert part.value.param == "messages[0].content[0].type"


def test_logprobs_web_search_and_allowed_tools_say_the_same_here() -> None:
    chat = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "logprobs": True,
        "top_logprobs": 2,
        "tools": [WEATHER],
        "tool_choice": {
            "type": "allowed_tools",
            "allowed_tools": {
                "mode": "required",
                "tools": [WEATHER | {"function": {"name": "weather"}}],
            },
        },
        "web_search_options": {
            "search_context_size": "low",
            "user_location": {"type": "approximate", "approximate": {"country": "NO"}},
        },
        "store": True,
    }
    body = responses_body(chat, "x", ())
    assert body["include"] == [
        "reasoning.encrypted_content",
        "message.output_text.logprobs",
        "web_search_call.action.sources",  # the pages the answer cites
    ]
    assert body["top_logprobs"] == 2
    assert body["tools"][-1] == {
        "type": "web_search",
        "search_context_size": "low",
        "user_location": {"type": "approximate", "country": "NO"},
    }
    assert body["tool_choice"] == {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "weather"}],
    }
    assert body["store"] is True


def _response(output: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1700000000,
        "status": "completed",
        "model": "gpt-5-codex",
        "output": output,
        "usage": {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 4},
            "output_tokens": 7,
            "output_tokens_details": {"reasoning_tokens": 3},
            "total_tokens": 17,
        },
        **extra,
    }


def test_an_answer_reads_back_as_one_chat_message() -> None:
    answer = chat_completion(
        _response(
            [
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [{"type": "summary_text", "text": "Hmm."}],
                },
                {
                    "type": "message",
                    "id": "msg_1",
                    "role": "assistant",
                    "content": [
                        {
                            "type": "output_text",
                            "text": "See docs.",
                            "annotations": [
                                {
                                    "type": "url_citation",
                                    "url": "https://d",
                                    "title": "D",
                                    "start_index": 4,
                                    "end_index": 8,
                                }
                            ],
                            "logprobs": [
                                {"token": "See", "logprob": -0.1, "bytes": [83], "top_logprobs": []}
                            ],
                        }
                    ],
                },
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_9",
                    "name": "weather",
                    "arguments": "{}",
                },
            ]
        )
    )
    [choice] = answer["choices"]
    message = choice["message"]
    assert (answer["id"], answer["object"], answer["created"]) == (
        "resp_1",
        "chat.completion",
        1700000000,
    )
    assert message["content"] == "See docs." and message["reasoning_content"] == "Hmm."
    assert message["tool_calls"] == [
        {"id": "call_9", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    ]
    assert message["annotations"][0]["url_citation"]["start_index"] == 4
    assert choice["finish_reason"] == "tool_calls"
    assert choice["logprobs"]["content"][0]["token"] == "See"
    assert answer["usage"] == {
        "prompt_tokens": 10,
        "completion_tokens": 7,
        "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 4},
        "completion_tokens_details": {"reasoning_tokens": 3},
    }
    cut = chat_completion(
        _response([], status="incomplete", incomplete_details={"reason": "max_output_tokens"})
    )
    assert cut["choices"][0]["finish_reason"] == "length"
    assert cut["choices"][0]["message"]["content"] == ""


def test_a_failed_response_is_an_upstream_error_with_its_code_s_status() -> None:
    with pytest.raises(UpstreamFailed) as failed:
        chat_completion(
            _response(
                [], status="failed", error={"code": "rate_limit_exceeded", "message": "slow down"}
            )
        )
    assert failed.value.status == 429 and "slow down" in failed.value.detail
    with pytest.raises(ShapeError):
        chat_completion({"id": "resp_1"})


def _events(*events: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"sequence_number": n, **event} for n, event in enumerate(events)]


def _fed(writer: ChunkWriter, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [orjson.loads(chunk) for event in events for chunk in writer.feed(event)]


def test_a_stream_s_events_become_chat_chunks() -> None:
    created = {
        "type": "response.created",
        "response": _response([], status="in_progress", usage=None),
    }
    call = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_1",
        "name": "weather",
        "arguments": "",
    }
    events = _events(
        created,
        {"type": "response.in_progress", "response": created["response"]},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "reasoning", "id": "rs_1"},
        },
        {
            "type": "response.reasoning_summary_text.delta",
            "item_id": "rs_1",
            "summary_index": 0,
            "delta": "Hm",
        },
        {
            "type": "response.reasoning_summary_text.delta",
            "item_id": "rs_1",
            "summary_index": 1,
            "delta": "Ok",
        },
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {"type": "message", "id": "msg_1"},
        },
        {
            "type": "response.content_part.added",
            "item_id": "msg_1",
            "output_index": 1,
            "content_index": 0,
        },
        {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "Hel", "logprobs": []},
        {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "lo", "logprobs": []},
        {"type": "response.output_text.done", "item_id": "msg_1", "text": "Hello"},
        {"type": "response.output_item.added", "output_index": 2, "item": call},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": '{"city":'},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": '"Oslo"}'},
        {
            "type": "response.output_item.done",
            "output_index": 2,
            "item": {**call, "arguments": '{"city":"Oslo"}'},
        },
        {"type": "response.completed", "response": _response([])},
    )
    writer = ChunkWriter("fallback", include_usage=True)
    chunks = _fed(writer, events)
    assert writer.finished
    assert {c["id"] for c in chunks} == {"resp_1"}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert [d.get("reasoning_content") for d in deltas[1:3]] == ["Hm", "\n\nOk"]
    assert [d.get("content") for d in deltas[3:5]] == ["Hel", "lo"]
    assert deltas[5]["tool_calls"][0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": ""},
    }
    pieces = [d["tool_calls"][0]["function"]["arguments"] for d in deltas[6:8]]
    assert "".join(pieces) == '{"city":"Oslo"}'  # the item's end repeats nothing
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 10


def test_a_call_that_never_streamed_its_input_gets_it_whole_at_its_end() -> None:
    call = {
        "type": "custom_tool_call",
        "id": "ctc_1",
        "call_id": "call_1",
        "name": "apply_patch",
        "input": "",
    }
    writer = ChunkWriter("m", include_usage=False)
    chunks = _fed(
        writer,
        _events(
            {"type": "response.created", "response": _response([], status="in_progress")},
            {"type": "response.output_item.added", "output_index": 0, "item": call},
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "item": {**call, "input": "patch"},
            },
            {"type": "response.incomplete", "response": _response([], status="incomplete")},
        ),
    )
    opened, whole, last = (c["choices"][0] for c in chunks[1:])
    assert opened["delta"]["tool_calls"][0]["custom"] == {"name": "apply_patch", "input": ""}
    assert whole["delta"]["tool_calls"][0] == {"index": 0, "custom": {"input": "patch"}}
    assert last["finish_reason"] == "length"
    assert "usage" not in chunks[-1]


def test_a_failed_stream_raises_and_a_stray_event_is_a_shape_error() -> None:
    writer = ChunkWriter("m", include_usage=False)
    writer.feed({"type": "response.created", "response": _response([], status="in_progress")})
    failed = _response([], status="failed", error={"code": "server_error", "message": "boom"})
    with pytest.raises(UpstreamFailed) as raised:
        writer.feed({"type": "response.failed", "response": failed})
    assert raised.value.status == 500
    with pytest.raises(ShapeError):
        ChunkWriter("m", include_usage=False).feed(
            {"type": "response.output_text.delta", "delta": "x"}
        )


@pytest.mark.parametrize("provider", ["anthropic", "gemini", "simulator"])
def test_only_provider_openai_takes_api_responses(provider: str) -> None:
    with pytest.raises(ValueError, match="api: responses"):
        DeploymentConfig.model_validate(
            {
                "id": "d",
                "provider": provider,
                "model": "m",
                "base_url": "https://example.test",
                "api": "responses",
                **({"aws": {"region": "us-east-1"}} if provider == "bedrock" else {}),
            }
        )
    on = DeploymentConfig.model_validate(
        {
            "id": "d",
            "provider": "openai",
            "model": "m",
            "base_url": "http://127.0.0.1:1/v1",
            "api": "responses",
        }
    )
    assert on.native_custom_tools  # the Responses API has custom tools


SEALED = {"type": "reasoning", "id": "rs_1", "encrypted_content": "gAAA-sealed", "summary": []}


def test_sealed_reasoning_comes_back_as_thinking_blocks_and_goes_out_as_items() -> None:
    answer = chat_completion(
        _response(
            [
                {
                    "type": "reasoning",
                    "id": "rs_1",
                    "summary": [],
                    "encrypted_content": "gAAA-sealed",
                },
                {
                    "type": "function_call",
                    "id": "fc_1",
                    "call_id": "call_1",
                    "name": "f",
                    "arguments": "{}",
                },
            ]
        )
    )
    message = answer["choices"][0]["message"]
    assert message["thinking_blocks"] == [SEALED] and "reasoning_content" not in message
    anthropic_signed = {"type": "thinking", "thinking": "x", "signature": "sig"}
    chat = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {**message, "thinking_blocks": [anthropic_signed, *message["thinking_blocks"]]},
            {"role": "tool", "tool_call_id": "call_1", "content": "done"},
        ],
    }
    body = responses_body(chat, "x", ())
    assert body["include"] == ["reasoning.encrypted_content"]
    # Before the call it led to (the API refuses it alone), and not Anthropic's.
    assert body["input"][1] == {
        "type": "reasoning",
        "id": "rs_1",
        "encrypted_content": "gAAA-sealed",
        "summary": [],
    }
    assert [item["type"] for item in body["input"]] == [
        "message",
        "reasoning",
        "function_call",
        "function_call_output",
    ]


def test_a_streamed_reasoning_item_s_end_brings_its_sealed_reasoning() -> None:
    item = {"type": "reasoning", "id": "rs_1", "summary": []}
    writer = ChunkWriter("m", include_usage=False)
    chunks = _fed(
        writer,
        _events(
            {"type": "response.created", "response": _response([], status="in_progress")},
            {"type": "response.output_item.added", "output_index": 0, "item": item},
            {
                "type": "response.output_item.done",
                "output_index": 0,
                "item": {**item, "encrypted_content": "gAAA-sealed"},
            },
        ),
    )
    assert chunks[-1]["choices"][0]["delta"] == {"thinking_blocks": [SEALED]}


def test_other_vendors_leave_openai_s_sealed_reasoning_out() -> None:
    from interlock.providers.anthropic_wire import chat_request
    from interlock.providers.bedrock_wire import converse_request

    signed = {"type": "thinking", "thinking": "x", "signature": "sig"}
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "ok", "thinking_blocks": [SEALED, signed]},
        {"role": "user", "content": "again"},
    ]
    sent = chat_request({"model": "m", "messages": messages}, "claude", ())
    assistant = sent.body["messages"][1]["content"]
    assert [block["type"] for block in assistant] == ["thinking", "text"]
    converse = converse_request({"model": "m", "messages": messages}).body
    reasoning = converse["messages"][1]["content"][0]["reasoningContent"]["reasoningText"]
    assert reasoning == {"text": "x", "signature": "sig"}
    assert len(converse["messages"][1]["content"]) == 2


def test_an_error_event_is_the_status_its_code_stands_for() -> None:
    writer = ChunkWriter("m", include_usage=False)
    writer.feed({"type": "response.created", "response": _response([], status="in_progress")})
    with pytest.raises(UpstreamFailed) as limited:
        writer.feed(
            {"type": "error", "code": "rate_limit_exceeded", "message": "slow", "param": None}
        )
    assert limited.value.status == 429
    with pytest.raises(UpstreamFailed) as unknown:
        ChunkWriter("m", include_usage=False).feed({"type": "error", "message": "?"})
    assert unknown.value.status == 500


def test_a_refusal_and_a_content_filter_read_as_chat_s() -> None:
    refused = chat_completion(
        _response(
            [
                {
                    "type": "message",
                    "id": "msg_1",
                    "role": "assistant",
                    "content": [{"type": "refusal", "refusal": "I can't help with that."}],
                }
            ],
            status="incomplete",
            incomplete_details={"reason": "content_filter"},
        )
    )
    [choice] = refused["choices"]
    assert choice["message"]["refusal"] == "I can't help with that."
    assert choice["message"]["content"] is None
    assert choice["finish_reason"] == "content_filter"


def test_a_hosted_search_is_sent_where_the_upstream_runs_it_and_read_back_as_blocks() -> None:
    chat = {
        "model": "m",
        "messages": [{"role": "user", "content": "search"}],
        "hosted_web_search": {
            "allowed_domains": ["a.example"],
            "user_location": {"type": "approximate", "city": "Oslo"},
        },
    }
    assert "tools" not in responses_body(chat, "x", ())  # left out, as everywhere but Anthropic
    [tool] = responses_body(chat, "x", (), searches=True)["tools"]
    assert tool == {
        "type": "web_search",
        "filters": {"allowed_domains": ["a.example"]},
        "user_location": {"type": "approximate", "city": "Oslo"},
    }
    searched = {
        "type": "web_search_call",
        "id": "ws_1",
        "status": "completed",
        "action": {
            "type": "search",
            "query": "q",
            "sources": [{"type": "url", "url": "https://a"}],
        },
    }
    failed = {**searched, "id": "ws_2", "status": "failed"}
    said = {
        "type": "message",
        "id": "msg_1",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Done.", "annotations": []}],
    }
    answer = chat_completion(_response([searched, failed, said]))
    message = answer["choices"][0]["message"]
    assert [b["type"] for b in message["content_blocks"]] == [
        "server_tool_use",
        "web_search_tool_result",
        "server_tool_use",
        "web_search_tool_result",
        "text",
    ]
    use, found = message["content_blocks"][:2]
    assert use == {
        "type": "server_tool_use",
        "id": "ws_1",
        "name": "web_search",
        "input": {"query": "q"},
    }
    assert [page["url"] for page in found["content"]] == ["https://a"]
    assert message["content_blocks"][3]["content"]["type"] == "web_search_tool_result_error"
    assert answer["usage"]["server_tool_use"] == {"web_search_requests": 2}
