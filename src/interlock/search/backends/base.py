"""What every search backend is: a query in, ranked results out.

A backend knows its own wire format and nothing else: no retries, breakers
or fallback between backends (the service's chain does that, as the router
does for model deployments). It raises ``BackendError`` for anything that
went wrong on its side, so the chain can tell "this backend failed" from
"no results".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["BackendError", "SearchBackend", "SearchResult"]


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One result as every backend gives it and every client sees it."""

    title: str
    url: str
    snippet: str  # plain text: no markup from the source survives
    source: str  # the backend's name: "local", "searxng", "brave", ...
    rank: int  # 1-based, in the order the backend ranked them

    def to_json(self) -> dict[str, str | int]:
        return {
            "title": self.title,
            "url": self.url,
            "snippet": self.snippet,
            "source": self.source,
            "rank": self.rank,
        }


class BackendError(Exception):
    """The backend could not answer (unreachable, timed out, refused, garbage).

    ``retryable``: whether asking again (or the next backend) may help; a
    refused credential is not, a timeout is.
    """

    def __init__(self, backend: str, message: str, *, retryable: bool = True):
        super().__init__(f"{backend}: {message}")
        self.backend = backend
        self.retryable = retryable


class SearchBackend(Protocol):
    # Unique among configured backends; the ``source`` of its results.
    name: str

    async def search(
        self, query: str, num_results: int, *, safe_search: bool
    ) -> list[SearchResult]:
        """At most ``num_results`` results, best first (``rank`` 1, 2, ...).
        Bounded in time by the backend's own timeout; ``BackendError`` on failure."""
        ...

    async def close(self) -> None:
        """Release connections and files (idempotent)."""
        ...
