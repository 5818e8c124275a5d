"""A Responses API answer read back as a ``chat.completion`` (no I/O), and
the pieces its stream's reader (``openai_responses_stream.py``) shares:
usage, the finish reason, log probabilities, citations, a failure.

Output items become one assistant message: ``message`` items' text (and
refusals), ``function_call`` and ``custom_tool_call`` items chat's tool
calls, ``reasoning`` items' summaries ``reasoning_content`` (chat's field
for reasoning text, as DeepSeek and vLLM write it) and their sealed
reasoning ``thinking_blocks`` (``chat_markers.OPENAI_REASONING``), which a
client sends back with the turn as it does Anthropic's signed thinking;
``url_citation`` annotations chat's. Items chat has no word for (a hosted search's
``web_search_call``) leave what they found in the text and its citations.
"""

from __future__ import annotations

from typing import Any

from interlock.chat_markers import CONTENT_BLOCKS, OPENAI_REASONING
from interlock.providers.base import JSONDict
from interlock.providers.shapes import search_result_block, search_use_block
from interlock.providers.shapes import url_citation as chat_url_citation
from interlock.providers.upstream_errors import ShapeError

__all__ = [
    "UpstreamFailed",
    "chat_completion",
    "chat_logprobs",
    "failure",
    "finish_reason",
    "sealed_reasoning",
    "search_blocks",
    "url_citation",
    "usage_of",
]


