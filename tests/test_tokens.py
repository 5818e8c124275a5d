from __future__ import annotations

from interlock.tokens import (
    EstimatingCounter,
    TiktokenCounter,
    count_chat_prompt,
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


def test_chat_prompt_counts_framing() -> None:
    counter = EstimatingCounter()
    assert count_chat_prompt(counter, [{"role": "user", "content": "abcd"}]) == 3 + 3 + 1
