"""Anthropic's tool search for upstreams without it.

Claude Code defers its MCP tools when there are many (``defer_loading``)
and offers a ToolSearch tool; a search's result holds ``tool_reference``
blocks naming the tools it found, and Anthropic loads each named tool for
the model from then on. The Messages edge keeps the references on the
result's ``tool`` message (``chat_markers.TOOL_REFERENCES``) and marks the
body (``DEFERRED_TOOLS``). An Anthropic deployment is sent all of it as it
came. Every other upstream is sent what Anthropic's model would see: the
tools not deferred and those a result has loaded so far, and each
reference as a line of the result's text.
"""

from __future__ import annotations

from typing import Any

from interlock.chat_markers import DEFERRED_TOOLS, TOOL_REFERENCES

__all__ = ["loaded_tools"]

JSONDict = dict[str, Any]


def loaded_tools(body: JSONDict) -> JSONDict:
    """``body`` with its deferred tools loaded as a search would have (a copy)."""
    out = {k: v for k, v in body.items() if k != DEFERRED_TOOLS}
    loaded: set[str] = set()
    messages = body.get("messages")
    if isinstance(messages, list):
        out["messages"] = [_said(message, loaded) for message in messages]
    tools = body.get("tools")
    if isinstance(tools, list):
        loaded |= _forced(body.get("tool_choice"))
        offered = [tool for tool in tools if not _deferred(tool) or _name(tool) in loaded]
        if offered:
            out["tools"] = offered
        else:  # every tool still deferred: the model is offered none
            out.pop("tools", None)
            out.pop("tool_choice", None)
            out.pop("parallel_tool_calls", None)
    return out


def _said(message: Any, loaded: set[str]) -> Any:
    """A tool message's references as text after its own, noted in ``loaded``."""
    if not isinstance(message, dict) or TOOL_REFERENCES not in message:
        return message
    names = [name for name in message[TOOL_REFERENCES] if isinstance(name, str)]
    loaded.update(names)
    out = {k: v for k, v in message.items() if k != TOOL_REFERENCES}
    lines = "\n".join(f"Tool loaded: {name}" for name in names)
    content = message.get("content")
    if isinstance(content, list):
        out["content"] = [*content, {"type": "text", "text": lines}]
    else:
        out["content"] = f"{content}\n{lines}" if content else lines
    return out


def _deferred(tool: Any) -> bool:
    return isinstance(tool, dict) and tool.get("defer_loading") is True


def _name(tool: JSONDict) -> Any:
    function = tool.get("function")
    return function.get("name") if isinstance(function, dict) else None


def _forced(choice: Any) -> set[str]:
    """The tool a ``tool_choice`` names: offered, deferred or not."""
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = choice["function"].get("name")
        if isinstance(name, str):
            return {name}
    return set()
