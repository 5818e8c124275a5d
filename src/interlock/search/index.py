"""The local search index: one SQLite file, written here, read by ``backends/local``.

Layout: ``documents`` (id, url, title, body; ``url`` unique) holds the text;
``documents_fts`` is an FTS5 *external-content* table over it (title, body,
and url unindexed), kept in step by triggers, tokenised ``porter unicode61``
(English stemming; case and diacritics folded). Its ``rank`` is
``bm25(10, 1)``: a word in the title counts ten times one in the body.

Writing is incremental: adding a document whose url is already indexed
replaces it. ``IndexWriter.add`` batches rows into transactions. The file is
in WAL mode, so a gateway keeps answering while ``interlock search index``
adds documents.

``ensure_index`` builds the bundled corpus into a missing file at first
start: into a temporary file, then linked into place, so two processes
starting at once both end with one complete index and nobody reads half of
one.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from types import TracebackType

from interlock.search.sources import Document, read_jsonl

__all__ = [
    "BODY_WEIGHT",
    "TITLE_WEIGHT",
    "Document",
    "IndexWriter",
    "bundled_corpus",
    "ensure_index",
]

log = logging.getLogger("interlock.search")

TITLE_WEIGHT = 10.0
BODY_WEIGHT = 1.0

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS documents_fts USING fts5(
    title, body, url UNINDEXED,
    content='documents', content_rowid='id',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS documents_ai AFTER INSERT ON documents BEGIN
    INSERT INTO documents_fts(rowid, title, body, url)
    VALUES (new.id, new.title, new.body, new.url);
END;
CREATE TRIGGER IF NOT EXISTS documents_ad AFTER DELETE ON documents BEGIN
    INSERT INTO documents_fts(documents_fts, rowid, title, body, url)
    VALUES ('delete', old.id, old.title, old.body, old.url);
END;
CREATE TRIGGER IF NOT EXISTS documents_au AFTER UPDATE ON documents BEGIN
    INSERT INTO documents_fts(documents_fts, rowid, title, body, url)
    VALUES ('delete', old.id, old.title, old.body, old.url);
    INSERT INTO documents_fts(rowid, title, body, url)
    VALUES (new.id, new.title, new.body, new.url);
END;
INSERT INTO documents_fts(documents_fts, rank)
VALUES ('rank', 'bm25({TITLE_WEIGHT}, {BODY_WEIGHT})');
"""

_UPSERT = """
INSERT INTO documents (url, title, body) VALUES (?, ?, ?)
ON CONFLICT (url) DO UPDATE SET title = excluded.title, body = excluded.body
WHERE title IS NOT excluded.title OR body IS NOT excluded.body
"""


class IndexWriter:
    """Adds documents to an index file, creating it (and its schema) if missing.

    One writer at a time per file (SQLite's write lock); readers are never
    blocked. Use as a context manager: leaving it commits what is pending.
    """

    def __init__(self, path: str | Path, *, batch_size: int = 1000) -> None:
        self.path = Path(path)
        self._batch_size = batch_size
        self._pending = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def add(self, document: Document) -> None:
        if self._pending == 0:
            self._conn.execute("BEGIN IMMEDIATE")
        self._conn.execute(_UPSERT, (document.url, document.title, document.body))
        self._pending += 1
        if self._pending >= self._batch_size:
            self.commit()

    def add_all(self, documents: Iterable[Document]) -> int:
        count = 0
        for document in documents:
            self.add(document)
            count += 1
        return count

    def commit(self) -> None:
        if self._pending:
            self._conn.execute("COMMIT")
            self._pending = 0

    def count(self) -> int:
        row = self._conn.execute("SELECT count(*) FROM documents").fetchone()
        return int(row[0])

    def optimize(self) -> None:
        """Merge the FTS5 segments into one: faster queries after a bulk load."""
        self.commit()
        self._conn.execute("INSERT INTO documents_fts(documents_fts) VALUES ('optimize')")

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self._conn.close()

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None and self._pending:
            self._conn.execute("ROLLBACK")
            self._pending = 0
        self.close()


def bundled_corpus() -> Iterator[Document]:
    """The encyclopedia articles shipped in the package (``search/corpus/``)."""
    corpus = resources.files("interlock.search").joinpath("corpus/articles.jsonl")
    with resources.as_file(corpus) as path:
        yield from read_jsonl(path)


def ensure_index(path: str | Path) -> Path:
    """``path``, first built from the bundled corpus if no file is there.

    Blocking (~0.1 s for the bundled corpus): call it before serving, or
    through ``asyncio.to_thread``. Safe when several processes start at once.
    """
    path = Path(path)
    if path.exists():
        return path
    started = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with IndexWriter(tmp) as writer:
            count = writer.add_all(bundled_corpus())
            writer.optimize()
        # A hard link fails when the target exists: the first builder wins and
        # a file that readers may already hold open is never replaced.
        try:
            os.link(tmp, path)
        except FileExistsError:
            return path
        except OSError:  # a filesystem without hard links
            os.replace(tmp, path)
    finally:
        _remove(tmp)
    log.info(
        "built the search index %s from the bundled corpus: %d documents in %.2f s",
        path,
        count,
        time.perf_counter() - started,
    )
    return path


def _remove(path: Path) -> None:
    for leftover in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
