"""An Anthropic message -> an OpenAI ``chat.completion`` (no I/O), and the
usage, stop-reason and tool-use readings the stream translator shares."""

from __future__ import annotations

import time
from typing import Any

import orjson

from interlock.chat_markers import CONTENT_BLOCKS, PAUSE_TURN, SAID_BY_CHAT
from interlock.providers.anthropic_wire import ShapeError
from interlock.providers.base import JSONDict
from interlock.providers.shapes import tool_call
from interlock.providers.shapes import url_citation as chat_url_citation
from interlock.tokens import TokenCounter

__all__ = [
    "anthropic_only",
    "completion",
    "finish_reason",
    "matched_stop",
    "reasoning_tokens",
    "tool_use_of",
    "url_citation",
    "url_citations",
    "usage_of",
]

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
    "model_context_window_exceeded": "length",
}
_INPUT_TOKEN_FIELDS = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")


def completion(
    message: Any, model: str, json_tool: str | None, counter: TokenCounter | None
) -> JSONDict:
    """The ``chat.completion`` for an Anthropic message."""
    if not _is_message(message):
        raise ShapeError("upstream response is not an Anthropic message")
    texts: list[str] = []
    thoughts: list[str] = []
    thinking_blocks: list[JSONDict] = []
    calls: list[JSONDict] = []
    json_text = None
    for block in message["content"]:
        kind = block.get("type")
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind in ("thinking", "redacted_thinking"):
            thinking_blocks.append(_answer_thinking(block))
            thoughts.append(str(block.get("thinking", "")))
        elif kind == "tool_use":
            call_id, name, arguments = tool_use_of(block)
            if name == json_tool:
                json_text = arguments
            else:
                calls.append(tool_call(call_id, name, arguments))
    if json_text is not None:
        content: str | None = json_text  # any prose around the JSON would break parsing it
    else:
        content = "".join(texts) if texts or not calls else None
    reply: JSONDict = {"role": "assistant", "content": content, "refusal": None}
    if calls:
        reply["tool_calls"] = calls
    if any(anthropic_only(block) for block in message["content"]):
        reply[CONTENT_BLOCKS] = message["content"]  # for the Messages edge, as written
        cited = url_citations(message["content"]) if json_text is None else []
        if cited:
            reply["annotations"] = cited
    thinking = "".join(thoughts)
    if thinking:
        reply["reasoning_content"] = thinking
    if thinking_blocks:
        reply["thinking_blocks"] = thinking_blocks
    usage = message.get("usage")
    return {
        "id": message["id"],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": message.get("model") or model,
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": finish_reason(message.get("stop_reason"), bool(calls)),
                **matched_stop(message.get("stop_reason"), message.get("stop_sequence")),
            }
        ],
        "usage": usage_of(usage, reasoning_tokens(usage, thinking, counter)),
        "system_fingerprint": None,
    }


def _is_message(result: Any) -> bool:
    return (
        isinstance(result, dict)
        and isinstance(result.get("id"), str)
        and isinstance(result.get("content"), list)
        and all(isinstance(block, dict) for block in result["content"])
    )


def _answer_thinking(block: JSONDict) -> JSONDict:
    """LiteLLM's ``thinking_blocks`` shape, so a client can send them back."""
    if block.get("type") == "redacted_thinking":
        return {"type": "redacted_thinking", "data": block.get("data")}
    return {
        "type": "thinking",
        "thinking": block.get("thinking", ""),
        "signature": block.get("signature"),
    }


def anthropic_only(block: JSONDict) -> bool:
    """A block chat cannot say: a server tool's call or result, or cited text."""
    kind = block.get("type")
    return kind not in SAID_BY_CHAT or (kind == "text" and bool(block.get("citations")))


def url_citations(blocks: list[JSONDict]) -> list[JSONDict]:
    """Web search citations as chat's ``url_citation`` annotations: each
    covers its text block's span of the message's content (characters)."""
    out: list[JSONDict] = []
    at = 0
    for block in blocks:
        if block.get("type") != "text":
            continue
        text = str(block.get("text", ""))
        for citation in block.get("citations") or ():
            annotation = url_citation(citation, at, at + len(text))
            if annotation is not None:
                out.append(annotation)
        at += len(text)
    return out


def url_citation(citation: Any, start: int, end: int) -> JSONDict | None:
    """One citation of a web page as a ``url_citation``; None for another kind."""
    if not isinstance(citation, dict) or not isinstance(citation.get("url"), str):
        return None
    return chat_url_citation(citation["url"], str(citation.get("title") or ""), start, end)


def matched_stop(stop_reason: Any, stop_sequence: Any) -> JSONDict:
    """vLLM's ``stop_reason`` for the choice: the stop sequence that matched,
    or a paused turn (the Messages edge gives both back as Anthropic's)."""
    if stop_reason == "stop_sequence" and isinstance(stop_sequence, str):
        return {"stop_reason": stop_sequence}
    if stop_reason == PAUSE_TURN:
        return {"stop_reason": PAUSE_TURN}
    return {}


def tool_use_of(block: JSONDict) -> tuple[str, str, str]:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise ShapeError("upstream tool_use block has no id or name")
    return call_id, name, orjson.dumps(arguments if arguments is not None else {}).decode()


def finish_reason(stop_reason: Any, called: bool) -> str:
    if stop_reason == "tool_use" and not called:
        return "stop"  # the only call was the JSON tool: the answer is content
    return _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def reasoning_tokens(usage: Any, thinking: str, counter: TokenCounter | None) -> int | None:
    # Anthropic does not report thinking tokens apart from output tokens, so
    # this is an estimate: the thinking text counted with the gateway's
    # tokenizer, at most the output tokens it is part of.
    if counter is None or not thinking:
        return None
    output = _count(usage.get("output_tokens")) if isinstance(usage, dict) else 0
    return min(output, counter.count(thinking))


def usage_of(usage: Any, reasoning_tokens: int | None = None) -> JSONDict:
    usage = usage if isinstance(usage, dict) else {}
    # The cache fields are null when caching was not involved.
    prompt = sum(_count(usage.get(name)) for name in _INPUT_TOKEN_FIELDS)
    completion_tokens = _count(usage.get("output_tokens"))
    translated: JSONDict = {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }
    # prompt_tokens counts every input token, as OpenAI's does; the details
    # say how many were read from the prompt cache and how many written to
    # it, so each class is priced at its own rate (pipeline/pricing.py).
    read = _count(usage.get("cache_read_input_tokens"))
    written = _count(usage.get("cache_creation_input_tokens"))
    if read or written:
        translated["prompt_tokens_details"] = {
            "cached_tokens": read,
            "cache_write_tokens": written,
        }
    if reasoning_tokens is not None:
        translated["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
    server = usage.get("server_tool_use")
    if isinstance(server, dict) and any(_count(v) for v in server.values()):
        # Searches are billed apart from tokens (pipeline/pricing.py).
        translated["server_tool_use"] = {k: _count(v) for k, v in server.items()}
    return translated


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
