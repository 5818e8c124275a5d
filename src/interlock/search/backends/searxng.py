"""SearXNG, a self-hosted metasearch engine, through its Search API.

``GET {url}/search?q=...&format=json&safesearch=0|2&pageno=1``; the answer's
``results[]`` carry ``title``, ``url`` and ``content`` (the snippet). The
instance must enable the JSON format (``search.formats`` in its settings.yml),
else it answers 403. SearXNG has no result-count parameter: a page holds what
its engines returned (often about 20), and the first ``num_results`` are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from interlock.config.search import SearxngBackendConfig
from interlock.search.backends.base import SearchResult
from interlock.search.backends.web import WebClient, ranked

__all__ = ["SearxngBackend"]


class SearxngBackend:
    """A ``SearchBackend`` on one SearXNG instance."""

    def __init__(self, name: str, url: str, client: WebClient, api_key: str | None = None):
        self.name = name
        self._search_url = url.rstrip("/") + "/search"
        self._client = client
        # For instances behind an authenticating proxy; SearXNG itself has no keys.
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}

    @classmethod
    def from_config(
        cls, config: SearxngBackendConfig, environ: Mapping[str, str] | None = None
    ) -> SearxngBackend:
        name = config.name or config.type
        key = config.api_key.reveal() if config.api_key is not None else None
        secrets = (key,) if key else ()
        client = WebClient(name, config.timeout_s, secrets=secrets, environ=environ)
        return cls(name, config.url, client, key)

    async def search(
        self, query: str, num_results: int, *, safe_search: bool
    ) -> list[SearchResult]:
        # safesearch: 0 none, 1 moderate, 2 strict; "safe" asks for the strictest.
        params = {"q": query, "format": "json", "safesearch": 2 if safe_search else 0, "pageno": 1}
        body = await self._client.get_json(f"{self._search_url}?{urlencode(params)}", self._headers)
        items = body.get("results") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise self._client.malformed("no results list")
        return ranked(self.name, items, ("title", "url", "content"), num_results)

    async def close(self) -> None:
        await self._client.aclose()
