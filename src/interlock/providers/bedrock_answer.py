"""A Converse response -> an OpenAI ``chat.completion`` (no I/O), and the
readings the stream translator (``bedrock_stream``) shares with it: finish
reasons, usage, the reasoning-token estimate and reasoning blocks in
LiteLLM's ``thinking_blocks`` shape."""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

import orjson

from interlock.ids import random_hex
from interlock.providers.base import JSONDict
from interlock.providers.bedrock_wire import ShapeError
from interlock.providers.shapes import tool_call
from interlock.tokens import TokenCounter

__all__ = [
    "blob",
    "completion",
    "completion_id",
    "finish_reason",
    "reasoning_tokens",
    "redacted_thinking",
    "thinking_block",
    "usage",
]

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}


def completion(
    response: Any, model: str, json_tool: str | None, counter: TokenCounter | None = None
) -> JSONDict:
    """The ``chat.completion`` for a Converse response; ``counter`` estimates
    reasoning tokens, which Converse does not report."""
    output = response.get("output") if isinstance(response, dict) else None
    message = output.get("message") if isinstance(output, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise ShapeError("upstream response has no `output.message.content` list")
    assert isinstance(response, dict)
    texts: list[str] = []
    thoughts: list[str] = []
    thinking_blocks: list[JSONDict] = []
    calls: list[JSONDict] = []
    for block in content:
        if isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            arguments = orjson.dumps(use.get("input") or {}).decode()
            if use.get("name") == json_tool:
                texts.append(arguments)
            else:
                calls.append(tool_call(str(use.get("toolUseId")), str(use.get("name")), arguments))
        elif isinstance(block.get("reasoningContent"), dict):
            thought = thinking_block(block["reasoningContent"])
            if thought is not None:
                thinking_blocks.append(thought)
                thoughts.append(thought.get("thinking", ""))
        # Citations and the like have no place in OpenAI's message.
    answer: JSONDict = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    thinking = "".join(thoughts)
    if thinking:
        answer["reasoning_content"] = thinking
    if thinking_blocks:
        answer["thinking_blocks"] = thinking_blocks
    if calls:
        answer["tool_calls"] = calls
    finish = finish_reason(response.get("stopReason"), bool(calls))
    raw_usage = response.get("usage")
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": answer, "logprobs": None, "finish_reason": finish}],
        "usage": usage(raw_usage, reasoning_tokens(raw_usage, thinking, counter)),
        "system_fingerprint": None,
    }


def thinking_block(reasoning: JSONDict) -> JSONDict | None:
    """A ``reasoningContent`` block in LiteLLM's ``thinking_blocks`` shape,
    which a client sends back as it came (Claude needs the signed blocks of
    a tool-calling turn back when thinking is on); None for a kind of
    reasoning added to the union later."""
    if "redactedContent" in reasoning:
        return redacted_thinking(blob(reasoning["redactedContent"]))
    text = reasoning.get("reasoningText")
    if not isinstance(text, dict) or not isinstance(text.get("text"), str):
        return None
    signature = text.get("signature")
    return {
        "type": "thinking",
        "thinking": text["text"],
        "signature": signature if isinstance(signature, str) else None,
    }


def redacted_thinking(data: bytes) -> JSONDict:
    """Encrypted reasoning, base64 as Converse's JSON carries blobs."""
    return {"type": "redacted_thinking", "data": base64.b64encode(data).decode()}


def blob(value: Any) -> bytes:
    """A Converse blob (base64 in JSON) as bytes."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise ShapeError("upstream redactedContent is not base64") from None


def finish_reason(stop_reason: Any, has_calls: bool) -> str:
    finish = _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
    if has_calls and finish == "stop":
        return "tool_calls"
    if not has_calls and finish == "tool_calls":
        return "stop"  # the forced structured-answer tool: its input is the content
    return finish


def reasoning_tokens(raw: Any, thinking: str, counter: TokenCounter | None) -> int | None:
    # Converse does not report thinking tokens apart from output tokens, so
    # this is an estimate: the thinking text counted with the gateway's
    # tokenizer, at most the output tokens it is part of.
    if counter is None or not thinking:
        return None
    output = _count(raw.get("outputTokens")) if isinstance(raw, dict) else 0
    return min(output, counter.count(thinking))


def usage(raw: Any, reasoning: int | None = None) -> JSONDict:
    """OpenAI usage for Converse ``usage``. ``inputTokens`` counts only the
    input neither read from nor written to the prompt cache (AWS's prompt
    caching guide), so the cache counts are added to make ``prompt_tokens``
    every input token, as OpenAI's is."""
    raw = raw if isinstance(raw, dict) else {}
    read = _count(raw.get("cacheReadInputTokens"))
    written = _count(raw.get("cacheWriteInputTokens"))
    prompt = _count(raw.get("inputTokens")) + read + written
    completion_tokens = _count(raw.get("outputTokens"))
    out: JSONDict = {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }
    if read or written:
        out["prompt_tokens_details"] = {"cached_tokens": read, "cache_write_tokens": written}
    if reasoning is not None:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def completion_id() -> str:
    # Converse answers carry no id of their own.
    return f"chatcmpl-{random_hex(24)}"
