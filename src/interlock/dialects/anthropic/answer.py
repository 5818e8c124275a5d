"""An OpenAI ``chat.completion`` -> an Anthropic message (no I/O), and the
readings the stream translator shares: stop reason, usage, ids.

Content comes out in Anthropic's order: thinking (signed blocks from an
Anthropic or Bedrock upstream as they were, else the ``reasoning_content``
of any other upstream as one unsigned block), then the text, then each tool
call as a ``tool_use`` block. An Anthropic upstream's answer that used its
server tools comes back in its own blocks (``content_blocks``: the calls,
their results, the cited text), unless the gateway rewrote its text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from interlock.chat_markers import (
    CONTENT_BLOCKS,
    PAUSE_TURN,
    SAID_BY_CHAT,
    cached_prompt_tokens,
    is_openai_reasoning,
    reasoning_text,
    still_said,
)
from interlock.errors import UpstreamProtocolError
from interlock.ids import random_hex

__all__ = [
    "message",
    "message_id",
    "new_tool_id",
    "stop_reason",
    "tool_input",
    "usage",
]

JSONDict = dict[str, Any]

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def message(completion: JSONDict, stop_sequences: Sequence[str] = ()) -> JSONDict:
    """The Anthropic message for a ``chat.completion`` the pipeline returned."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    reply = choice.get("message")
    reply = reply if isinstance(reply, dict) else {}
    calls = reply.get("tool_calls") or []
    uses = [_tool_use(call) for call in calls]
    text = reply.get("content") or reply.get("refusal")  # OpenAI's refusal is its text
    text = text if isinstance(text, str) else ""
    written = _written_blocks(reply.get(CONTENT_BLOCKS), text, uses)
    if written is not None:
        content = written
    else:
        content = _thinking_blocks(reply) + _server_blocks(reply.get(CONTENT_BLOCKS))
        if text:
            content.append({"type": "text", "text": text})
        content += uses
    reason, sequence = stop_reason(choice, bool(calls), stop_sequences)
    return {
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model", ""),
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage(completion.get("usage")),
    }


def _tool_use(call: JSONDict) -> JSONDict:
    function = call.get("function") or {}
    return {
        "type": "tool_use",
        "id": call.get("id") or new_tool_id(),
        "name": function.get("name", ""),
        "input": tool_input(function.get("arguments")),
    }


def _written_blocks(blocks: Any, text: str, uses: list[JSONDict]) -> list[JSONDict] | None:
    """An Anthropic upstream's blocks as it wrote them (server tool calls and
    results, cited text), when they still say what the message says: a
    guardrail that rewrote the text or a call leaves the message's own."""
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        return None
    if not still_said(blocks, text, [(use["id"], use["input"]) for use in uses]):
        return None
    return blocks


def _server_blocks(blocks: Any) -> list[JSONDict]:
    """Where the written blocks no longer hold: their server tool blocks alone."""
    if not isinstance(blocks, list):
        return []
    return [b for b in blocks if isinstance(b, dict) and b.get("type") not in SAID_BY_CHAT]


def _thinking_blocks(reply: JSONDict) -> list[JSONDict]:
    blocks = reply.get("thinking_blocks")
    if isinstance(blocks, list):
        # OpenAI's sealed reasoning means nothing to this API's clients: its summary is the text.
        blocks = [b for b in blocks if isinstance(b, dict) and not is_openai_reasoning(b)]
    if blocks:
        return [_thinking_block(block) for block in blocks]
    reasoning = reasoning_text(reply)
    if reasoning is not None:
        # Unsigned: it came from an upstream that signs nothing.
        return [{"type": "thinking", "thinking": reasoning, "signature": ""}]
    return []


def _thinking_block(block: JSONDict) -> JSONDict:
    if block.get("type") == "redacted_thinking":
        return {"type": "redacted_thinking", "data": str(block.get("data") or "")}
    return {
        "type": "thinking",
        "thinking": str(block.get("thinking") or ""),
        "signature": str(block.get("signature") or ""),
    }


def message_id(completion_id: Any) -> str:
    """``msg_...``: Anthropic's ids keep theirs, others get the prefix."""
    if not isinstance(completion_id, str) or not completion_id:
        return f"msg_{random_hex(32)}"
    if completion_id.startswith("msg_"):
        return completion_id
    return "msg_" + completion_id.removeprefix("chatcmpl-")


def new_tool_id() -> str:
    """For a tool call an upstream sent without an id (Anthropic needs one)."""
    return f"toolu_{random_hex(24)}"


def tool_input(arguments: Any) -> JSONDict:
    """A call's JSON arguments as a ``tool_use`` input, which must be an object.
    An upstream that sent something else broke the tool-call contract: a
    502, rather than a call with its arguments silently replaced."""
    if arguments is None or arguments == "":
        return {}  # a call without arguments, as some servers send it
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str | bytes) else arguments
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise UpstreamProtocolError("upstream tool call arguments are not a JSON object")
    return parsed


def stop_reason(
    choice: JSONDict, called: bool, stop_sequences: Sequence[str]
) -> tuple[str, str | None]:
    """Anthropic's ``stop_reason`` and ``stop_sequence`` for a choice.

    OpenAI does not say which stop sequence ended the answer; vLLM does, in
    the choice's ``stop_reason``. Without it a stop is an ``end_turn``."""
    finish = choice.get("finish_reason")
    if called and finish in (None, "stop", "tool_calls", "function_call"):
        return "tool_use", None  # some servers finish a tool call with "stop"
    matched = choice.get("stop_reason")
    if finish == "stop" and isinstance(matched, str) and matched in stop_sequences:
        return "stop_sequence", matched
    if finish == "stop" and matched == PAUSE_TURN:  # an Anthropic upstream's server tools paused
        return PAUSE_TURN, None
    return _STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn", None


def usage(raw: Any) -> JSONDict:
    """Anthropic's usage: ``input_tokens`` excludes cache reads and writes,
    which OpenAI's ``prompt_tokens`` includes (the adapters' convention)."""
    raw = raw if isinstance(raw, dict) else {}
    details = raw.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    read = cached_prompt_tokens(raw)
    written = _count(details.get("cache_write_tokens"))
    out: JSONDict = {
        "input_tokens": max(0, _count(raw.get("prompt_tokens")) - read - written),
        "output_tokens": _count(raw.get("completion_tokens")),
        "cache_read_input_tokens": read,
        "cache_creation_input_tokens": written,
    }
    server = raw.get("server_tool_use")
    if isinstance(server, dict):  # an Anthropic upstream's server tools ran
        out["server_tool_use"] = server
    return out


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
