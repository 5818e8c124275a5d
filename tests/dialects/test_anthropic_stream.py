"""OpenAI chunks -> Anthropic stream events, as plain data."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from interlock.dialects.anthropic import EventTranslator
from interlock.errors import UpstreamProtocolError


def _chunk(
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    stop_reason: str | None = None,
    **extra: Any,
) -> bytes:
    choice: dict[str, Any] = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    if stop_reason is not None:
        choice["stop_reason"] = stop_reason
    return orjson.dumps({"id": "chatcmpl-1", "model": "gpt-4o", "choices": [choice], **extra})


def _usage(prompt: int, completion: int, cached: int = 0) -> bytes:
    usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion}
    if cached:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return orjson.dumps({"id": "chatcmpl-1", "model": "gpt-4o", "choices": [], "usage": usage})


def _call(index: int, arguments: str, call_id: str | None = None, name: str | None = None) -> bytes:
    piece: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        piece.update(id=call_id, type="function")
        piece["function"]["name"] = name
    return _chunk({"tool_calls": [piece]})


def _events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """``(event, data)`` pairs, checking each frame's two lines agree."""
    out = []
    for frame in raw.decode().split("\n\n"):
        if not frame:
            continue
        kind_line, data_line = frame.split("\n")
        kind = kind_line.removeprefix("event: ")
        data = orjson.loads(data_line.removeprefix("data: "))
        assert data["type"] == kind
        out.append((kind, data))
    return out


