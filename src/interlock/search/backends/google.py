"""Google Programmable Search, through the Custom Search JSON API.

``GET {url}?key=...&cx=...&q=...&num=N&safe=active|off``; the answer's
``items[]`` carry ``title``, ``link`` and ``snippet``. ``num`` is at most 10
per call, so a search for more gets at most 10: a second page would cost a
second paid query and a second timeout for results the summary seldom needs.
An answer without ``items`` found nothing: an empty list, not an error.

The API key travels in the query string, so the URL is never quoted in an
error (``web.WebClient`` keeps URLs out of its messages and scrubs the key).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from interlock.config.search import GoogleBackendConfig
from interlock.search.backends.base import SearchResult
from interlock.search.backends.web import WebClient, ranked

__all__ = ["MAX_NUM", "GoogleBackend"]

MAX_NUM = 10  # the API's limit on num


class GoogleBackend:
    """A ``SearchBackend`` on one Programmable Search Engine (``cx``)."""

    def __init__(self, name: str, url: str, client: WebClient, api_key: str, cx: str):
        self.name = name
        self._url = url
        self._client = client
        self._key = api_key
        self._cx = cx

    @classmethod
    def from_config(
        cls, config: GoogleBackendConfig, environ: Mapping[str, str] | None = None
    ) -> GoogleBackend:
        name = config.name or config.type
        key = config.api_key.reveal()
        client = WebClient(name, config.timeout_s, secrets=(key,), environ=environ)
        return cls(name, config.url, client, key, config.cx)

    async def search(
        self, query: str, num_results: int, *, safe_search: bool
    ) -> list[SearchResult]:
        num = max(1, min(num_results, MAX_NUM))
        params = {
            "key": self._key,
            "cx": self._cx,
            "q": query,
            "num": num,
            "safe": "active" if safe_search else "off",
        }
        body = await self._client.get_json(f"{self._url}?{urlencode(params)}")
        if not isinstance(body, dict):
            raise self._client.malformed("not an object")
        items = body.get("items", [])
        if not isinstance(items, list):
            raise self._client.malformed("items is not a list")
        return ranked(self.name, items, ("title", "link", "snippet"), num)

    async def close(self) -> None:
        await self._client.aclose()
