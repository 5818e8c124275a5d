"""OpenAI response shapes the translating adapters emit, built in one place."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = [
    "chunk_bytes",
    "chunk_choice",
    "tool_call",
    "tool_call_arguments_piece",
    "tool_call_opened",
]


def chunk_choice(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


def chunk_bytes(
    completion_id: str,
    created: int,
    model: str,
    choices: list[dict[str, Any]],
    *,
    include_usage: bool,
    usage: dict[str, Any] | None = None,
    fingerprint: str | None = None,
) -> bytes:
    """One ``chat.completion.chunk``. With ``stream_options.include_usage``
    every chunk carries ``usage`` (null until the final usage-only chunk),
    as OpenAI's do."""
    chunk: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": choices,
    }
    if include_usage:
        chunk["usage"] = usage
    return orjson.dumps(chunk)


def tool_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    """One entry of an assistant message's ``tool_calls`` (arguments: JSON text)."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool_call_opened(index: int, call_id: str, name: str) -> dict[str, Any]:
    """The chunk delta that opens streamed tool call ``index``: its id and
    function name, once, with empty arguments (as OpenAI streams them)."""
    return {
        "tool_calls": [
            {
                "index": index,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
        ]
    }


def tool_call_arguments_piece(index: int, piece: str) -> dict[str, Any]:
    """A chunk delta adding ``piece`` to tool call ``index``'s arguments."""
    return {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
