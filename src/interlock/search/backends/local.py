"""The embedded backend: BM25 over the local SQLite FTS5 index (``search/index.py``).

A query becomes its words, each quoted (``search/query.py``), so nothing
the user types is FTS5 syntax. Their document frequencies (counted once,
then cached per thread until the index changes) decide which are OR'ed into
the MATCH: the rarest, while the postings BM25 must score stay within a
budget (``plan_query``), which bounds a query's cost on a large index. FTS5
ranks the matches with ``bm25`` (title weighted over body) and cuts them at
``num_results`` (``ORDER BY rank LIMIT``, so snippets are made for the
returned rows only). When every word is common (each in more documents than
the budget), the documents whose title has them all are ranked and the rest
follow unranked: BM25 over every document having them all is what made such
queries the slow tail. A query without words (empty, blanks, punctuation)
has no results.

sqlite3 blocks, so searches run on a small pool of threads owned by the
backend, each with its own read-only connection; the pool's size bounds how
many run at once, and a search that outlives ``timeout_s`` is interrupted
and fails with a retryable ``BackendError``. The file is in WAL mode:
``interlock search index`` can add documents while the gateway reads.

``safe_search`` changes nothing here: the bundled corpus is curated, and an
operator's own index holds what the operator chose to put in it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from interlock.config import ConfigError
from interlock.config.search import LocalBackendConfig
from interlock.search.backends.base import BackendError, SearchResult
from interlock.search.index import ensure_index
from interlock.search.query import RANK_BUDGET, every_term_common, plan_query, query_terms
from interlock.store import data_dir

__all__ = ["DEFAULT_INDEX_NAME", "LocalSearchBackend", "default_index_path", "open_local_backend"]

DEFAULT_INDEX_NAME = "search-index.sqlite3"
SNIPPET_TOKENS = 32
_MMAP_BYTES = 256 * 1024 * 1024

_SEARCH = f"""
SELECT title, url, snippet(documents_fts, 1, '', '', '…', {SNIPPET_TOKENS})
FROM documents_fts WHERE documents_fts MATCH ? ORDER BY rank LIMIT ?
"""
_UNRANKED = f"""
SELECT title, url, snippet(documents_fts, 1, '', '', '…', {SNIPPET_TOKENS})
FROM documents_fts WHERE documents_fts MATCH ? LIMIT ?
"""
_FREQUENCY = "SELECT count(*) FROM documents_fts WHERE documents_fts MATCH ?"
_MAX_CACHED_TERMS = 50_000


def default_index_path(environ: Mapping[str, str] = os.environ) -> Path:
    """``search-index.sqlite3`` in ``$INTERLOCK_DATA_DIR`` (default ``./.interlock/``)."""
    return data_dir(environ) / DEFAULT_INDEX_NAME


def open_local_backend(
    config: LocalBackendConfig, environ: Mapping[str, str] = os.environ
) -> LocalSearchBackend:
    """The backend ``config`` describes. Blocking: may build the default index.

    Without ``path`` the index is the default file, built from the bundled
    corpus when missing; a ``path`` that names no file is a ``ConfigError``
    (build it with ``interlock search index``).
    """
    if config.path is None:
        path = default_index_path(environ)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        ensure_index(path)
    else:
        path = Path(config.path).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"search backend {config.name or config.type!r}: no index at {path} "
                f"(build one with: interlock search index SOURCE --index {path})"
            )
    return LocalSearchBackend(path, name=config.name or config.type, timeout_s=config.timeout_s)


class _Call:
    """One search on its way through the pool; the event loop may interrupt it."""

    def __init__(self, terms: list[str], limit: int) -> None:
        self.terms = terms
        self.limit = limit
        self.abandoned = False
        self.connection: sqlite3.Connection | None = None

    def interrupt(self) -> None:
        self.abandoned = True
        if self.connection is not None:
            self.connection.interrupt()


class _Reader:
    """One pool thread's read-only connection, and the term frequencies it counted."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        self._frequencies: dict[str, int] = {}
        self._version: object = None

    def frequencies(self, terms: list[str]) -> dict[str, int]:
        # data_version changes when another connection commits: the counts are stale.
        version = self.connection.execute("PRAGMA data_version").fetchone()
        if version != self._version or len(self._frequencies) > _MAX_CACHED_TERMS:
            self._frequencies.clear()
            self._version = version
        for term in terms:
            if term not in self._frequencies:
                quoted = '"' + term.replace('"', '""') + '"'
                row = self.connection.execute(_FREQUENCY, (quoted,)).fetchone()
                self._frequencies[term] = int(row[0])
        return {term: self._frequencies[term] for term in terms}

    def search(self, terms: list[str], limit: int, budget: int) -> list[tuple[str, str, str]]:
        frequencies = self.frequencies(terms)
        expression = plan_query(frequencies, budget=budget)
        if expression is None:
            return []
        execute = self.connection.execute
        if not every_term_common(frequencies, budget=budget):
            rows = execute(_SEARCH, (expression, limit)).fetchall()
        else:
            # Every word is in so many documents that BM25 over all that have
            # them all would cost tens of milliseconds: rank the documents
            # whose title has them all, then fill up, unranked, with others.
            rows = execute(_SEARCH, ("{title} : (" + expression + ")", limit)).fetchall()
            if len(rows) < limit:
                seen = {row[1] for row in rows}
                more = execute(_UNRANKED, (expression, limit + len(rows))).fetchall()
                rows += [row for row in more if row[1] not in seen][: limit - len(rows)]
        return [(str(t), str(u), str(s or "")) for t, u, s in rows]


