"""Fake search services for tests: real aiohttp apps served on loopback
(``tests.support.servers.FakeUpstream``), answering in each API's documented
response format and recording every request they get.

``mode`` switches what a fake answers, per request, from the test:

- ``ok``: results (the fake's ``docs``), in the service's format
- ``500``, ``429``, ``401``: that status, with the service's error body,
  which echoes the credential it was sent (as some services do) so tests
  can check that no error message ever repeats it
- ``slow``: nothing until ``release()`` (the fixture releases at teardown)
- ``garbage``: 200 with an HTML page instead of JSON
- ``wrong_shape``: 200 with JSON that is not the documented object
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

# A slow request gives up on its own after this long, if nobody releases it.
_STALL_S = 30.0

SEARXNG_PATH = "/search"
BRAVE_PATH = "/res/v1/web/search"
GOOGLE_PATH = "/customsearch/v1"


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it; header names in lower case."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Doc:
    title: str
    url: str
    snippet: str  # with whatever markup the service would send


@dataclass
class _Fake:
    mode: str = "ok"
    requests: list[Seen] = field(default_factory=list)
    _stalled: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = field(default_factory=list)

    def release(self) -> None:
        """Let every stalled (``slow``) request finish."""
        for loop, event in self._stalled:
            loop.call_soon_threadsafe(event.set)

    async def _record(self, request: web.Request) -> Seen:
        seen = Seen(
            request.method,
            request.path,
            dict(request.query),
            {k.lower(): v for k, v in request.headers.items()},
            await request.read(),
        )
        self.requests.append(seen)
        return seen

    async def _stall(self) -> None:
        event = asyncio.Event()
        self._stalled.append((asyncio.get_running_loop(), event))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_STALL_S):
                await event.wait()

    async def _common_failure(self) -> web.Response | None:
        """The answer for the modes every fake shares; None in ``ok``."""
        if self.mode == "slow":
            await self._stall()
            return web.Response(status=504)
        if self.mode == "garbage":
            return web.Response(text="<html><body>Service Unavailable</body></html>")
        if self.mode == "wrong_shape":
            return web.json_response([1, 2, 3])
        return None


@dataclass
class FakeSearchService(_Fake):
    """SearXNG, Brave or Google (``kind``), serving ``docs`` for any query."""

    kind: str = "searxng"
    docs: list[Doc] = field(default_factory=list)

    @property
    def path(self) -> str:
        return {"searxng": SEARXNG_PATH, "brave": BRAVE_PATH, "google": GOOGLE_PATH}[self.kind]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(self.path, self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        seen = await self._record(request)
        failure = await self._common_failure()
        if failure is not None:
            return failure
        if self.mode in ("500", "429", "401"):
            return self._error(int(self.mode), seen)
        return web.json_response(self._results(seen))

    def _credential(self, seen: Seen) -> str:
        if self.kind == "google":
            return seen.query.get("key", "")
        if self.kind == "brave":
            return seen.headers.get("x-subscription-token", "")
        return seen.headers.get("authorization", "")

    def _error(self, status: int, seen: Seen) -> web.Response:
        secret = self._credential(seen)
        if self.kind == "google":
            body: Any = {
                "error": {
                    "code": status,
                    "message": f"API key not valid: {secret}. Please pass a valid API key.",
                    "errors": [{"message": "Bad Request", "domain": "global", "reason": "x"}],
                    "status": "INVALID_ARGUMENT",
                }
            }
        elif self.kind == "brave":
            body = {
                "type": "ErrorResponse",
                "error": {
                    "id": "0f1e2d3c",
                    "status": status,
                    "code": "SUBSCRIPTION_TOKEN_INVALID",
                    "detail": f"The provided subscription token {secret} is invalid.",
                    "meta": {"component": "authentication"},
                },
                "time": 1700000000,
            }
        else:
            # SearXNG (or the proxy in front of it) answers errors in plain text.
            return web.Response(status=status, text=f"Forbidden for {secret}")
        headers = {"Retry-After": "1"} if status == 429 else {}
        return web.json_response(body, status=status, headers=headers)

    def _results(self, seen: Seen) -> dict[str, Any]:
        q = seen.query.get("q", "")
        if self.kind == "searxng":
            return searxng_page(q, self.docs)
        if self.kind == "brave":
            return brave_page(q, self.docs[: int(seen.query.get("count", "20"))])
        return google_page(q, self.docs[: int(seen.query.get("num", "10"))])


def searxng_page(query: str, docs: list[Doc]) -> dict[str, Any]:
    """SearXNG's ``format=json`` answer."""
    results = [
        {
            "url": d.url,
            "title": d.title,
            "content": d.snippet,
            "engine": "duckduckgo",
            "engines": ["duckduckgo", "brave"],
            "positions": [i],
            "score": 2.0 / i,
            "category": "general",
            "parsed_url": ["https", "example.org", "/", "", "", ""],
        }
        for i, d in enumerate(docs, 1)
    ]
    return {
        "query": query,
        "number_of_results": 0,
        "results": results,
        "answers": [],
        "corrections": [],
        "infoboxes": [],
        "suggestions": [],
        "unresponsive_engines": [],
    }


