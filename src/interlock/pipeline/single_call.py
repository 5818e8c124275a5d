"""``parallel_tool_calls: false`` for upstreams that cannot be told it.

The client asks for at most one tool call a turn. Anthropic and OpenAI take
the setting; Gemini and Bedrock have no such switch
(``Provider.limits_parallel_calls``). For those the gateway holds the
answer to it: the setting is not sent, and a turn's calls after the first
are left out of the answer, streamed or not. The model sees only the call
it was answered for in the next turn, and makes the others then, as a
model told to call one tool at a time would have.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

__all__ = ["first_call_chunks", "first_call_only"]

JSONDict = dict[str, Any]


def first_call_only(answer: JSONDict) -> JSONDict:
    """A chat completion with each choice's first tool call alone (in place)."""
    for choice in answer.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            continue
        calls = message.get("tool_calls")
        if isinstance(calls, list) and len(calls) > 1:
            message["tool_calls"] = calls[:1]
    return answer


async def first_call_chunks(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A stream with the pieces of each choice's calls after the first left out."""
    async for raw in chunks:
        if b'"tool_calls"' not in raw:
            yield raw
            continue
        chunk = orjson.loads(raw)
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            pieces = delta.get("tool_calls")
            if pieces:
                kept = [piece for piece in pieces if piece.get("index", 0) == 0]
                if kept:
                    delta["tool_calls"] = kept
                else:
                    del delta["tool_calls"]
        yield orjson.dumps(chunk)
