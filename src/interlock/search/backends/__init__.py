"""Search backends, one interface (``base.SearchBackend``)."""

from interlock.search.backends.base import BackendError, SearchBackend, SearchResult

__all__ = ["BackendError", "SearchBackend", "SearchResult"]