def brave_page(query: str, docs: list[Doc]) -> dict[str, Any]:
    """Brave's ``/res/v1/web/search`` answer; no ``web`` section without results."""
    page: dict[str, Any] = {
        "type": "search",
        "query": {"original": query, "show_strict_warning": False, "is_navigational": False},
        "mixed": {"type": "mixed", "main": [], "top": [], "side": []},
    }
    if docs:
        page["web"] = {
            "type": "search",
            "family_friendly": True,
            "results": [
                {
                    "type": "search_result",
                    "title": d.title,
                    "url": d.url,
                    "description": d.snippet,
                    "is_source_local": False,
                    "is_source_both": False,
                    "language": "en",
                    "family_friendly": True,
                    "meta_url": {"scheme": "https", "netloc": "example.org"},
                }
                for d in docs
            ],
        }
    return page


def google_page(query: str, docs: list[Doc]) -> dict[str, Any]:
    """The Custom Search JSON API's answer; no ``items`` without results."""
    page: dict[str, Any] = {
        "kind": "customsearch#search",
        "url": {"type": "application/json", "template": "https://www.googleapis.com/..."},
        "queries": {"request": [{"searchTerms": query, "count": len(docs), "startIndex": 1}]},
        "context": {"title": "test engine"},
        "searchInformation": {"totalResults": str(len(docs)), "searchTime": 0.2},
    }
    if docs:
        page["items"] = [
            {
                "kind": "customsearch#result",
                "title": d.title,
                "htmlTitle": f"<b>{d.title}</b>",
                "link": d.url,
                "displayLink": "example.org",
                "snippet": d.snippet,
                "htmlSnippet": f"<b>{d.snippet}</b>",
            }
            for d in docs
        ]
    return page


@dataclass
class FakeOpenSearch(_Fake):
    """One OpenSearch node: ``GET /`` info, ``_search`` on stored documents
    (a naive term match, title counted twice), ``_bulk`` indexing.

    Extra mode ``bulk_reject``: every bulk item fails (``errors: true``).
    """

    docs: dict[str, dict[str, Any]] = field(default_factory=dict)  # _index/_id -> _source

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._info)
        app.router.add_route("*", "/{index}/_search", self._search)
        app.router.add_post("/_bulk", self._bulk)
        return app

    async def _info(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response(
            {
                "name": "fake-node",
                "cluster_name": "fake",
                "cluster_uuid": "f4k3",
                "version": {"distribution": "opensearch", "number": "2.17.0"},
                "tagline": "The OpenSearch Project: https://opensearch.org/",
            }
        )

    async def _failure(self, request: web.Request) -> web.Response | None:
        failure = await self._common_failure()
        if failure is not None:
            return failure
        if self.mode in ("500", "429", "401", "404"):
            status = int(self.mode)
            kind = {
                401: "security_exception",
                404: "index_not_found_exception",
                429: "rejected_execution_exception",
                500: "exception",
            }[status]
            auth = request.headers.get("Authorization", "")
            reason = f"failed for {auth}"  # echoes the credential: must not surface
            error = {"root_cause": [{"type": kind, "reason": reason}], "type": kind}
            return web.json_response(
                {"error": {**error, "reason": reason}, "status": status}, status=status
            )
        return None

    async def _search(self, request: web.Request) -> web.Response:
        seen = await self._record(request)
        failure = await self._failure(request)
        if failure is not None:
            return failure
        index = request.match_info["index"]
        body = json.loads(seen.body or b"{}")
        words = str(body["query"]["multi_match"]["query"]).lower().split()
        scored = []
        for key, source in self.docs.items():
            if not key.startswith(f"{index}/"):
                continue
            title, text = source["title"].lower(), source["body"].lower()
            score = sum(2 * title.count(w) + text.count(w) for w in words)
            if score:
                scored.append((float(score), key.split("/", 1)[1], source))
        scored.sort(key=lambda hit: -hit[0])
        hits = [
            {
                "_index": index,
                "_id": doc_id,
                "_score": score,
                "_source": source,
                "highlight": {"body": [source["body"][:200]]},
            }
            for score, doc_id, source in scored[: body.get("size", 10)]
        ]
        return web.json_response(
            {
                "took": 2,
                "timed_out": False,
                "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                "hits": {
                    "total": {"value": len(scored), "relation": "eq"},
                    "max_score": scored[0][0] if scored else None,
                    "hits": hits,
                },
            }
        )

    async def _bulk(self, request: web.Request) -> web.Response:
        seen = await self._record(request)
        failure = await self._failure(request)
        if failure is not None:
            return failure
        lines = [json.loads(line) for line in seen.body.splitlines() if line.strip()]
        items = []
        for action, source in zip(lines[::2], lines[1::2], strict=True):
            meta = action["index"]
            where = {"_index": meta["_index"], "_id": meta["_id"]}
            if self.mode == "bulk_reject":
                error = {"type": "mapper_parsing_exception", "reason": "failed to parse"}
                items.append({"index": {**where, "status": 400, "error": error}})
                continue
            key = f"{meta['_index']}/{meta['_id']}"
            created = key not in self.docs
            self.docs[key] = source
            result = {"result": "created" if created else "updated", "_version": 1}
            items.append({"index": {**where, **result, "status": 201 if created else 200}})
        errors = any("error" in item["index"] for item in items)
        return web.json_response({"took": 3, "errors": errors, "items": items})
