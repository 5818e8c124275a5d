"""OpenAI's hosted ``web_search`` tool, run where a deployment can run a search
itself: an Anthropic deployment, as its own ``web_search`` server tool; a
Responses API one (``api: responses``), as the hosted tool again.

The Responses edge leaves hosted tools out of the call (no chat model can
run them; ADR 0018). A web search is the exception where the upstream
can: the request carries it as a marker (``chat_markers.HOSTED_WEB_SEARCH``,
its allowed domains and the user's location); the Anthropic adapter offers
its own tool for it, a Responses API upstream the hosted tool, and every
other upstream leaves it out, as before (or the gateway searches: ADR 0029).
One that must not reach the web (``external_web_access: false``, Codex's
default cached mode) says so in the marker: only a Responses API upstream
runs it (OpenAI answers from its cache); Anthropic's searches and the
gateway's are live, so they leave it out.

The searches come back as Anthropic's blocks (``content_blocks``, or the
stream's ``anthropic_block`` deltas): each ``server_tool_use`` call is a
``web_search_call`` item (its ``action`` the query, and the result's pages
as ``sources``), between the message items of the text before and after
it, in the order they came, answered or streamed. A cited text block's
citations are ``url_citation`` annotations over its text (from chat's
annotations, which the Anthropic adapter writes as the block ends).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from interlock.chat_markers import OFFLINE

__all__ = [
    "WEB_SEARCH_TOOLS",
    "hosted_search",
    "search_call",
    "searched_turn",
    "with_result",
]

JSONDict = dict[str, Any]

WEB_SEARCH_TOOLS = frozenset(
    {"web_search", "web_search_2025_08_26", "web_search_preview", "web_search_preview_2025_03_11"}
)


def hosted_search(tools: Iterable[Mapping[str, Any]]) -> JSONDict | None:
    """What a request's hosted web search asks (allowed domains, the user's
    location, as Anthropic names them; ``external_web_access: false`` for
    one that must not reach the web), or None where it offers none."""
    for tool in tools:
        if tool.get("type") not in WEB_SEARCH_TOOLS:
            continue
        wish: JSONDict = {}
        if tool.get("external_web_access") is False:
            wish[OFFLINE] = False
        filters = tool.get("filters")
        if isinstance(filters, dict) and filters.get("allowed_domains"):
            wish["allowed_domains"] = list(filters["allowed_domains"])
        location = tool.get("user_location")
        if isinstance(location, dict):
            place = {k: v for k, v in location.items() if v is not None and k != "type"}
            if place:
                wish["user_location"] = {"type": "approximate", **place}
        return wish
    return None


def search_call(item_id: str, call: Mapping[str, Any], status: str) -> JSONDict:
    """The ``web_search_call`` item for Anthropic's ``server_tool_use`` block."""
    given = call.get("input")
    query = given.get("query") if isinstance(given, dict) else None
    action: JSONDict = {"type": "search", "query": query if isinstance(query, str) else ""}
    return {"id": item_id, "type": "web_search_call", "status": status, "action": action}


def with_result(item: JSONDict, result: Mapping[str, Any]) -> JSONDict:
    """``item`` (a ``search_call``) with the pages its ``web_search_tool_result``
    found as its ``sources``, or ``failed`` where the search failed."""
    content = result.get("content")
    if not isinstance(content, list):  # {"type": "web_search_tool_result_error", ...}
        item["status"] = "failed"
        return item
    item["action"]["sources"] = [
        {"type": "url", "url": page["url"]}
        for page in content
        if isinstance(page, dict) and isinstance(page.get("url"), str)
    ]
    return item


def searched_turn(blocks: Iterable[Any], new_id: Any) -> list[str | JSONDict]:
    """An answer's Anthropic blocks as its text and its web searches, in the
    order they came: a string for each run of text between searches, a
    finished ``web_search_call`` item for each search. Other blocks (thinking,
    client tool calls) are the answer's own items."""
    out: list[str | JSONDict] = []
    calls: dict[str, JSONDict] = {}
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            text = str(block.get("text", ""))
            if out and isinstance(out[-1], str):
                out[-1] += text
            elif text:
                out.append(text)
        elif kind == "server_tool_use" and block.get("name") == "web_search":
            item = search_call(new_id("ws"), block, "completed")
            calls[str(block.get("id"))] = item
            out.append(item)
        elif kind == "web_search_tool_result":
            searched = calls.get(str(block.get("tool_use_id")))
            if searched is not None:
                with_result(searched, block)
    return out