def _run(chunks: list[bytes], stops: tuple[str, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    events = EventTranslator("public-model", stops)
    raw = b"".join(events.feed(chunk) for chunk in chunks) + events.finish()
    return _events(raw)


def _shape(events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Event names, with each block's kind and each delta's type."""
    out = []
    for kind, data in events:
        if kind == "content_block_start":
            out.append(f"start {data['index']} {data['content_block']['type']}")
        elif kind == "content_block_delta":
            out.append(f"delta {data['index']} {data['delta']['type']}")
        elif kind == "content_block_stop":
            out.append(f"stop {data['index']}")
        else:
            out.append(kind)
    return out


def test_a_text_stream() -> None:
    events = _run(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"content": "Hel"}),
            _chunk({"content": "lo"}),
            _chunk({}, "stop"),
            _usage(12, 2),
        ]
    )
    assert _shape(events) == [
        "message_start",
        "start 0 text",
        "delta 0 text_delta",
        "delta 0 text_delta",
        "stop 0",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["id"] == "msg_1" and start["model"] == "gpt-4o"
    assert start["content"] == [] and start["stop_reason"] is None
    assert events[1][1]["content_block"] == {"type": "text", "text": ""}
    assert [d["delta"]["text"] for k, d in events if k == "content_block_delta"] == ["Hel", "lo"]
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {
            "input_tokens": 12,
            "output_tokens": 2,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        },
    }


def test_signed_thinking_then_text() -> None:
    # As the Anthropic adapter streams it: reasoning pieces, the whole
    # signed block as the thinking block ends, then the answer.
    whole = {"type": "thinking", "thinking": "Hmm.", "signature": "c2ln"}
    events = _run(
        [
            _chunk({"reasoning_content": "Hm"}),
            _chunk({"reasoning_content": "m."}),
            _chunk({"thinking_blocks": [whole]}),
            _chunk({"content": "Yes."}),
            _chunk({}, "stop"),
        ]
    )
    assert _shape(events) == [
        "message_start",
        "start 0 thinking",
        "delta 0 thinking_delta",
        "delta 0 thinking_delta",
        "delta 0 signature_delta",
        "stop 0",
        "start 1 text",
        "delta 1 text_delta",
        "stop 1",
        "message_delta",
        "message_stop",
    ]
    assert events[4][1]["delta"] == {"type": "signature_delta", "signature": "c2ln"}


def test_unsigned_reasoning_closes_when_the_text_starts() -> None:
    events = _run([_chunk({"reasoning_content": "Think."}), _chunk({"content": "Done."})])
    assert _shape(events)[1:6] == [
        "start 0 thinking",
        "delta 0 thinking_delta",
        "stop 0",
        "start 1 text",
        "delta 1 text_delta",
    ]
    assert events[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}


def test_a_redacted_thinking_block_is_sent_whole() -> None:
    events = _run([_chunk({"thinking_blocks": [{"type": "redacted_thinking", "data": "b3Bh"}]})])
    assert _shape(events)[1:3] == ["start 0 redacted_thinking", "stop 0"]
    assert events[1][1]["content_block"] == {"type": "redacted_thinking", "data": "b3Bh"}


def test_tool_call_pieces_are_input_json_deltas() -> None:
    events = _run(
        [
            _chunk({"content": "Checking."}),
            _call(0, "", "call_1", "get_weather"),
            _call(0, '{"city"'),
            _call(0, ': "Paris"}'),
            _chunk({}, "tool_calls"),
        ]
    )
    assert _shape(events) == [
        "message_start",
        "start 0 text",
        "delta 0 text_delta",
        "stop 0",
        "start 1 tool_use",
        "delta 1 input_json_delta",
        "delta 1 input_json_delta",
        "stop 1",
        "message_delta",
        "message_stop",
    ]
    assert events[4][1]["content_block"] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "get_weather",
        "input": {},
    }
    pieces = [d["delta"].get("partial_json", "") for k, d in events if k == "content_block_delta"]
    assert "".join(pieces) == '{"city": "Paris"}'
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_interleaved_parallel_calls_come_out_one_block_after_another() -> None:
    events = _run(
        [
            _call(0, "", "call_a", "get_weather"),
            _call(1, "", "call_b", "get_time"),
            _call(0, '{"city":'),
            _call(1, '{"offset":'),
            _call(0, '"Paris"}'),
            _call(1, "3}"),
            _chunk({}, "tool_calls"),
        ]
    )
    assert _shape(events) == [
        "message_start",
        "start 0 tool_use",
        "delta 0 input_json_delta",
        "delta 0 input_json_delta",
        "stop 0",
        "start 1 tool_use",
        "delta 1 input_json_delta",
        "stop 1",
        "message_delta",
        "message_stop",
    ]
    assert events[5][1]["content_block"]["id"] == "call_b"
    assert events[6][1]["delta"]["partial_json"] == '{"offset":3}'


def test_arguments_after_a_call_ended_are_an_upstream_error() -> None:
    events = EventTranslator("m")
    events.feed(_call(0, "{}", "call_a", "f"))
    events.feed(_chunk({"content": "text"}))
    with pytest.raises(UpstreamProtocolError):
        events.feed(_call(0, "more"))


def test_a_ping_before_the_first_chunk_starts_the_message() -> None:
    events = EventTranslator("public-model")
    first = _events(events.ping())
    assert [kind for kind, _ in first] == ["message_start", "ping"]
    assert first[0][1]["message"]["model"] == "public-model"
    assert first[0][1]["message"]["id"].startswith("msg_")
    later = _events(events.ping() + events.feed(_chunk({"content": "x"})))
    assert [kind for kind, _ in later] == ["ping", "content_block_start", "content_block_delta"]


def test_azures_prompt_filter_chunk_does_not_start_the_message() -> None:
    events = EventTranslator("azure")
    filters = orjson.dumps({"id": "", "model": "", "choices": [], "prompt_filter_results": []})
    assert events.feed(filters) == b""
    assert _events(events.feed(_chunk({"content": "x"})))[0][1]["message"]["id"] == "msg_1"


def test_stop_reasons_and_stop_sequences() -> None:
    assert _run([_chunk({"content": "x"}, "length")])[-2][1]["delta"]["stop_reason"] == "max_tokens"
    filtered = _run([_chunk({"content": "x"}, "content_filter")])
    assert filtered[-2][1]["delta"]["stop_reason"] == "refusal"
    matched = _run([_chunk({"content": "1, 2"}, "stop")], ("END",))
    assert matched[-2][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    vllm = _run(
        [
            orjson.dumps(
                {
                    "id": "c",
                    "model": "m",
                    "choices": [
                        {"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "END"}
                    ],
                }
            )
        ],
        ("END",),
    )
    assert vllm[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}


def test_usage_with_cache_reads_comes_in_message_delta() -> None:
    events = _run([_chunk({"content": "x"}, "stop"), _usage(150, 3, cached=100)])
    assert events[-2][1]["usage"]["input_tokens"] == 50
    assert events[-2][1]["usage"]["cache_read_input_tokens"] == 100


def test_an_empty_stream_still_has_the_whole_envelope() -> None:
    assert _shape(_run([])) == ["message_start", "message_delta", "message_stop"]


def test_a_chunk_that_is_not_json_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamProtocolError):
        EventTranslator("m").feed(b"{not json")


# Texts a repeated chunk carries: read without parsing where they need no
# escapes, parsed where they do (or are empty); the events are the same.
TEXTS = ["Hel", "lo", " wörld 中", ' "quoted" ', "back\\slash", "new\nline", "", "%d %s", "end"]


def test_repeated_text_chunks_make_the_same_events_as_parsed_ones() -> None:
    chunks = [_chunk({"role": "assistant", "content": ""})]
    events = _run([*chunks, *(_chunk({"content": text}) for text in TEXTS), _chunk({}, "stop")])
    assert _shape(events) == [
        "message_start",
        "start 0 text",
        *["delta 0 text_delta"] * len([text for text in TEXTS if text]),
        "stop 0",
        "message_delta",
        "message_stop",
    ]
    deltas = [d["delta"]["text"] for k, d in events if k == "content_block_delta"]
    assert deltas == [text for text in TEXTS if text]


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])  # reasoning: vLLM's name
def test_repeated_thinking_chunks_make_the_same_events_as_parsed_ones(field: str) -> None:
    chunks = [_chunk({field: text}) for text in TEXTS]
    events = _run([*chunks, _chunk({"content": "Done."})])
    deltas = [d["delta"] for k, d in events if k == "content_block_delta"]
    assert deltas == [
        *({"type": "thinking_delta", "thinking": text} for text in TEXTS if text),
        {"type": "text_delta", "text": "Done."},
    ]


def test_a_repeated_chunk_that_is_not_utf8_is_an_upstream_error() -> None:
    events = EventTranslator("m")
    events.feed(_chunk({"content": "ab"}))
    events.feed(_chunk({"content": "cd"}))
    with pytest.raises(UpstreamProtocolError):
        events.feed(_chunk({"content": "ef"}).replace(b'"ef"', b'"\xff"'))


SEARCH_CALL = {
    "type": "server_tool_use",
    "id": "srvtoolu_1",
    "name": "web_search",
    "input": {"q": "x"},
}
SEARCH_RESULT = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1", "content": []}
CITATION = {"type": "web_search_result_location", "url": "https://a.example", "cited_text": "A"}


def test_an_anthropic_upstreams_server_blocks_and_citations_keep_their_blocks() -> None:
    events = _run(
        [
            _chunk({"role": "assistant", "content": "Let me look."}),
            _chunk({"anthropic_block": SEARCH_CALL}),
            _chunk({"anthropic_block": SEARCH_RESULT}),
            _chunk({"anthropic_text": True}),
            _chunk({"anthropic_citation": CITATION}),
            _chunk({"content": "A says so."}),
            _chunk({"anthropic_text": True}),
            _chunk({"content": " Done."}),
            _chunk(finish="stop"),
        ]
    )
    assert _shape(events)[1:-2] == [
        "start 0 text",
        "delta 0 text_delta",
        "stop 0",
        "start 1 server_tool_use",
        "delta 1 input_json_delta",
        "stop 1",
        "start 2 web_search_tool_result",
        "stop 2",
        "start 3 text",
        "delta 3 citations_delta",
        "delta 3 text_delta",
        "stop 3",
        "start 4 text",
        "delta 4 text_delta",
        "stop 4",
    ]
    starts = [data for kind, data in events if kind == "content_block_start"]
    assert starts[1]["content_block"] == {**SEARCH_CALL, "input": {}}
    assert starts[2]["content_block"] == SEARCH_RESULT
    deltas = [data["delta"] for kind, data in events if kind == "content_block_delta"]
    assert orjson.loads(deltas[1]["partial_json"]) == {"q": "x"}
    assert deltas[2] == {"type": "citations_delta", "citation": CITATION}


def test_a_paused_turn_is_a_pause_turn() -> None:
    events = _run(
        [
            _chunk({"anthropic_block": SEARCH_RESULT}),
            _chunk(finish="stop", stop_reason="pause_turn"),
        ]
    )
    assert events[-2][1]["delta"] == {"stop_reason": "pause_turn", "stop_sequence": None}
