"""Brave Search, through its Web Search API.

``GET {url}?q=...&count=N&safesearch=off|strict`` with the key in the
``X-Subscription-Token`` header; the answer's ``web.results[]`` carry
``title``, ``url`` and ``description``, the last with ``<strong>`` around the
matched words (stripped here: snippets are plain text). ``count`` is at most
20 per call; more is not asked for (one page answers a search). An answer
without ``web`` has no web results: an empty list, not an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from interlock.config.search import BraveBackendConfig
from interlock.search.backends.base import SearchResult
from interlock.search.backends.web import WebClient, ranked

__all__ = ["MAX_COUNT", "BraveBackend"]

MAX_COUNT = 20  # the API's limit on count


class BraveBackend:
    """A ``SearchBackend`` on the Brave Web Search API."""

    def __init__(self, name: str, url: str, client: WebClient, api_key: str):
        self.name = name
        self._url = url
        self._client = client
        self._headers = {"x-subscription-token": api_key}

    @classmethod
    def from_config(
        cls, config: BraveBackendConfig, environ: Mapping[str, str] | None = None
    ) -> BraveBackend:
        name = config.name or config.type
        key = config.api_key.reveal()
        client = WebClient(name, config.timeout_s, secrets=(key,), environ=environ)
        return cls(name, config.url, client, key)

    async def search(
        self, query: str, num_results: int, *, safe_search: bool
    ) -> list[SearchResult]:
        count = max(1, min(num_results, MAX_COUNT))
        # safesearch: off, moderate (the API's default) or strict; "safe" asks for strict.
        params = {"q": query, "count": count, "safesearch": "strict" if safe_search else "off"}
        body = await self._client.get_json(f"{self._url}?{urlencode(params)}", self._headers)
        if not isinstance(body, dict):
            raise self._client.malformed("not an object")
        web = body.get("web")
        if web is None:
            return []
        items = web.get("results") if isinstance(web, dict) else None
        if not isinstance(items, list):
            raise self._client.malformed("no web.results list")
        return ranked(self.name, items, ("title", "url", "description"), num_results)

    async def close(self) -> None:
        await self._client.aclose()
