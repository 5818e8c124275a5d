"""Cache keys: the fields that decide an answer split the cache, the rest do not."""

from __future__ import annotations

from typing import Any

import pytest

from interlock.cache.keys import body_digest, embedding_input_digest, storage_key
from tests.cache.support import chat_body

BASE = chat_body()


@pytest.mark.parametrize(
    "extra",
    [
        {"user": "someone"},
        {"stream": True},
        {"stream_options": {"include_usage": True}},
        {"metadata": {"trace": "x"}},
        {"store": True},
        {"service_tier": "auto"},
        {"model": "another-alias"},  # the model group is keyed separately
        {"seed": None},  # null is OpenAI's "absent"
        {"n": 1},  # the default
        {"temperature": 0.0},  # 0 and 0.0 are one value
    ],
)
def test_fields_that_do_not_change_the_answer_share_a_key(extra: dict[str, Any]) -> None:
    assert body_digest({**BASE, **extra}) == body_digest(BASE)


@pytest.mark.parametrize(
    "extra",
    [
        {"messages": [{"role": "user", "content": "Say goodbye"}]},
        {"messages": [{"role": "system", "content": "Say hello"}]},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
        {"tool_choice": "required"},
        {"functions": [{"name": "f"}]},
        {"response_format": {"type": "json_object"}},
        {"temperature": 0.5},
        {"top_p": 0.5},
        {"n": 2},
        {"stop": ["\n"]},
        {"seed": 7},
        {"max_tokens": 10},
        {"max_completion_tokens": 10},
        {"presence_penalty": 1},
        {"frequency_penalty": 1},
        {"logit_bias": {"50256": -100}},
        {"logprobs": True},
        {"top_logprobs": 2},
        {"reasoning_effort": "high"},  # unknown to us, so it must split
    ],
)
def test_fields_that_change_the_answer_split_the_key(extra: dict[str, Any]) -> None:
    assert body_digest({**BASE, **extra}) != body_digest(BASE)


def test_key_order_inside_messages_does_not_matter() -> None:
    a = {**BASE, "messages": [{"role": "user", "content": "hi", "name": "n"}]}
    b = {**BASE, "messages": [{"name": "n", "content": "hi", "role": "user"}]}
    assert body_digest(a) == body_digest(b)


def test_a_single_stop_string_is_the_one_element_list() -> None:
    assert body_digest({**BASE, "stop": "END"}) == body_digest({**BASE, "stop": ["END"]})


def test_chat_and_embedding_digests_never_collide() -> None:
    body = {"model": "m", "input": "x"}
    assert body_digest(body) != body_digest(body, embedding=True)


def test_embedding_digest_ignores_input_and_encoding() -> None:
    a = {"model": "m", "input": ["x"], "encoding_format": "base64", "user": "u"}
    b = {"model": "m", "input": ["y", "z"]}
    assert body_digest(a, embedding=True) == body_digest(b, embedding=True)
    assert body_digest({**b, "dimensions": 8}, embedding=True) != body_digest(b, embedding=True)
    assert embedding_input_digest("x") != embedding_input_digest([120])


def test_storage_key_separates_namespace_model_and_generations() -> None:
    digest = body_digest(BASE)
    key = storage_key("key:alice", "sim", (0, 0), digest)
    assert key == storage_key("key:alice", "sim", (0, 0), digest)
    others = {
        storage_key("key:bob", "sim", (0, 0), digest),
        storage_key("key:alice", "other", (0, 0), digest),
        storage_key("key:alice", "sim", (1, 0), digest),
        storage_key("key:alice", "sim", (0, 1), digest),
        # Field boundaries are part of the hash: no sliding text across them.
        storage_key("key:alicesim", "", (0, 0), digest),
    }
    assert key not in others
    assert len(others) == 5


def test_each_dialect_has_its_own_keys_and_openais_are_unchanged() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    openai = body_digest(body)
    assert body_digest(body, dialect="openai") == openai
    others = {body_digest(body, dialect=d) for d in ("anthropic", "responses", "completions")}
    assert len(others) == 3 and openai not in others


def test_the_betas_a_client_asked_for_are_part_of_the_key() -> None:
    """A beta header reaches an Anthropic upstream and can change its answer."""
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    plain = body_digest(body, dialect="anthropic")
    assert body_digest(body, dialect="anthropic", dialect_headers={}) == plain
    beta = {"anthropic-beta": "interleaved-thinking-2025-05-14"}
    other = {"anthropic-beta": "context-management-2025-06-27"}
    keys = {plain, body_digest(body, dialect="anthropic", dialect_headers=beta)}
    keys.add(body_digest(body, dialect="anthropic", dialect_headers=other))
    assert len(keys) == 3
