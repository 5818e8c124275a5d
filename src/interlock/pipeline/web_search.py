"""Web search run by the gateway, for models that cannot search themselves.

A request may ask for a web search the model's server runs: Anthropic's
``web_search_*`` server tool (Claude Code's WebSearch, through the Messages
edge), OpenAI's hosted ``web_search`` (the Responses edge) or chat's
``web_search_options``. Only an Anthropic deployment runs the first itself
(ADR 0027), an Anthropic or a Responses API one the second (ADR 0033), and
only Anthropic's and OpenAI's wire take the third.
For a model with no deployment that does, the gateway runs the search
(ADR 0029), with the search service's web backends (SearXNG, Brave, Google;
never the operator's own corpora):

1. the model is offered a function ``web_search(query)`` instead;
2. each call it makes to it is searched here, and the model is asked again
   with the results, until it answers without searching; ``max_uses``
   (the tool's, else ``DEFAULT_MAX_USES``) bounds the searches, and the
   round after the last one offers no search (``tool_choice: none``);
3. the answer carries the searches as an Anthropic upstream writes them:
   ``server_tool_use`` and ``web_search_tool_result`` blocks (the message's
   ``content_blocks``; streamed, ``anthropic_block`` deltas between the
   rounds' text), so the Messages and Responses edges write them unchanged.

Each round is one pass through the route stage (routing, retries, failover
per round, the attempt's telemetry); the request's record adds up the
rounds' tokens and cost, and counts the searches in
``usage.server_tool_use.web_search_requests``. A round whose answer calls a
client tool ends the answer there (the client runs its tool; the model may
search again on the next turn); its search calls, not run, are left out.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from interlock.chat_markers import (
    ANTHROPIC_BLOCK,
    ANTHROPIC_TOOLS,
    CONTENT_BLOCKS,
    HOSTED_WEB_SEARCH,
)
from interlock.errors import InvalidRequest
from interlock.ids import random_hex
from interlock.pipeline.request import JSONDict
from interlock.pipeline.web_search_rounds import RoundReader, RoundTotals, StitchedStream
from interlock.providers.shapes import search_result_block, search_use_block
from interlock.search.backends.base import BackendError, SearchResult
from interlock.telemetry.record import RequestRecord

__all__ = [
    "DEFAULT_MAX_USES",
    "SearchRun",
    "WebSearch",
    "WebSearcher",
    "search_tools_only",
]

log = logging.getLogger("interlock.web_search")

# The function the model is offered, as Anthropic names its own search.
TOOL_NAME = "web_search"
# Searches per answer where the tool sets no max_uses, and the most it may set.
DEFAULT_MAX_USES = 5
MAX_USES_CAP = 10
# Results given to the model per search.
RESULTS_PER_SEARCH = 5
# Results asked of the backend, so that domain filters still leave some.
_RESULTS_ASKED = 20

# The web search's results for a query (the search service's web backends),
# best first; raises ``BackendError`` when none answered.
WebSearcher = Callable[[str, int], Awaitable[Sequence[SearchResult]]]
# Told as each search starts, for the request's record; what it returns is
# told the search's outcome (ok, empty, failed, cancelled) as it ends: the search's span
# and metrics (``Telemetry.web_search``).
SearchWatch = Callable[[RequestRecord], Callable[[str], None]]

_FUNCTION = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": (
            "Search the web. Returns the top results for the query, each with its "
            "title, URL and a snippet of its text. Use it for anything recent or "
            "that you are not sure of, and cite the URLs you use."
        ),
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "The search query."}},
            "required": ["query"],
        },
    },
}


# Where a body asks for a web search; none of them goes on to the model.
_WISHES = frozenset((ANTHROPIC_TOOLS, HOSTED_WEB_SEARCH, "web_search_options"))


def search_tools_only(tools: Any) -> bool:
    """Whether Anthropic tools a request brought are all web searches (the
    gateway can run those; any other one only Anthropic can)."""
    return (
        isinstance(tools, list)
        and bool(tools)
        and all(
            isinstance(t, dict) and str(t.get("type", "")).startswith("web_search_") for t in tools
        )
    )


class WebSearch:
    """The gateway's web search tool: plans a request's search and runs it."""

    def __init__(self, searcher: WebSearcher, watch: SearchWatch | None = None):
        self._searcher = searcher
        self._watch = watch

    def plan(self, body: JSONDict, markers: bool = True) -> tuple[JSONDict, SearchRun] | None:
        """The body the model is asked with and the run, for a body that asks
        for a web search (Anthropic's tool, the hosted one: an edge's
        ``markers``; or chat's ``web_search_options``); else None."""
        native = body.get(ANTHROPIC_TOOLS) if markers else None
        hosted = body.get(HOSTED_WEB_SEARCH) if markers else None
        options = body.get("web_search_options")
        if native:
            if not search_tools_only(native):
                return None
            wish: Mapping[str, Any] = native[0]
        elif isinstance(hosted, dict):
            wish = hosted
        elif isinstance(options, dict):
            wish = {}  # its user_location and context size: no web backend takes them
        else:
            return None
        tools = list(body.get("tools") or ())
        if any(_tool_name(t) == TOOL_NAME for t in tools):
            raise InvalidRequest(
                f"A tool is named `{TOOL_NAME}`, the name of the web search this gateway "
                "runs for the request: rename it, or leave the web search out.",
                param="tools",
                code="invalid_tool",
            )
        if isinstance(body.get("n"), int) and body["n"] > 1:
            raise InvalidRequest(
                "A web search the gateway runs answers with one choice: `n` must be 1.",
                param="n",
            )
        asked = {k: v for k, v in body.items() if k not in _WISHES}
        asked["tools"] = [*tools, _FUNCTION]
        uses = wish.get("max_uses")
        max_uses = uses if isinstance(uses, int) and uses > 0 else DEFAULT_MAX_USES
        run = SearchRun(
            self._searcher,
            min(max_uses, MAX_USES_CAP),
            _domains(wish.get("allowed_domains")),
            _domains(wish.get("blocked_domains")),
            watch=self._watch,
        )
        return asked, run


@dataclass(slots=True)
class SearchRun:
    """One request's gateway-run search: its bounds, and the searches made."""

    searcher: WebSearcher
    max_uses: int
    allowed_domains: tuple[str, ...] = ()
    blocked_domains: tuple[str, ...] = ()
    watch: SearchWatch | None = None
    searches: int = 0
    _totals: RoundTotals = field(default_factory=RoundTotals)

    # -- unary ---------------------------------------------------------------

    async def complete(
        self, body: JSONDict, ask: Callable[[JSONDict], Awaitable[JSONDict]], record: RequestRecord
    ) -> JSONDict:
        """The answer to ``body``, searching for the model where it asks."""
        try:
            return await self._complete(body, ask, record)
        finally:
            self._totals.settle(record)

    async def _complete(
        self, body: JSONDict, ask: Callable[[JSONDict], Awaitable[JSONDict]], record: RequestRecord
    ) -> JSONDict:
        blocks: list[JSONDict] = []
        texts: list[str] = []
        while True:
            last = self.searches >= self.max_uses
            answer = await ask(_no_more_searches(body) if last else body)
            self._totals.add(record)
            choices = answer.get("choices") or [{}]
            message = choices[0].get("message") if isinstance(choices[0], dict) else None
            message = message if isinstance(message, dict) else {}
            calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
            searches = [c for c in calls if _call_name(c) == TOOL_NAME]
            text = message.get("content") if isinstance(message.get("content"), str) else ""
            if not searches or len(searches) != len(calls) or last:
                return self._answer(answer, message, blocks, texts, record)
            if text:
                texts.append(text)
                blocks.append({"type": "text", "text": text})
            results = [await self._search(_query(call), record) for call in searches]
            for call, (found, error) in zip(searches, results, strict=True):
                use_id = "srvtoolu_" + random_hex(24)
                blocks.append(search_use_block(use_id, _query(call)))
                blocks.append(_result_block(use_id, found, error))
            body = _continued(body, message, searches, results)

    def _answer(
        self,
        answer: JSONDict,
        message: JSONDict,
        blocks: list[JSONDict],
        texts: list[str],
        record: RequestRecord,
    ) -> JSONDict:
        made = message.get("tool_calls") or ()
        calls = [c for c in made if _call_name(c) != TOOL_NAME]
        if len(calls) != len(made):  # searches past max_uses: not run, left out
            message["tool_calls"] = calls
            if not calls:
                del message["tool_calls"]
                choice = answer["choices"][0]
                if choice.get("finish_reason") == "tool_calls":
                    choice["finish_reason"] = "stop"
        usage = self._totals.put(record, self.searches)
        if usage is not None:
            answer["usage"] = usage
        if not self.searches:
            return answer
        content = message.get("content")
        text = content if isinstance(content, str) else ""
        if text:
            blocks.append({"type": "text", "text": text})
        for call in calls:
            function = call.get("function") or {}
            blocks.append(
                {
                    "type": "tool_use",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "input": _arguments(function.get("arguments")),
                }
            )
        message["content"] = "".join([*texts, text]) or None
        message[CONTENT_BLOCKS] = blocks
        return answer

    # -- streamed ------------------------------------------------------------

    async def stream(
        self,
        body: JSONDict,
        first: bytes | None,
        chunks: AsyncIterator[bytes],
        again: Callable[[JSONDict], Awaitable[tuple[bytes | None, AsyncIterator[bytes]]]],
        record: RequestRecord,
    ) -> AsyncIterator[bytes]:
        """The rounds' chunks as one stream: each round's text and client tool
        calls as they come, a search's blocks between rounds."""
        stream = StitchedStream()
        try:
            while True:
                last = self.searches >= self.max_uses
                round_ = RoundReader(TOOL_NAME)
                async for raw in _with_first(first, chunks):
                    for out in round_.read(raw, stream):
                        yield out
                await _close(chunks)
                self._totals.add(record)
                searches = round_.searches()
                if not searches or round_.client_calls or last:
                    break
                message = {"role": "assistant", "content": round_.text or None}
                results = []
                for call in searches:
                    use_id = "srvtoolu_" + random_hex(24)
                    query = _query(call)
                    yield stream.chunk({ANTHROPIC_BLOCK: search_use_block(use_id, query)})
                    found = await self._search(query, record)
                    results.append(found)
                    yield stream.chunk({ANTHROPIC_BLOCK: _result_block(use_id, *found)})
                stream.searched = True
                body = _continued(body, message, searches, results)
                first, chunks = await again(
                    _no_more_searches(body) if self.searches >= self.max_uses else body
                )
            usage = self._totals.put(record, self.searches)
            reason = round_.finish_reason or "stop"
            if reason == "tool_calls" and not round_.client_calls:
                reason = "stop"  # its searches, past max_uses, were not run
            yield stream.chunk({}, reason)
            if round_.usage_chunk is not None and usage is not None:
                yield stream.usage_chunk(round_.usage_chunk, usage)
        finally:
            self._totals.settle(record)
            await _close(chunks)

    async def _search(
        self, query: str, record: RequestRecord
    ) -> tuple[list[SearchResult], str | None]:
        """The results for ``query`` the model is given, or the error code."""
        self.searches += 1
        if not query:
            return [], "invalid_tool_input"
        ended = self.watch(record) if self.watch is not None else None
        outcome = "cancelled"  # unless it ends: the client left, or the stream was closed
        try:
            found = await self.searcher(query, _RESULTS_ASKED)
            kept = [r for r in found if self._admits(r.url)][:RESULTS_PER_SEARCH]
            outcome = "ok" if kept else "empty"
        except BackendError as exc:
            outcome = "failed"
            log.warning("web search failed", extra={"error": str(exc)})
            return [], "unavailable"
        finally:
            if ended is not None:
                ended(outcome)
        return kept, None

    def _admits(self, url: str) -> bool:
        host = (urlsplit(url).hostname or "").lower()
        if any(_within(host, d) for d in self.blocked_domains):
            return False
        return not self.allowed_domains or any(_within(host, d) for d in self.allowed_domains)


def _continued(
    body: JSONDict,
    message: JSONDict,
    searches: Sequence[JSONDict],
    results: Sequence[tuple[list[SearchResult], str | None]],
) -> JSONDict:
    """``body`` with the model's searching turn and the results added."""
    turn: JSONDict = {"role": "assistant", "content": message.get("content") or None}
    turn["tool_calls"] = [
        {
            "id": call.get("id") or "call_" + random_hex(24),
            "type": "function",
            "function": {
                "name": TOOL_NAME,
                "arguments": (call.get("function") or {}).get("arguments") or "{}",
            },
        }
        for call in searches
    ]
    answers = [
        {"role": "tool", "tool_call_id": sent["id"], "content": _for_model(*result)}
        for sent, result in zip(turn["tool_calls"], results, strict=True)
    ]
    continued = {**body, "messages": [*body["messages"], turn, *answers]}
    choice = body.get("tool_choice")
    searched_only = choice == "required" and all(
        _tool_name(t) == TOOL_NAME for t in body.get("tools") or ()
    )
    if _call_name(choice) == TOOL_NAME or searched_only:
        continued["tool_choice"] = "auto"  # it searched as told: now it may answer
    return continued


def _for_model(found: list[SearchResult], error: str | None) -> str:
    if error is not None:
        return f"The search failed ({error}). Answer without it, or say that it failed."
    if not found:
        return "No results."
    pages = [{"title": r.title, "url": r.url, "snippet": r.snippet} for r in found]
    return orjson.dumps(pages).decode()


def _no_more_searches(body: JSONDict) -> JSONDict:
    """The round after the last search allowed: the model must answer."""
    return {**body, "tool_choice": "none"}


def _result_block(use_id: str, found: list[SearchResult], error: str | None) -> JSONDict:
    return search_result_block(use_id, [(r.url, r.title) for r in found], error)


def _query(call: Mapping[str, Any]) -> str:
    function = call.get("function") or {}
    query = _arguments(function.get("arguments")).get("query")
    return query.strip() if isinstance(query, str) else ""


def _arguments(text: Any) -> JSONDict:
    try:
        value = orjson.loads(text) if isinstance(text, str | bytes) and text else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _call_name(call: Any) -> str | None:
    function = call.get("function") if isinstance(call, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    return name if isinstance(name, str) else None


def _tool_name(tool: Any) -> str | None:
    if not isinstance(tool, dict):
        return None
    function = tool.get("function")
    name = function.get("name") if isinstance(function, dict) else tool.get("name")
    return name if isinstance(name, str) else None


def _domains(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(d).lower().removeprefix("www.").strip(".") for d in value if d)


def _within(host: str, domain: str) -> bool:
    host = host.removeprefix("www.")
    return host == domain or host.endswith("." + domain)


async def _with_first(first: bytes | None, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first is not None:
        yield first
    async for chunk in rest:
        yield chunk


async def _close(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()
