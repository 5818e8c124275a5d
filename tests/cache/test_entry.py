"""The stored answer: JSON and streaming replay, and rebuilding it from a stream."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from interlock.cache.accumulate import StreamAccumulator
from interlock.cache.entry import CacheEntry, split_text
from tests.cache.support import USAGE, completion, parse, stream_chunks, text_of

LONG = "The quick brown fox jumps over the lazy dog. " * 6 + "Überraschung! 🦊 end"
TOOL_CALL: dict[str, Any] = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "c"}'},
}


def entry_of(result: dict[str, Any]) -> CacheEntry:
    entry = CacheEntry.from_completion(result, cost_usd=0.25)
    assert entry is not None
    return entry


def sdk_reassemble(chunks: list[bytes]) -> ChatCompletion:
    """What the official SDK makes of our chunks, validating each one on the way."""
    state: ChatCompletionStreamState[None] = ChatCompletionStreamState()
    for chunk in chunks:
        list(state.handle_chunk(ChatCompletionChunk.model_validate_json(chunk)))
    return state.get_final_completion()


def test_completion_replays_content_and_original_usage_with_a_fresh_id() -> None:
    replayed = entry_of(completion(LONG)).completion("chatcmpl-new", 1234)
    parsed = ChatCompletion.model_validate(replayed)
    assert parsed.id == "chatcmpl-new" and parsed.created == 1234
    assert parsed.choices[0].message.content == LONG
    assert parsed.choices[0].finish_reason == "stop"
    assert replayed["usage"] == USAGE
    assert parsed.system_fingerprint == "fp_1" and parsed.model == "sim-1"


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_replay_is_valid_chunks_with_the_same_text(include_usage: bool) -> None:
    entry = entry_of(completion(LONG))
    chunks = entry.chunks("chatcmpl-new", 99, include_usage=include_usage, piece_chars=16)
    final = sdk_reassemble(chunks)
    assert (
        final.choices[0].message.content
        == entry.completion("x", 1)["choices"][0]["message"]["content"]
    )
    assert text_of(chunks) == LONG
    parsed = parse(chunks)
    assert {p["id"] for p in parsed} == {"chatcmpl-new"}
    assert parsed[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len(parsed) > 5  # split into pieces, not one blob
    if include_usage:
        assert parsed[-1]["choices"] == [] and parsed[-1]["usage"] == USAGE
        assert all(p["usage"] is None for p in parsed[:-1])
        assert final.usage is not None and final.usage.completion_tokens == 7
    else:
        assert all("usage" not in p for p in parsed)
        assert parsed[-1]["choices"][0]["finish_reason"] == "stop"


def test_tool_calls_replay_in_both_forms() -> None:
    result = completion(None, tool_calls=[TOOL_CALL])
    result["choices"][0]["finish_reason"] = "tool_calls"
    entry = entry_of(result)
    message = entry.completion("c", 1)["choices"][0]["message"]
    assert message["tool_calls"] == [TOOL_CALL] and message["content"] is None
    final = sdk_reassemble(entry.chunks("c", 1, include_usage=True))
    calls = final.choices[0].message.tool_calls
    assert calls is not None and calls[0].id == "call_1"
    assert calls[0].function.arguments == TOOL_CALL["function"]["arguments"]  # type: ignore[union-attr]


def test_a_stream_accumulates_back_into_the_same_entry() -> None:
    entry = entry_of(completion(LONG))
    accumulator = StreamAccumulator()
    for chunk in entry.chunks("c", 1, include_usage=True, piece_chars=10):
        accumulator.feed(chunk)
    rebuilt = accumulator.entry(cost_usd=0.25)
    assert rebuilt == entry


def test_upstream_stream_with_fragmented_tool_call_arguments() -> None:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return orjson.dumps({"id": "u", "model": "m", "choices": [choice], "usage": None})

    accumulator = StreamAccumulator()
    accumulator.feed(chunk({"role": "assistant", "content": None}))
    accumulator.feed(
        chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        )
    )
    for part in ('{"city": ', '"Paris", ', '"unit": "c"}'):
        accumulator.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}))
    accumulator.feed(chunk({}, "tool_calls"))
    accumulator.feed(orjson.dumps({"id": "u", "model": "m", "choices": [], "usage": USAGE}))
    entry = accumulator.entry()
    assert entry is not None
    assert entry.choices[0].tool_calls == (TOOL_CALL,)
    assert entry.choices[0].content is None and entry.usage == USAGE


@pytest.mark.parametrize(
    "chunks",
    [
        stream_chunks(["a", "b"])[:-2] + stream_chunks(["a"])[-1:],  # no finish_reason
        stream_chunks(["a", "b"], usage=False),  # no usage: hits would report 0 tokens
        [b"not json", *stream_chunks(["a"])],
        [],
    ],
)
def test_incomplete_streams_make_no_entry(chunks: list[bytes]) -> None:
    accumulator = StreamAccumulator()
    for chunk in chunks:
        accumulator.feed(chunk)
    assert accumulator.entry() is None


def test_stream_with_logprobs_makes_no_entry() -> None:
    chunks = stream_chunks(["a"])
    with_logprobs = orjson.loads(chunks[1])
    with_logprobs["choices"][0]["logprobs"] = {"content": []}
    accumulator = StreamAccumulator()
    for chunk in [chunks[0], orjson.dumps(with_logprobs), *chunks[2:]]:
        accumulator.feed(chunk)
    assert accumulator.entry() is None


def test_accumulator_gives_up_past_its_byte_bound() -> None:
    accumulator = StreamAccumulator(max_bytes=200)
    for chunk in stream_chunks(["word "] * 20):
        accumulator.feed(chunk)
    assert accumulator.entry() is None


@pytest.mark.parametrize(
    "result",
    [
        {**completion(), "usage": None},
        {**completion(), "choices": []},
        completion(audio={"id": "a", "data": "..."}),
        completion(function_call={"name": "f", "arguments": "{}"}),
        {**completion(), "choices": [{**completion()["choices"][0], "logprobs": {"content": []}}]},
        {**completion(), "choices": [{**completion()["choices"][0], "finish_reason": None}]},
    ],
)
def test_unreplayable_completions_make_no_entry(result: dict[str, Any]) -> None:
    assert CacheEntry.from_completion(result) is None


def test_empty_annotations_do_not_block_caching() -> None:
    assert CacheEntry.from_completion(completion(annotations=[])) is not None


def test_bytes_round_trip_and_corruption_is_a_miss() -> None:
    entry = entry_of(completion(LONG, tool_calls=[TOOL_CALL]))
    assert CacheEntry.from_bytes(entry.to_bytes()) == entry
    assert CacheEntry.from_bytes(b"\x00garbage") is None
    assert CacheEntry.from_bytes(b'{"v": 999}') is None
    assert CacheEntry.from_bytes(b'{"v": 1, "m": "x"}') is None


@pytest.mark.parametrize("size", [1, 3, 8, 48, 1000])
@pytest.mark.parametrize("text", ["", "one", LONG, "no-spaces-at-all-" * 10, "a\nb c\n\nd "])
def test_split_text_never_changes_the_text(text: str, size: int) -> None:
    pieces = split_text(text, size)
    assert "".join(pieces) == text
    assert all(0 < len(piece) <= size for piece in pieces)


def test_split_text_prefers_whitespace() -> None:
    assert split_text("hello brave new world", 12) == ["hello brave ", "new world"]


def test_a_custom_tool_call_accumulates_and_replays() -> None:
    """A custom (freeform) tool's call streams its input under ``custom``."""
    custom = {"id": "call_2", "type": "custom", "custom": {"name": "apply_patch", "input": "a\nb"}}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return orjson.dumps({"id": "u", "model": "m", "choices": [choice], "usage": None})

    accumulator = StreamAccumulator()
    accumulator.feed(chunk({"role": "assistant", "content": None}))
    opened = {"index": 0, "id": "call_2", "type": "custom"}
    accumulator.feed(chunk({"tool_calls": [{**opened, "custom": {"name": "apply_patch"}}]}))
    for part in ("a", "\nb"):
        accumulator.feed(chunk({"tool_calls": [{"index": 0, "custom": {"input": part}}]}))
    accumulator.feed(chunk({}, "tool_calls"))
    accumulator.feed(orjson.dumps({"id": "u", "model": "m", "choices": [], "usage": USAGE}))
    entry = accumulator.entry()
    assert entry is not None and entry.choices[0].tool_calls == (custom,)
    message = entry.completion("c", 1)["choices"][0]["message"]
    assert message["tool_calls"] == [custom]
    replayed = StreamAccumulator()
    for again in entry.chunks("c", 1, include_usage=True):
        replayed.feed(again)
    assert replayed.entry() == entry
