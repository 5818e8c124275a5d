"""Anthropic's context editing (``context_management``), done by the gateway
for upstreams that do not do it themselves.

Claude Code sends ``context_management: {"edits": [...]}`` with its
requests. An Anthropic deployment gets it as sent
(``Provider.takes_context_management``) and edits the context itself. Any
other upstream gets the conversation already edited here, so the edits
hold whichever model answers:

- ``clear_tool_uses_20250919``: once the prompt passes ``trigger`` (input
  tokens, 100,000 unless said; or a number of tool uses), the results of
  all but the last ``keep`` tool uses (3 unless said) are replaced by a
  short placeholder, oldest first, skipping ``exclude_tools``; with
  ``clear_tool_inputs`` the calls' arguments too. With ``clear_at_least``
  (input tokens), nothing is cleared unless that much would be.
- ``clear_thinking_20251015``: ``keep: "all"`` keeps every turn's thinking;
  ``{"type": "thinking_turns", "value": N}`` keeps the last N assistant
  turns' thinking and drops the rest.

Other edits (``compact_20260112``: Anthropic's server-side summary) are
Anthropic's own: left out for other upstreams, whose context is then not
compacted. Input tokens are estimated at four characters a token, as
counting a six-figure prompt exactly would cost more than the answer.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["CLEARED", "apply_context_edits"]

JSONDict = dict[str, Any]

# What a cleared tool result says instead.
CLEARED = "[This tool result was cleared to save context.]"
_DEFAULT_TRIGGER: JSONDict = {"type": "input_tokens", "value": 100_000}
_DEFAULT_KEEP = 3
_CHARS_PER_TOKEN = 4


def apply_context_edits(body: JSONDict) -> JSONDict:
    """``body`` with its ``context_management`` edits applied to the
    messages and the marker gone (a new body; the client's is unchanged)."""
    edits = (body.get("context_management") or {}).get("edits") or ()
    out = {k: v for k, v in body.items() if k != "context_management"}
    messages: list[JSONDict] = list(body["messages"])
    for edit in edits:
        kind = edit.get("type") if isinstance(edit, dict) else None
        if kind == "clear_tool_uses_20250919":
            messages = _clear_tool_uses(messages, edit)
        elif kind == "clear_thinking_20251015":
            messages = _clear_thinking(messages, edit.get("keep", "all"))
    out["messages"] = messages
    return out


def _clear_tool_uses(messages: list[JSONDict], edit: JSONDict) -> list[JSONDict]:
    trigger = edit.get("trigger") or _DEFAULT_TRIGGER
    calls = [
        (index, call)
        for index, message in enumerate(messages)
        if message.get("role") == "assistant"
        for call in message.get("tool_calls") or ()
    ]
    if trigger.get("type") == "tool_uses":
        if len(calls) <= int(trigger.get("value") or 0):
            return messages
    elif _tokens(messages) <= int(trigger.get("value") or 0):
        return messages
    keep = edit.get("keep") or {"type": "tool_uses", "value": _DEFAULT_KEEP}
    kept = int(keep.get("value") or 0)
    excluded = set(edit.get("exclude_tools") or ())
    older = calls[: max(len(calls) - kept, 0)]
    clear = {call.get("id") for _, call in older if _name(call) not in excluded}
    if not clear:
        return messages
    out = []
    freed = 0
    for message in messages:
        if message.get("role") == "tool" and message.get("tool_call_id") in clear:
            freed += len(_text(message.get("content"))) - len(CLEARED)
            message = {**message, "content": CLEARED}
        elif edit.get("clear_tool_inputs") and message.get("tool_calls"):
            calls_now = [_cleared_input(call, clear) for call in message["tool_calls"]]
            message = {**message, "tool_calls": calls_now}
        out.append(message)
    at_least = edit.get("clear_at_least")
    if at_least and freed // _CHARS_PER_TOKEN < int(at_least.get("value") or 0):
        return messages  # not worth breaking the prompt cache for
    return out


def _cleared_input(call: JSONDict, clear: set[Any]) -> JSONDict:
    if call.get("id") not in clear or not isinstance(call.get("function"), dict):
        return call
    return {**call, "function": {**call["function"], "arguments": "{}"}}


def _clear_thinking(messages: list[JSONDict], keep: Any) -> list[JSONDict]:
    if not isinstance(keep, dict) or keep.get("type") != "thinking_turns":
        return messages  # "all", or a form this gateway does not know: keep it all
    thinking = [i for i, m in enumerate(messages) if m.get("thinking_blocks")]
    kept = set(thinking[len(thinking) - int(keep.get("value") or 0) :])
    return [
        {k: v for k, v in message.items() if k != "thinking_blocks"}
        if index in thinking and index not in kept
        else message
        for index, message in enumerate(messages)
    ]


def _name(call: JSONDict) -> str | None:
    function = call.get("function")
    return function.get("name") if isinstance(function, dict) else None


def _text(content: Any) -> str:
    return content if isinstance(content, str) else orjson.dumps(content).decode()


def _tokens(messages: list[JSONDict]) -> int:
    return len(orjson.dumps(messages)) // _CHARS_PER_TOKEN
