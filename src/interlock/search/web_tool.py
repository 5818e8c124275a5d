"""The search service's web backends as the gateway's web search tool
(``pipeline/web_search.py``, ADR 0029): SearXNG, Brave and Google, in the
configured order, each with the chain's retries and breaker. The local
index and OpenSearch hold the operator's own documents, not the web: a
model told it searched the web must not be answered from them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from interlock.config.search import SearchConfig
from interlock.search.backends.base import BackendError, SearchResult
from interlock.search.chain import NoBackendAnswered
from interlock.search.service import ResultSource

__all__ = ["WEB_BACKENDS", "WebBackends", "web_backend_names"]

WEB_BACKENDS = frozenset(("searxng", "brave", "google"))


def web_backend_names(settings: SearchConfig) -> list[str]:
    """The configured web backends' names, in order (empty: none)."""
    if not settings.enabled or not settings.web_search_tool:
        return []
    return [b.name or b.type for b in settings.backends if b.type in WEB_BACKENDS]


class WebBackends:
    """``source``: the search service's backends (opened at the first search)."""

    def __init__(self, source: Callable[[], Awaitable[ResultSource]], names: Sequence[str]):
        self._source = source
        self._names = list(names)

    async def __call__(self, query: str, count: int) -> Sequence[SearchResult]:
        """The first web backend's answer; ``NoBackendAnswered`` if none gave one."""
        source = await self._source()
        tried: list[tuple[str, BackendError]] = []
        for name in self._names:
            try:
                answer = await source.search(query, count, True, only=name)
            except NoBackendAnswered as exc:
                tried += exc.failures
                continue
            return answer.results
        raise NoBackendAnswered(tried)
