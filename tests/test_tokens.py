from __future__ import annotations

import asyncio
import random

from interlock.tokens import (
    EstimatingCounter,
    TiktokenCounter,
    count_chat_prompt,
    count_chat_request,
    count_text,
    default_counter,
    message_text,
)


def test_default_counter_is_the_real_offline_tokenizer() -> None:
    counter = default_counter()
    assert isinstance(counter, TiktokenCounter)
    # cl100k_base: "hello world" is two tokens.
    assert counter.count("hello world") == 2


def test_estimator_is_roughly_four_characters_a_token() -> None:
    assert EstimatingCounter().count("abcdefgh") == 2
    assert EstimatingCounter().count("") == 0


def test_message_text_handles_parts() -> None:
    parts = [
        {"type": "text", "text": "a"},
        {"type": "image_url", "image_url": {}},
        {"type": "text", "text": "b"},
    ]
    assert message_text(parts) == "ab"
    assert message_text(None) == ""


async def test_chat_prompt_counts_framing() -> None:
    counter = EstimatingCounter()
    assert await count_chat_prompt(counter, [{"role": "user", "content": "abcd"}]) == 3 + 3 + 1


async def test_calls_in_the_history_count_function_and_custom_alike() -> None:
    counter = EstimatingCounter()
    function = {"name": "edit", "arguments": '{"input":"abcdefgh"}'}
    custom = {"name": "edit", "input": "abcdefgh"}
    asked = {"role": "user", "content": "abcd"}

    def body(call: dict[str, object]) -> dict[str, object]:
        turn = {"role": "assistant", "content": None, "tool_calls": [call]}
        return {"model": "m", "messages": [asked, turn]}

    bare = await count_chat_request(counter, {"model": "m", "messages": [asked]})
    as_function = await count_chat_request(
        counter, body({"id": "c", "type": "function", "function": function})
    )
    as_custom = await count_chat_request(
        counter, body({"id": "c", "type": "custom", "custom": custom})
    )
    # The input text itself, without the JSON around it: "edit" + 8 characters.
    assert as_custom - bare == 3 + 3
    assert as_function > as_custom


async def test_a_long_text_counted_in_pieces_counts_as_a_whole() -> None:
    """Pieces are cut before spaces, where the tokenizer's pieces start."""
    counter = TiktokenCounter()
    rng = random.Random(3)
    words = ["the", "gateway", "  ", "routes", "\n\n", "naïve", "東京", "x" * 40, ",", "42"]
    text = " ".join(rng.choice(words) for _ in range(20_000))
    assert len(text) > 10 * 8192
    assert await count_text(counter, text) == counter.count(text)


async def test_counting_a_long_text_gives_the_loop_turns() -> None:
    counter = TiktokenCounter()
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    await count_text(counter, "hello world " * 50_000)
    other.cancel()
    assert turns > 10
