"""OpenAI response shapes the translating adapters emit, built in one place."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["chunk_bytes", "chunk_choice"]


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
