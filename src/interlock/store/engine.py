"""The async engine for the records store, with its bounds set.

Every pool has a size and a wait limit, every connection a connect and a
statement timeout (STYLE 8): a stuck database must surface as an error the
ledger can retry, never as a request path that hangs.

SQLite needs two fixes to behave like a database with transactions:

* Python's ``sqlite3`` only opens a transaction before DML, so ``CREATE TABLE``
  inside ``engine.begin()`` would commit on its own and a failed migration
  would leave half a schema. We switch the driver's own handling off and emit
  ``BEGIN`` ourselves (SQLAlchemy's documented recipe).
* A deferred transaction that reads and then writes fails at once with
  ``SQLITE_BUSY`` when another connection wrote in between, ignoring the busy
  timeout. ``write_engine`` hands out connections that open with
  ``BEGIN IMMEDIATE``, taking the write lock first, so writers queue instead.

WAL journaling lets key lookups read while the ledger writes.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

__all__ = ["create_engine", "write_engine"]

_BEGIN_OPTION = "interlock_sqlite_begin"


def create_engine(
    url: str,
    *,
    pool_size: int = 5,
    max_overflow: int = 5,
    pool_timeout_s: float = 10.0,
    connect_timeout_s: float = 5.0,
    command_timeout_s: float = 15.0,
    pg_schema: str | None = None,
) -> AsyncEngine:
    """An engine for ``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://...``.

    ``pg_schema`` puts PostgreSQL's tables in that (existing) schema through
    the connection's ``search_path``, so one database can hold several stores.
    For SQLite, the database file's directory is created if missing.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    pool: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": max_overflow,
        "pool_timeout": pool_timeout_s,
    }
    if backend == "sqlite":
        database = parsed.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            raise ValueError("the records store needs a SQLite file path, not an in-memory db")
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        # sqlite3's ``timeout`` is its busy timeout: how long a writer waits for the lock.
        engine = create_async_engine(url, connect_args={"timeout": command_timeout_s}, **pool)
        _make_sqlite_transactional(engine)
        return engine
    if backend == "postgresql":
        connect_args: dict[str, Any] = {
            "timeout": connect_timeout_s,
            "command_timeout": command_timeout_s,
        }
        if pg_schema is not None:
            connect_args["server_settings"] = {"search_path": pg_schema}
        return create_async_engine(url, connect_args=connect_args, pool_pre_ping=True, **pool)
    raise ValueError(f"unsupported records store url {parsed.render_as_string()!r}")


def write_engine(engine: AsyncEngine) -> AsyncEngine:
    """The same pool, whose transactions take SQLite's write lock at ``BEGIN``.

    Elsewhere this is ``engine`` itself: PostgreSQL locks rows, not the file.
    """
    if engine.dialect.name != "sqlite":
        return engine
    return engine.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})


# How long a new connection keeps trying to switch the file to WAL.
_WAL_SWITCH_WAIT_S = 15.0


def enable_wal(dbapi_connection: Any, wait_s: float = _WAL_SWITCH_WAIT_S) -> None:
    """Put the database file in WAL mode, unless it already is (the mode lives
    in the file, so the first connection sets it for all).

    Switching takes a lock for which SQLite does not wait on its busy
    timeout: gateways starting together on one file got "database is locked"
    from it (6 connections racing: 15 fresh files in 200). Retried here,
    briefly, until ``wait_s``.
    """
    cursor = dbapi_connection.cursor()
    try:
        deadline = time.monotonic() + wait_s
        while True:
            # Two calls, not chained: SQLAlchemy's aiosqlite adapter does not
            # return the cursor from ``execute``.
            cursor.execute("PRAGMA journal_mode")
            if cursor.fetchone()[0] == "wal":
                return
            try:
                cursor.execute("PRAGMA journal_mode=WAL")
                return  # "wal", or "memory" for an in-memory database
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
    finally:
        cursor.close()


def _make_sqlite_transactional(engine: AsyncEngine) -> None:
    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        enable_wal(dbapi_connection)

    def on_begin(connection: Connection) -> None:
        begin = connection.get_execution_options().get(_BEGIN_OPTION, "BEGIN")
        connection.exec_driver_sql(begin)

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", on_begin)
