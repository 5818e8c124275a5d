"""An OpenSearch (or Elasticsearch-compatible) index, for documents at scale.

Uses the official client, ``opensearch-py``'s ``AsyncOpenSearch`` (over
aiohttp): an optional extra, ``pip install 'interlock[opensearch]'``.

Searching: ``multi_match`` over ``title^2`` and ``body`` (a title word
counts twice), ``size`` = ``num_results``; the snippet is the best ``body``
fragment from OpenSearch's highlighter, asked for without tags (plain text),
or the body's start when nothing in the body matched (``no_match_size``).
``safe_search`` changes nothing: the index holds what its operator put in it.

Indexing: ``index_documents`` sends ``{title, url, body}`` documents through
the bulk API (``helpers.async_bulk``), each under its URL as ``_id``, so
indexing a document again replaces it (as the local index does). The index is
created by OpenSearch's dynamic mapping at the first document (``text``
fields); create it beforehand to choose analyzers.

The client's own retries are off (the chain retries); every search ends
within ``timeout_s``. Errors map to ``BackendError`` as the web adapters'
do (``web.py``): 401/403 and other 4xx (a missing index, a rejected query)
are not retryable, 429/5xx, timeouts and connection failures are. Messages
never quote the client's exception text, which can carry the URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import Any

from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import (
    ConnectionError,
    ConnectionTimeout,
    OpenSearchException,
    SerializationError,
    TransportError,
)
from opensearchpy.helpers import BulkIndexError, async_bulk

from interlock.config.search import OpenSearchBackendConfig
from interlock.search.backends.base import BackendError, SearchResult
from interlock.search.backends.web import plain_text
from interlock.search.sources import Document

__all__ = ["OpenSearchBackend", "search_body"]

SNIPPET_CHARS = 200
_BULK_CHUNK = 500  # documents per bulk request


def search_body(query: str, size: int) -> dict[str, Any]:
    """The ``_search`` request for ``query``: the best ``size`` documents."""
    return {
        "query": {"multi_match": {"query": query, "fields": ["title^2", "body"]}},
        "size": size,
        "_source": ["title", "url", "body"],
        "highlight": {
            "pre_tags": [""],
            "post_tags": [""],
            "fields": {
                "body": {
                    "fragment_size": SNIPPET_CHARS,
                    "number_of_fragments": 1,
                    "no_match_size": SNIPPET_CHARS,
                }
            },
        },
    }


class OpenSearchBackend:
    """A ``SearchBackend`` on one index, through the client it is given."""

    def __init__(self, name: str, client: AsyncOpenSearch, index: str, timeout_s: float):
        self.name = name
        self.index = index
        self._client = client
        self._timeout_s = timeout_s

    @classmethod
    def from_config(cls, config: OpenSearchBackendConfig) -> OpenSearchBackend:
        auth = None
        if config.username is not None:
            password = config.password.reveal() if config.password is not None else ""
            auth = (config.username, password)
        client = AsyncOpenSearch(
            hosts=[config.url],
            http_auth=auth,
            timeout=config.timeout_s,
            max_retries=0,
            retry_on_timeout=False,
        )
        return cls(config.name or config.type, client, config.index, config.timeout_s)

    async def search(
        self, query: str, num_results: int, *, safe_search: bool
    ) -> list[SearchResult]:
        error: BackendError | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                body = await self._client.search(
                    index=self.index, body=search_body(query, num_results)
                )
        except TimeoutError:
            error = self._timed_out()
        except OpenSearchException as exc:
            error = self._classified(exc)
        if error is not None:
            raise error  # out here, so it holds no reference to the client's exception
        try:
            hits = body["hits"]["hits"]
            return [self._result(hit, rank) for rank, hit in enumerate(hits[:num_results], 1)]
        except (KeyError, TypeError, AttributeError):
            pass
        raise BackendError(self.name, "unexpected response shape", retryable=False)

    async def index_documents(self, documents: Iterable[Document], *, refresh: bool = False) -> int:
        """Index ``documents`` (each replaces any with its URL); returns how many.
        ``refresh``: make them searchable before returning."""
        try:
            indexed, _ = await async_bulk(
                self._client,
                self._actions(documents),
                chunk_size=_BULK_CHUNK,
                refresh=refresh,
            )
            return indexed
        except BulkIndexError as exc:
            message = f"{len(exc.errors)} document(s) refused by the index"
            error = BackendError(self.name, message, retryable=False)
        except OpenSearchException as exc:
            error = self._classified(exc)
        raise error

    async def close(self) -> None:
        await self._client.close()

    def _actions(self, documents: Iterable[Document]) -> Iterator[dict[str, Any]]:
        for doc in documents:
            yield {
                "_index": self.index,
                "_id": doc.url,
                "_source": {"title": doc.title, "url": doc.url, "body": doc.body},
            }

    def _result(self, hit: dict[str, Any], rank: int) -> SearchResult:
        source = hit["_source"]
        fragments = hit.get("highlight", {}).get("body") or [source.get("body", "")]
        snippet = plain_text(str(fragments[0]))
        if len(snippet) > SNIPPET_CHARS:
            snippet = snippet[: SNIPPET_CHARS - 1] + "…"
        return SearchResult(
            title=plain_text(str(source.get("title", ""))),
            url=str(source["url"]),
            snippet=snippet,
            source=self.name,
            rank=rank,
        )

    def _classified(self, exc: OpenSearchException) -> BackendError:
        # Our own words only: the client's text can quote the URL and the body.
        if isinstance(exc, ConnectionTimeout):
            return self._timed_out()
        if isinstance(exc, ConnectionError):
            return BackendError(self.name, "cannot reach OpenSearch", retryable=True)
        if isinstance(exc, TransportError) and isinstance(exc.status_code, int):
            status = exc.status_code
            retryable = status in (408, 429) or status >= 500
            return BackendError(self.name, f"OpenSearch answered {status}", retryable=retryable)
        if isinstance(exc, SerializationError):
            return BackendError(
                self.name, "OpenSearch sent a body that is not JSON", retryable=False
            )
        return BackendError(self.name, f"OpenSearch failed: {type(exc).__name__}")

    def _timed_out(self) -> BackendError:
        return BackendError(self.name, f"timed out after {self._timeout_s:g}s", retryable=True)
