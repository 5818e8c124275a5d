"""``body_patch``: RFC 7396's merge, and what a deployment may patch."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from interlock.config import ConfigError, parse_config
from interlock.providers.body_patch import merge_patch

# RFC 7396, appendix A, each case's target a JSON object (a request body is one).
RFC_CASES: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC_CASES)
def test_the_rfc_s_examples(
    target: dict[str, Any], patch: dict[str, Any], expected: dict[str, Any]
) -> None:
    kept = copy.deepcopy(target), copy.deepcopy(patch)
    assert merge_patch(target, patch) == expected
    assert (target, patch) == kept  # neither is changed


def test_what_the_patch_does_not_reach_is_shared_not_copied() -> None:
    messages = [{"role": "user", "content": "hi"}]
    config = {"temperature": 0.3, "maxOutputTokens": 50}
    body = {"contents": messages, "generationConfig": config}
    patched = merge_patch(body, {"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}})
    assert patched["contents"] is messages
    assert patched["generationConfig"] == {**config, "thinkingConfig": {"thinkingBudget": 0}}
    assert "thinkingConfig" not in config


def _deployment(**fields: Any) -> Any:
    raw = {
        "models": [{"name": "m", "deployments": [{"id": "d", **fields}]}],
        "keys": [{"name": "k", "key": "x"}],
    }
    return parse_config(raw, "f.yaml", env={}).models[0].deployments[0]


OPENAI = {"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:8000/v1"}


def test_a_patch_with_nulls_and_nested_objects_loads() -> None:
    patch = {"temperature": None, "chat_template_kwargs": {"enable_thinking": False}}
    assert _deployment(**OPENAI, body_patch=patch).body_patch == patch


@pytest.mark.parametrize("key", ["model", "stream", "messages", "input", "contents", "system"])
def test_the_model_the_stream_and_the_conversation_are_not_patched(key: str) -> None:
    with pytest.raises(ConfigError, match=f"`body_patch` cannot set `{key}`"):
        _deployment(**OPENAI, body_patch={key: None})


@pytest.mark.parametrize("provider", ["simulator", "kserve", "onnx"])
def test_only_chat_upstreams_take_a_patch(provider: str) -> None:
    fields = {"provider": provider, "model": "m", "base_url": "http://127.0.0.1:9000"}
    with pytest.raises(ConfigError, match="`body_patch` is for chat upstreams"):
        _deployment(**fields, body_patch={"temperature": 1})
