"""OpenAI response shapes the translating adapters emit, built in one place."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = [
    "SEARCH_TOOL_NAME",
    "chunk_bytes",
    "chunk_choice",
    "search_result_block",
    "search_use_block",
    "tool_call",
    "tool_call_arguments_piece",
    "tool_call_opened",
    "url_citation",
]

# The name a server-run web search is called by in Anthropic's blocks.
SEARCH_TOOL_NAME = "web_search"


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
    service_tier: str | None = None,
) -> bytes:
    """One ``chat.completion.chunk``. With ``stream_options.include_usage``
    every chunk carries ``usage`` (null until the final usage-only chunk),
    as OpenAI's do; ``service_tier``: the tier that served it, where known."""
    chunk: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": choices,
    }
    if service_tier is not None:
        chunk["service_tier"] = service_tier
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


def url_citation(url: str, title: str, start: int, end: int) -> dict[str, Any]:
    """Chat's ``url_citation`` annotation over ``start``..``end`` of the
    message's content (characters)."""
    cited = {"start_index": start, "end_index": end, "url": url, "title": title}
    return {"type": "url_citation", "url_citation": cited}


# A web search a server ran (Anthropic, OpenAI's Responses API, the gateway
# itself: ``pipeline/web_search.py``) travels in the chat shape as Anthropic
# writes it, so every edge writes it as it writes Anthropic's own.


def search_use_block(use_id: str, query: str) -> dict[str, Any]:
    """The search's call: Anthropic's ``server_tool_use`` block."""
    return {
        "type": "server_tool_use",
        "id": use_id,
        "name": SEARCH_TOOL_NAME,
        "input": {"query": query},
    }


def search_result_block(
    use_id: str, pages: list[tuple[str, str]], error: str | None = None
) -> dict[str, Any]:
    """The search's result: Anthropic's ``web_search_tool_result`` block with
    its pages (url, title), or its error code."""
    content: Any
    if error is not None:
        content = {"type": "web_search_tool_result_error", "error_code": error}
    else:
        # Anthropic's results carry its own encrypted page text, which only it
        # reads; others' carry none.
        content = [
            {
                "type": "web_search_result",
                "url": url,
                "title": title,
                "encrypted_content": "",
                "page_age": None,
            }
            for url, title in pages
        ]
    return {"type": "web_search_tool_result", "tool_use_id": use_id, "content": content}
