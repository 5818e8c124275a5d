"""Anthropic's context edits applied by the gateway for upstreams that do not
apply them: old tool results cleared past a trigger, some tools excluded,
inputs cleared on request, nothing cleared below ``clear_at_least``, and
thinking kept for the last turns only."""

from __future__ import annotations

import copy
from typing import Any

from interlock.pipeline.context_edits import CLEARED, apply_context_edits


def _loop(results: list[str], names: list[str] | None = None) -> list[dict[str, Any]]:
    """A tool loop: one call and its result per entry of ``results``."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "Go"}]
    for n, result in enumerate(results):
        name = (names or [])[n] if names else "read"
        call = {
            "id": f"t{n}",
            "type": "function",
            "function": {"name": name, "arguments": '{"p":1}'},
        }
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"t{n}", "content": result})
    return messages


def _results(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


def _edited(messages: list[dict[str, Any]], *edits: dict[str, Any]) -> dict[str, Any]:
    body = {"model": "m", "messages": messages, "context_management": {"edits": list(edits)}}
    before = copy.deepcopy(body)
    out = apply_context_edits(body)
    assert body == before and "context_management" not in out
    return out


def test_old_results_are_cleared_past_the_trigger_keeping_the_last() -> None:
    edit = {
        "type": "clear_tool_uses_20250919",
        "trigger": {"type": "tool_uses", "value": 2},
        "keep": {"type": "tool_uses", "value": 1},
    }
    assert _results(_edited(_loop(["a", "b"]), edit)) == ["a", "b"]  # at the trigger: no
    assert _results(_edited(_loop(["a", "b", "c"]), edit)) == [CLEARED, CLEARED, "c"]


def test_the_default_trigger_is_input_tokens() -> None:
    edit = {"type": "clear_tool_uses_20250919"}  # 100,000 tokens, keep 3
    small = _loop(["x" * 100] * 5)
    assert _results(_edited(small, edit)) == ["x" * 100] * 5
    big = _loop(["x" * 100_000] * 5)  # 500,000 characters: about 125,000 tokens
    assert _results(_edited(big, edit)) == [CLEARED, CLEARED, *["x" * 100_000] * 3]


def test_excluded_tools_and_cleared_inputs() -> None:
    edit = {
        "type": "clear_tool_uses_20250919",
        "trigger": {"type": "tool_uses", "value": 0},
        "keep": {"type": "tool_uses", "value": 1},
        "exclude_tools": ["memory"],
        "clear_tool_inputs": True,
    }
    out = _edited(_loop(["a", "b", "c"], ["read", "memory", "read"]), edit)
    assert _results(out) == [CLEARED, "b", "c"]
    arguments = [m["tool_calls"][0]["function"]["arguments"] for m in out["messages"][1::2]]
    assert arguments == ["{}", '{"p":1}', '{"p":1}']


def test_nothing_is_cleared_when_it_would_free_too_little() -> None:
    edit = {
        "type": "clear_tool_uses_20250919",
        "trigger": {"type": "tool_uses", "value": 0},
        "keep": {"type": "tool_uses", "value": 0},
        "clear_at_least": {"type": "input_tokens", "value": 1_000},
    }
    assert _results(_edited(_loop(["short"]), edit)) == ["short"]
    assert _results(_edited(_loop(["y" * 8_000]), edit)) == [CLEARED]


def test_thinking_is_kept_for_the_last_turns_only() -> None:
    messages = _loop(["a", "b", "c"])
    for n, message in enumerate(messages[1::2]):
        message["thinking_blocks"] = [{"type": "thinking", "thinking": f"t{n}", "signature": "s"}]
    kept_all = _edited(messages, {"type": "clear_thinking_20251015", "keep": "all"})
    assert kept_all["messages"] == messages
    last = _edited(
        messages,
        {"type": "clear_thinking_20251015", "keep": {"type": "thinking_turns", "value": 1}},
    )
    assert [("thinking_blocks" in m) for m in last["messages"][1::2]] == [False, False, True]


def test_edits_only_anthropic_applies_are_left_out() -> None:
    messages = _loop(["a"])
    assert _edited(messages, {"type": "compact_20260112"})["messages"] == messages
