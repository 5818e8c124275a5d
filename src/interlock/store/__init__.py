"""Durable records: API keys, the usage ledger and the audit log, on SQLite or PostgreSQL.

One code path for both backends (SQLAlchemy Core, async): SQLite in a file
under the data directory is the embedded default; PostgreSQL is for many
gateway instances sharing records. ``open_store`` is what the composition
root calls at start-up: it connects, migrates, replays the ledger journals
of processes that were killed (``journal``) and starts the ledger's writer;
``Store.aclose`` writes what the ledger still holds and closes the pool.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.store.audit import AuditEntry, AuditLog
from interlock.store.chat_completions import ChatCompletionStore, StoredChatCompletion
from interlock.store.conversations import (
    ConversationFull,
    ConversationStore,
    StoredConversation,
)
from interlock.store.engine import create_engine
from interlock.store.files import FileRecord, FileStore, new_file_id
from interlock.store.journal import LedgerJournal, dead_journals
from interlock.store.keys import (
    KeyLimits,
    KeyNotFound,
    KeyRecord,
    KeyRevoked,
    KeyStore,
    hash_key,
)
from interlock.store.ledger import GroupBy, UsageLedger, UsageRecord
from interlock.store.migrations import migrate
from interlock.store.responses import ResponseStore, StoredResponse
from interlock.store.sqlite_writer import SQLiteWriteThreads
from interlock.store.usage_rows import COLUMNS

__all__ = [
    "AuditEntry",
    "AuditLog",
    "ChatCompletionStore",
    "ConversationFull",
    "ConversationStore",
    "FileRecord",
    "FileStore",
    "GroupBy",
    "KeyLimits",
    "KeyNotFound",
    "KeyRecord",
    "KeyRevoked",
    "KeyStore",
    "ResponseStore",
    "Store",
    "StoredChatCompletion",
    "StoredConversation",
    "StoredResponse",
    "UsageLedger",
    "UsageRecord",
    "create_engine",
    "data_dir",
    "default_url",
    "hash_key",
    "journal_dir",
    "migrate",
    "new_file_id",
    "open_store",
]

log = logging.getLogger("interlock.store")

DATA_DIR_ENV = "INTERLOCK_DATA_DIR"
DEFAULT_DATA_DIR = ".interlock"


def default_url(environ: Mapping[str, str] = os.environ) -> str:
    """The embedded store: ``interlock.db`` in ``$INTERLOCK_DATA_DIR`` or ``./.interlock/``.

    The directory is created, readable by its owner only (it holds key digests).
    """
    data_dir = _data_dir(environ)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{data_dir / 'interlock.db'}"


def journal_dir(
    url: str,
    pg_schema: str | None = None,
    base: str | Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> Path:
    """Where the ledger journals of the store at ``url`` live:
    ``ledger-journal-<store>`` in ``base``, by default beside a SQLite file or,
    for PostgreSQL, in the data directory. Every process of one store on a
    host must find the same directory: the name is a digest of the store
    (the file's path; the URL without its password, and the schema)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = Path(parsed.database or "").expanduser().resolve()
        store, default_base = str(database), database.parent
    else:
        store = f"{parsed.render_as_string(hide_password=True)}#{pg_schema or ''}"
        default_base = _data_dir(environ)
    digest = hashlib.sha256(store.encode()).hexdigest()[:12]
    where = default_base if base is None else Path(base).expanduser().resolve()
    return where / f"ledger-journal-{digest}"


def data_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$INTERLOCK_DATA_DIR``, else ``./.interlock/``: SQLite, the ledger's
    journal, the search index and uploaded files live there by default."""
    return Path(environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser().resolve()


_data_dir = data_dir


@dataclass(frozen=True, slots=True)
class Store:
    """The records store's services over one engine."""

    engine: AsyncEngine
    keys: KeyStore
    ledger: UsageLedger
    files: FileStore
    responses: ResponseStore
    conversations: ConversationStore
    chat_completions: ChatCompletionStore
    # Who changed what through the admin API (key changes write their own entries).
    audit: AuditLog
    # The ledger's and the stored responses' writer threads, on SQLite.
    sqlite_threads: SQLiteWriteThreads | None = None

    async def ping(self, timeout_s: float = 1.0) -> bool:
        """Reachable within ``timeout_s``? Never raises (for readiness)."""
        try:
            async with asyncio.timeout(timeout_s), self.engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
        except Exception:
            return False
        return True

    async def aclose(self) -> None:
        """Flush the ledger (within its deadline) and the stored responses
        waiting, then close the pool."""
        try:
            await self.ledger.aclose()
            await self.responses.aclose()
        finally:
            if self.sqlite_threads is not None:
                self.sqlite_threads.dispose()
            await self.engine.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


async def open_store(
    url: str | None = None,
    *,
    pg_schema: str | None = None,
    ledger_flush_interval_s: float = 0.5,
    ledger_max_pending: int = 100_000,
    ledger_journal_dir: str | Path | None = None,
) -> Store:
    """Connect to ``url`` (default: ``default_url()``), migrate, replay the
    journals of killed processes (``journal_dir``), start the ledger's writer.

    A journal directory that cannot be written is logged at ERROR and the
    ledger runs without one: the gateway still serves, and records waiting
    for the database are lost if the process is killed.
    """
    url = url or default_url()
    engine = create_engine(url, pg_schema=pg_schema)
    try:
        await migrate(engine)
    except BaseException:
        await engine.dispose()
        raise
    journal = _open_journal(journal_dir(url, pg_schema, ledger_journal_dir))
    # One set of writer threads per SQLite file, for every table batched into it.
    threads = (
        SQLiteWriteThreads(engine.url.database or "") if engine.dialect.name == "sqlite" else None
    )
    ledger = UsageLedger(
        engine,
        journal=journal,
        flush_interval_s=ledger_flush_interval_s,
        max_pending=ledger_max_pending,
        sqlite_threads=threads,
    )
    try:
        if journal is not None:
            await ledger.replay(dead_journals(journal.directory))
    except BaseException:
        await ledger.aclose()
        if threads is not None:
            threads.dispose()
        await engine.dispose()
        raise
    ledger.start()
    return Store(
        engine=engine,
        keys=KeyStore(engine),
        ledger=ledger,
        files=FileStore(engine),
        responses=ResponseStore(engine, sqlite_threads=threads),
        conversations=ConversationStore(engine),
        chat_completions=ChatCompletionStore(engine),
        audit=AuditLog(engine),
        sqlite_threads=threads,
    )


def _open_journal(directory: Path) -> LedgerJournal | None:
    try:
        return LedgerJournal(directory, COLUMNS)
    except OSError as exc:
        log.error(
            "usage ledger: no journal (%s): records not yet in the database"
            " are lost if the process is killed",
            exc,
        )
        return None
