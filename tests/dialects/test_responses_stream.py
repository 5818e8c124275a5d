"""Chat chunks as Responses stream events: the order, the strictly
increasing sequence numbers, and the finished Response; every event is
parsed and accumulated by the ``openai`` SDK's own stream state."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest
from openai import omit
from openai.lib.streaming.responses import ResponseStreamState
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from interlock.dialects.chunks import RepeatedChunks
from interlock.dialects.responses.answer import output_items, response_shell
from interlock.dialects.responses.request import decode_thinking
from interlock.dialects.responses.schemas import validate_request
from interlock.dialects.responses.stream import ResponseEvents
from interlock.errors import UpstreamProtocolError

EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
USAGE = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}


def _chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, model: str = "served"
) -> bytes:
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish}
    return orjson.dumps({"object": "chat.completion.chunk", "model": model, "choices": [choice]})


def _parsed(raw: bytes) -> list[dict[str, Any]]:
    """The events written out, checking each frame's two lines agree."""
    out = []
    for frame in raw.decode().split("\n\n"):
        if not frame:
            continue
        kind_line, data_line = frame.split("\n")
        data = orjson.loads(data_line.removeprefix("data: "))
        assert kind_line == f"event: {data['type']}"
        out.append(data)
    return out


def _run(chunks: list[bytes], **asked: Any) -> tuple[list[dict[str, Any]], Any]:
    """Every event of the stream, and the SDK's final response from them."""
    request = validate_request({"model": "m", "input": "Hi", "stream": True, **asked})
    events = ResponseEvents(response_shell(request, "resp_1", 1))
    raw = events.start()
    usage = {"object": "chat.completion.chunk", "choices": [], "usage": USAGE}
    for chunk in [*chunks, orjson.dumps(usage)]:
        raw += events.feed(chunk)
    out = _parsed(raw + events.finish())
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for event in out:
        state.handle_event(EVENT.validate_python(event))
    numbers = [event["sequence_number"] for event in out]
    assert numbers == list(range(len(out)))  # strictly increasing, from 0
    assert events.response is not None and out[-1]["response"] == events.response
    return out, state._completed_response


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"].removeprefix("response.") for event in events]


def test_text_stream_events_in_order() -> None:
    events, final = _run(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"content": "Hel"}),
            _chunk({"content": "lo"}),
            _chunk(finish="stop"),
        ]
    )
    assert _types(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.delta",
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "completed",
    ]
    item_id = events[2]["item"]["id"]
    assert events[2]["item"]["status"] == "in_progress"
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert [(e["item_id"], e["output_index"], e["content_index"], e["delta"]) for e in deltas] == [
        (item_id, 0, 0, "Hel"),
        (item_id, 0, 0, "lo"),
    ]
    assert events[6]["text"] == "Hello"
    assert events[0]["response"]["status"] == "in_progress"
    assert final.output_text == "Hello" and final.status == "completed"
    assert final.usage.input_tokens == 9 and final.usage.total_tokens == 13
    assert final.model == "served"