class UpstreamFailed(Exception):
    """A response the upstream ended as ``failed`` (or an ``error`` event):
    ``status`` is the HTTP status its error code stands for."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


# The status each documented error code stands for; any other is the upstream's fault.
_ERROR_STATUSES = {
    "rate_limit_exceeded": 429,
    "invalid_prompt": 400,
    "invalid_request_error": 400,
    "context_length_exceeded": 400,
}


def failure(error: Any) -> UpstreamFailed:
    error = error if isinstance(error, dict) else {}
    code = error.get("code") or error.get("type")
    message = error.get("message")
    code = code if isinstance(code, str) else "server_error"
    detail = f"{code}: {message}" if isinstance(message, str) else code
    return UpstreamFailed(_ERROR_STATUSES.get(code, 500), detail)


def chat_completion(response: Any) -> JSONDict:
    if not isinstance(response, dict) or not isinstance(response.get("output"), list):
        raise ShapeError("upstream response has no `output`")
    if response.get("status") == "failed":
        raise failure(response.get("error"))
    text: list[str] = []
    refusal: list[str] = []
    reasoning: list[str] = []
    sealed: list[JSONDict] = []
    annotations: list[JSONDict] = []
    logprobs: list[JSONDict] = []
    calls: list[JSONDict] = []
    blocks: list[JSONDict] = []  # the turn as Anthropic writes it, where it searched
    searches = 0
    for item in response["output"]:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "message":
            for part in item.get("content") or ():
                if part.get("type") == "output_text":
                    start = sum(map(len, text))
                    annotations += [
                        url_citation(a, start) for a in part.get("annotations") or () if _cited(a)
                    ]
                    logprobs += chat_logprobs(part.get("logprobs"))
                    text.append(part.get("text") or "")
                    blocks.append({"type": "text", "text": text[-1]})
                elif part.get("type") == "refusal":
                    refusal.append(part.get("refusal") or "")
        elif kind == "reasoning":
            reasoning += [s.get("text") or "" for s in item.get("summary") or ()]
            sealed += sealed_reasoning(item)
        elif kind in ("function_call", "custom_tool_call"):
            calls.append(tool_call(item))
        elif kind == "web_search_call":
            blocks += search_blocks(item)
            searches += 1
    message: JSONDict = {
        "role": "assistant",
        "content": "".join(text) if text or not (calls or refusal) else None,
        "refusal": "".join(refusal) or None,
    }
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
    if sealed:
        message["thinking_blocks"] = sealed
    if annotations:
        message["annotations"] = annotations
    if searches:
        message[CONTENT_BLOCKS] = blocks
    choice = {
        "index": 0,
        "message": message,
        "logprobs": {"content": logprobs} if logprobs else None,
        "finish_reason": finish_reason(response, bool(calls)),
    }
    completion: JSONDict = {
        "id": response.get("id"),
        "object": "chat.completion",
        "created": response.get("created_at"),
        "model": response.get("model"),
        "choices": [choice],
        "usage": usage_of(response.get("usage"), searches),
    }
    if response.get("service_tier") is not None:
        completion["service_tier"] = response["service_tier"]
    return completion


def sealed_reasoning(item: JSONDict) -> list[JSONDict]:
    """A reasoning item as the ``thinking_blocks`` entry that carries it into
    the next turn (``OPENAI_REASONING``); none where it came unsealed."""
    sealed = item.get("encrypted_content")
    if not isinstance(sealed, str) or not sealed:
        return []
    summary = item.get("summary")
    return [
        {
            "type": OPENAI_REASONING,
            "id": item.get("id"),
            "encrypted_content": sealed,
            "summary": summary if isinstance(summary, list) else [],
        }
    ]


def search_blocks(item: JSONDict) -> list[JSONDict]:
    """A ``web_search_call`` item as the pipeline carries a search a server
    ran (``pipeline/web_search.py``): Anthropic's ``server_tool_use`` and
    ``web_search_tool_result`` blocks, so every edge writes it as it writes
    Anthropic's own and the gateway's."""
    action = item.get("action")
    action = action if isinstance(action, dict) else {}
    asked = action.get("query") or action.get("url") or ""
    failed = "unavailable" if item.get("status") == "failed" else None
    pages = [
        (source["url"], source.get("title") or "")
        for source in action.get("sources") or ()
        if isinstance(source, dict) and isinstance(source.get("url"), str)
    ]
    use_id = str(item.get("id"))
    return [search_use_block(use_id, asked), search_result_block(use_id, pages, failed)]


def tool_call(item: JSONDict) -> JSONDict:
    if item["type"] == "custom_tool_call":
        custom = {"name": item.get("name"), "input": item.get("input") or ""}
        return {"id": item.get("call_id"), "type": "custom", "custom": custom}
    function = {"name": item.get("name"), "arguments": item.get("arguments") or ""}
    return {"id": item.get("call_id"), "type": "function", "function": function}


def finish_reason(response: JSONDict, called: bool) -> str:
    if response.get("status") == "incomplete":
        reason = (response.get("incomplete_details") or {}).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if called else "stop"


def usage_of(usage: Any, searches: int = 0) -> JSONDict | None:
    """The Responses usage in chat's names, and the web searches the upstream
    ran as Anthropic counts its own (which pricing reads)."""
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("input_tokens") or 0
    completion = usage.get("output_tokens") or 0
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens") or 0
    out: JSONDict = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": usage.get("total_tokens") or prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    if searches:
        out["server_tool_use"] = {"web_search_requests": searches}
    return out


def chat_logprobs(entries: Any) -> list[JSONDict]:
    """An output text's log probabilities as chat's ``logprobs.content``."""
    out = []
    for entry in entries or ():
        if isinstance(entry, dict):
            out.append(
                {
                    "token": entry.get("token"),
                    "logprob": entry.get("logprob"),
                    "bytes": entry.get("bytes"),
                    "top_logprobs": entry.get("top_logprobs") or [],
                }
            )
    return out


def _cited(annotation: Any) -> bool:
    return isinstance(annotation, dict) and annotation.get("type") == "url_citation"


def url_citation(annotation: JSONDict, start: int) -> JSONDict:
    """A ``url_citation`` as chat writes it; ``start``: where its text part
    starts in the message's content (this API counts within the part)."""
    return chat_url_citation(
        str(annotation.get("url")),
        str(annotation.get("title") or ""),
        (annotation.get("start_index") or 0) + start,
        (annotation.get("end_index") or 0) + start,
    )
