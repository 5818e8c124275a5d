"""Anthropic's tool search for an upstream without it: the tools a
conversation's results loaded, the references as text."""

from __future__ import annotations

import copy
from typing import Any

from interlock.pipeline.deferred_tools import loaded_tools


def _tool(name: str, deferred: bool = False) -> dict[str, Any]:
    tool: dict[str, Any] = {"type": "function", "function": {"name": name, "parameters": {}}}
    return {**tool, "defer_loading": True} if deferred else tool


def _result(content: Any, *references: str) -> dict[str, Any]:
    return {
        "role": "tool",
        "tool_call_id": "t1",
        "content": content,
        "tool_references": [*references],
    }


def _names(body: dict[str, Any]) -> list[str]:
    return [tool["function"]["name"] for tool in body.get("tools", [])]


SEARCH, WEATHER, TIME = _tool("ToolSearch"), _tool("get_weather", True), _tool("get_time", True)


def test_only_the_tools_a_result_loaded_join_those_not_deferred() -> None:
    body = {
        "deferred_tools": True,
        "tools": [SEARCH, WEATHER, TIME],
        "messages": [{"role": "user", "content": "Weather?"}, _result("", "get_weather")],
    }
    kept = copy.deepcopy(body)
    out = loaded_tools(body)
    assert body == kept  # a copy
    assert _names(out) == ["ToolSearch", "get_weather"] and "deferred_tools" not in out
    assert out["messages"][1] == {
        "role": "tool",
        "tool_call_id": "t1",
        "content": "Tool loaded: get_weather",
    }


def test_references_follow_the_result_s_own_text_or_parts() -> None:
    said = loaded_tools({"messages": [_result("Found two.", "get_weather", "get_time")]})
    assert said["messages"][0]["content"] == (
        "Found two.\nTool loaded: get_weather\nTool loaded: get_time"
    )
    parts = [{"type": "text", "text": "Found.", "cache_control": {"type": "ephemeral"}}]
    marked = loaded_tools({"messages": [_result(parts, "get_time")]})
    assert marked["messages"][0]["content"] == [
        *parts,
        {"type": "text", "text": "Tool loaded: get_time"},
    ]


def test_a_tool_the_client_forces_is_offered_deferred_or_not() -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    out = loaded_tools({"tools": [SEARCH, WEATHER, TIME], "tool_choice": choice, "messages": []})
    assert _names(out) == ["ToolSearch", "get_time"] and out["tool_choice"] == choice


def test_every_tool_still_deferred_offers_none() -> None:
    body = {
        "tools": [WEATHER, TIME],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    out = loaded_tools(body)
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & out.keys()