class LocalSearchBackend:
    """``SearchBackend`` over one index file, read on ``threads`` threads.

    ``rank_budget``: the postings BM25 may score for one query (``plan_query``).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        name: str = "local",
        timeout_s: float = 5.0,
        threads: int = 4,
        rank_budget: int = RANK_BUDGET,
    ) -> None:
        self.name = name
        self.path = Path(path).resolve()
        self._timeout_s = timeout_s
        self._rank_budget = rank_budget
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"search-{name}")
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    async def search(
        self, query: str, num_results: int, *, safe_search: bool
    ) -> list[SearchResult]:
        terms = query_terms(query)
        if not terms or num_results < 1:
            return []
        if self._closed:
            raise BackendError(self.name, "the backend is closed", retryable=False)
        call = _Call(terms, num_results)
        future = asyncio.get_running_loop().run_in_executor(self._pool, self._run, call)
        try:
            async with asyncio.timeout(self._timeout_s):
                rows = await future
        except TimeoutError:
            call.interrupt()
            raise BackendError(
                self.name, f"no answer within {self._timeout_s:g} s", retryable=True
            ) from None
        except sqlite3.OperationalError as exc:  # locked, I/O, missing file
            raise BackendError(self.name, f"index {self.path}: {exc}", retryable=True) from None
        except sqlite3.Error as exc:  # corrupt, not an index
            raise BackendError(self.name, f"index {self.path}: {exc}", retryable=False) from None
        return [
            SearchResult(
                title=title, url=url, snippet=" ".join(snippet.split()), source=self.name, rank=i
            )
            for i, (title, url, snippet) in enumerate(rows, 1)
        ]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    # -- on the pool's threads --------------------------------------------------------

    def _run(self, call: _Call) -> list[tuple[str, str, str]]:
        reader = self._reader()
        call.connection = reader.connection
        if call.abandoned:
            return []
        return reader.search(call.terms, call.limit, self._rank_budget)

    def _reader(self) -> _Reader:
        reader: _Reader | None = getattr(self._local, "reader", None)
        if reader is None:
            # check_same_thread off only so close() can close it from another
            # thread once the pool has stopped; it is used by this thread alone.
            connection = sqlite3.connect(
                f"{self.path.as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
            connection.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
            reader = self._local.reader = _Reader(connection)
            with self._lock:
                self._connections.append(connection)
        return reader