def test_parallel_tool_calls_interleaved_keep_their_items() -> None:
    opened = [
        {
            "index": 0,
            "id": "call_a",
            "type": "function",
            "function": {"name": "f", "arguments": ""},
        },
        {
            "index": 1,
            "id": "call_b",
            "type": "function",
            "function": {"name": "g", "arguments": ""},
        },
    ]
    events, final = _run(
        [
            _chunk({"content": "Checking."}),
            _chunk({"tool_calls": opened[:1]}),
            _chunk({"tool_calls": opened[1:]}),
            _chunk({"tool_calls": [{"index": 1, "function": {"arguments": '{"b":'}}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":1}'}}]}),
            _chunk({"tool_calls": [{"index": 1, "function": {"arguments": "2}"}}]}),
            _chunk(finish="tool_calls"),
        ],
        tools=[{"type": "function", "name": "f"}, {"type": "function", "name": "g"}],
    )
    assert _types(events)[-8:] == [
        "function_call_arguments.delta",
        "function_call_arguments.delta",
        "function_call_arguments.delta",
        "function_call_arguments.done",
        "output_item.done",
        "function_call_arguments.done",
        "output_item.done",
        "completed",
    ]
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(e["output_index"], e["name"], e["arguments"]) for e in done] == [
        (1, "f", '{"a":1}'),
        (2, "g", '{"b":2}'),
    ]
    # The text item closed when the first call opened.
    assert _types(events).index("output_item.done") < _types(events).index("output_item.added", 5)
    assert [(o.type, getattr(o, "call_id", None)) for o in final.output] == [
        ("message", None),
        ("function_call", "call_a"),
        ("function_call", "call_b"),
    ]
    assert final.output[2].arguments == '{"b":2}'


def test_a_custom_tool_call_streams_its_input_beside_a_function_call() -> None:
    opened = [
        {"index": 0, "id": "call_a", "type": "custom", "custom": {"name": "patch", "input": ""}},
        {
            "index": 1,
            "id": "call_b",
            "type": "function",
            "function": {"name": "f", "arguments": ""},
        },
    ]
    events, final = _run(
        [
            _chunk({"tool_calls": opened}),
            _chunk({"tool_calls": [{"index": 0, "custom": {"input": '*** "a"\n'}}]}),
            _chunk({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
            _chunk({"tool_calls": [{"index": 0, "custom": {"input": "b"}}]}),
            _chunk(finish="tool_calls"),
        ],
        tools=[{"type": "custom", "name": "patch"}, {"type": "function", "name": "f"}],
    )
    assert _types(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "output_item.added",
        "custom_tool_call_input.delta",
        "function_call_arguments.delta",
        "custom_tool_call_input.delta",
        "custom_tool_call_input.done",
        "output_item.done",
        "function_call_arguments.done",
        "output_item.done",
        "completed",
    ]
    added = events[2]["item"]
    assert added["type"] == "custom_tool_call" and added["id"].startswith("ctc_")
    assert (added["call_id"], added["name"], added["input"]) == ("call_a", "patch", "")
    deltas = [e for e in events if e["type"] == "response.custom_tool_call_input.delta"]
    assert [(e["item_id"], e["output_index"], e["delta"]) for e in deltas] == [
        (added["id"], 0, '*** "a"\n'),
        (added["id"], 0, "b"),
    ]
    assert events[7]["input"] == '*** "a"\nb'
    call = final.output[0]
    assert (call.type, call.call_id, call.name, call.input) == (
        "custom_tool_call",
        "call_a",
        "patch",
        '*** "a"\nb',
    )
    assert final.output[1].type == "function_call"


def test_reasoning_is_a_summary_item_closed_when_text_starts() -> None:
    blocks = [{"type": "thinking", "thinking": "Let me think.", "signature": "sig"}]
    events, final = _run(
        [
            _chunk({"reasoning_content": "Let me "}),
            _chunk({"reasoning_content": "think."}),
            _chunk({"thinking_blocks": blocks}),
            _chunk({"content": "Paris"}),
            _chunk(finish="stop"),
        ]
    )
    assert _types(events)[2:11] == [
        "output_item.added",
        "reasoning_summary_part.added",
        "reasoning_summary_text.delta",
        "reasoning_summary_text.delta",
        "reasoning_summary_text.done",
        "reasoning_summary_part.done",
        "output_item.done",
        "output_item.added",
        "content_part.added",
    ]
    reasoning = final.output[0]
    assert reasoning.type == "reasoning" and reasoning.summary[0].text == "Let me think."
    assert decode_thinking(reasoning.encrypted_content, "x") == blocks
    assert final.output_text == "Paris"


def test_length_ends_with_response_incomplete() -> None:
    events, _ = _run([_chunk({"content": "Hel"}), _chunk(finish="length")], max_output_tokens=1)
    last = events[-1]
    assert last["type"] == "response.incomplete"
    assert last["response"]["status"] == "incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert events[-2]["item"]["status"] == "incomplete"


def test_an_empty_stream_is_one_empty_message() -> None:
    events, final = _run([_chunk(finish="stop")])
    assert final.output_text == "" and len(final.output) == 1
    assert _types(events)[-1] == "completed"


def test_a_refusal_is_the_message_s_refusal_part_as_in_the_unary_answer() -> None:
    said = ["I can", "'t help ", 'with "that".']
    chunks = [_chunk({"role": "assistant", "content": None, "refusal": ""})]
    events, final = _run([*chunks, *(_chunk({"refusal": s}) for s in said), _chunk(finish="stop")])
    assert _types(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "content_part.added",
        "refusal.delta",
        "refusal.delta",
        "refusal.delta",
        "refusal.done",
        "content_part.done",
        "output_item.done",
        "completed",
    ]
    assert events[3]["part"] == {"type": "refusal", "refusal": ""}
    deltas = [e for e in events if e["type"] == "response.refusal.delta"]
    assert {(e["content_index"], e["output_index"]) for e in deltas} == {(0, 0)}
    assert [e["delta"] for e in deltas] == said
    refusal = {"type": "refusal", "refusal": "".join(said)}
    assert events[7]["refusal"] == refusal["refusal"] and events[8]["part"] == refusal
    [message] = final.output
    assert [part.model_dump() for part in message.content] == [refusal]
    unary = output_items({"role": "assistant", "content": None, "refusal": "".join(said)}, "x")
    assert unary[0]["content"] == [refusal]


def test_a_refusal_after_text_is_the_message_s_second_part() -> None:
    events, final = _run(
        [_chunk({"content": "Well."}), _chunk({"refusal": "No."}), _chunk(finish="stop")]
    )
    added = [e["part"]["type"] for e in events if e["type"] == "response.content_part.added"]
    assert added == ["output_text", "refusal"]
    [delta] = [e for e in events if e["type"] == "response.refusal.delta"]
    assert delta["content_index"] == 1
    [message] = final.output
    assert [part.type for part in message.content] == ["output_text", "refusal"]
    assert final.output_text == "Well." and message.content[1].refusal == "No."


def test_text_after_a_refusal_is_a_message_of_its_own() -> None:
    chunks = [_chunk({"refusal": "No."}), _chunk({"content": "But"}), _chunk({"content": " yes"})]
    events, final = _run([*chunks, _chunk(finish="stop")])
    first, second = final.output
    assert [part.type for part in first.content] == ["refusal"]
    assert [part.type for part in second.content] == ["output_text"]
    assert final.output_text == "But yes"
    texts = [e for e in events if e["type"] == "response.output_text.delta"]
    assert {(e["output_index"], e["content_index"]) for e in texts} == {(1, 0)}


def test_the_tier_an_upstream_reports_is_the_response_s() -> None:
    served = orjson.loads(_chunk({"role": "assistant", "content": "Hi"}))
    _, final = _run([orjson.dumps({**served, "service_tier": "default"})], service_tier="auto")
    assert final.service_tier == "default"
    _, asked = _run([_chunk({"content": "Hi"})], service_tier="flex")
    assert asked.service_tier == "flex"


def test_error_event_continues_the_sequence() -> None:
    request = validate_request({"model": "m", "input": "Hi", "stream": True})
    events = ResponseEvents(response_shell(request, "resp_1", 1))
    started = _parsed(events.start() + events.feed(_chunk({"content": "Hi"})))
    [error] = _parsed(events.error("upstream_error", "The upstream failed.", None))
    assert error == {
        "type": "error",
        "sequence_number": len(started),
        "code": "upstream_error",
        "message": "The upstream failed.",
        "param": None,
    }
    EVENT.validate_python(error)


def test_a_chunk_that_is_not_json_is_an_upstream_error() -> None:
    request = validate_request({"model": "m", "input": "Hi", "stream": True})
    events = ResponseEvents(response_shell(request, "resp_1", 1))
    with pytest.raises(UpstreamProtocolError):
        events.feed(b"{not json")
    with pytest.raises(UpstreamProtocolError):
        events.feed(b"[]")


# Texts a repeated chunk carries: read without parsing where they need no
# escapes, parsed where they do (or are empty); the events are the same.
TEXTS = ["Hel", "lo", " wörld 中", ' "quoted" ', "back\\slash", "new\nline", "", "%d %s", "end"]


def test_repeated_text_chunks_make_the_same_events_as_parsed_ones() -> None:
    chunks = [_chunk({"role": "assistant", "content": ""})]
    chunks += [_chunk({"content": text}) for text in TEXTS]
    events, final = _run([*chunks, _chunk(finish="stop")])
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert deltas == [text for text in TEXTS if text]
    assert final.output_text == "".join(TEXTS)


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])  # reasoning: vLLM's name
def test_repeated_reasoning_chunks_make_the_same_events_as_parsed_ones(field: str) -> None:
    chunks = [_chunk({field: text}) for text in TEXTS]
    events, final = _run([*chunks, _chunk({"content": "Done."}), _chunk(finish="stop")])
    deltas = [e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta"]
    assert deltas == [text for text in TEXTS if text]
    assert final.output[0].summary[0].text == "".join(TEXTS)
    assert final.output_text == "Done."


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_a_reasoning_chunk_is_learned_by_either_name(field: str) -> None:
    repeats = RepeatedChunks(frozenset({field, "content"}))
    learned = _chunk({field: "a"})
    assert repeats.learn(learned, orjson.loads(learned))
    assert repeats.match(_chunk({field: "b"})) == b'"b"' and repeats.field == field


def test_the_model_is_the_last_chunk_s_even_between_repeated_chunks() -> None:
    chunks = [
        _chunk({"content": "a"}),
        _chunk({"content": "b"}),
        _chunk({"content": "c"}, model="x"),
    ]
    _, final = _run([*chunks, _chunk({"content": "d"}), _chunk({"content": "e"})])
    assert final.output_text == "abcde" and final.model == "served"


def test_a_repeated_chunk_that_is_not_utf8_is_an_upstream_error() -> None:
    request = validate_request({"model": "m", "input": "Hi", "stream": True})
    events = ResponseEvents(response_shell(request, "resp_1", 1))
    events.feed(_chunk({"content": "ab"}))
    events.feed(_chunk({"content": "cd"}))
    with pytest.raises(UpstreamProtocolError):
        events.feed(_chunk({"content": "ef"}).replace(b'"ef"', b'"\xff"'))


# Pieces whose JSON strings end or start with an escaped quote or backslash:
# where pieces meet, ``""`` is not always the closing and opening quotes.
EDGES = ['say "', '"', '""', "ends\\", "\\", '\\"', '"starts', "x"]


@pytest.mark.parametrize("start", range(len(EDGES)))
def test_pieces_that_meet_at_quotes_and_backslashes_join_into_the_text(start: int) -> None:
    texts = EDGES[start:] + EDGES[:start]
    arguments = [{"index": 0, "id": "call_a", "function": {"name": "f", "arguments": ""}}]
    arguments += [{"index": 0, "function": {"arguments": text}} for text in texts]
    chunks = [_chunk({"content": text}) for text in texts]
    chunks += [_chunk({"tool_calls": [piece]}) for piece in arguments]
    events, final = _run(
        [*chunks, _chunk(finish="tool_calls")], tools=[{"type": "function", "name": "f"}]
    )
    joined = "".join(texts)
    texts_done = [e["text"] for e in events if e["type"] == "response.output_text.done"]
    arguments_done = [
        e["arguments"] for e in events if e["type"] == "response.function_call_arguments.done"
    ]
    assert texts_done == [joined] and arguments_done == [joined]
    assert final.output_text == joined and final.output[1].arguments == joined


def test_random_pieces_of_quotes_and_backslashes_join_into_the_text() -> None:
    rng = random.Random(18)
    for _ in range(300):
        texts = ["".join(rng.choices('"\\a\n', k=rng.randint(1, 4))) for _ in range(5)]
        pieces = [{"index": 0, "id": "call_a", "function": {"name": "f", "arguments": ""}}]
        pieces += [{"index": 0, "function": {"arguments": text}} for text in texts]
        events, _ = _run([_chunk({"tool_calls": [piece]}) for piece in pieces])
        done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
        assert done[0]["arguments"] == "".join(texts), texts


def test_chunks_with_logprobs_keep_them_even_when_they_repeat_byte_for_byte() -> None:
    # Two identical chunks (the same token, the same entry): the second must
    # not be taken for a learned plain chunk, whose delta carries no logprobs.
    # A delta of two tokens, so its text is written once in the chunk.
    entries = [
        {"token": token, "logprob": -0.5, "bytes": list(token.encode()), "top_logprobs": []}
        for token in ("ha", " ho")
    ]
    choice = {
        "index": 0,
        "delta": {"content": "ha ho"},
        "logprobs": {"content": entries},
        "finish_reason": None,
    }
    same = orjson.dumps({"object": "chat.completion.chunk", "model": "m", "choices": [choice]})
    chunks = [_chunk({"role": "assistant", "content": ""})] + [same] * 4
    events, final = _run([*chunks, _chunk(finish="stop")])
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert [e["logprobs"] for e in deltas] == [entries] * 4
    [done] = [e for e in events if e["type"] == "response.output_text.done"]
    assert done["logprobs"] == entries * 4
    assert [t.token for t in final.output[0].content[0].logprobs] == ["ha", " ho"] * 4


def test_logprobs_in_a_shape_not_openai_s_are_left_out_not_a_failure() -> None:
    def odd(logprobs: Any) -> bytes:
        choice = {"index": 0, "delta": {"content": "x"}, "logprobs": logprobs}
        return orjson.dumps({"object": "chat.completion.chunk", "model": "m", "choices": [choice]})

    entry = {"token": "x", "logprob": -0.1, "bytes": [120], "top_logprobs": []}
    chunks = [
        odd("garbage"),
        odd({"content": "nope"}),
        odd({"content": [1, {"token": "x"}, entry]}),  # no logprob: not an entry
    ]
    events, final = _run([*chunks, _chunk(finish="stop")])
    deltas = [e["logprobs"] for e in events if e["type"] == "response.output_text.delta"]
    assert deltas == [[], [], [entry]]
    assert final.output_text == "xxx"


def test_a_web_search_whose_result_never_came_ends_incomplete() -> None:
    call = {"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {"query": "q"}}
    events, final = _run(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"anthropic_block": call}),
            _chunk(finish="stop"),
        ],
        tools=[{"type": "web_search"}],
    )
    kinds = _types(events)
    assert "web_search_call.searching" in kinds and "web_search_call.completed" not in kinds
    [search] = [item for item in final.output if item.type == "web_search_call"]
    assert search.status == "incomplete" and search.action.query == "q"


def test_chats_annotations_are_the_cited_messages_own() -> None:
    call = {"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {"query": "q"}}
    result = {"type": "web_search_tool_result", "tool_use_id": "s1", "content": []}

    def cite(start: int, end: int) -> dict[str, Any]:
        found = {"start_index": start, "end_index": end, "url": "https://a.example", "title": "A"}
        return {"type": "url_citation", "url_citation": found}

    events, final = _run(
        [
            _chunk({"role": "assistant", "content": "Héllo. "}),  # 7 characters, 8 bytes
            _chunk({"anthropic_block": call}),
            _chunk({"anthropic_block": result}),
            _chunk({"anthropic_text": True}),
            _chunk({"content": "Paris."}),
            # Spans of the chat answer's whole content; one outside the open message.
            _chunk({"annotations": [cite(7, 13), cite(0, 6)]}),
            _chunk({"content": " Yes."}),
            _chunk(finish="stop"),
        ],
        tools=[{"type": "web_search"}],
    )
    [added] = [e for e in events if e["type"] == "response.output_text.annotation.added"]
    flat = {"type": "url_citation", "start_index": 0, "end_index": 6}
    expected = {**flat, "url": "https://a.example", "title": "A"}
    assert (added["annotation_index"], added["annotation"]) == (0, expected)
    first, _, second = final.output
    assert first.content[0].annotations == []
    assert [a.model_dump() for a in second.content[0].annotations] == [expected]
    assert second.content[0].text[0:6] == "Paris."
