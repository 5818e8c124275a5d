"""Batched SQLite writes (the usage ledger's, the stored responses'): one
transaction per batch, off the event loop.

A batch is committed by a thread of its own, on a plain ``sqlite3``
connection, so that the thread does almost nothing while holding the GIL:
rows arrive as tuples ready to bind (the ledger encodes each record when it
is added), ``executemany`` binds each row in C and releases the GIL while
SQLite inserts it. Python code in a worker thread holds the GIL until the
interpreter's switch interval (5 ms) makes it let go, and a request that
arrived meanwhile waits for it: that is why neither SQLAlchemy's engine
(its pool and events are Python) nor per-value conversion run here any more.

The thread also competes for the CPU: with the gateway on one core, a batch
of 500 rows is a few milliseconds of B-tree inserts on the core that serves
requests. So the writer runs at the lowest scheduling priority (nice 19, a
per-thread setting on Linux) and only takes the core while the event loop
waits for I/O. A low-priority thread can be starved by a saturated core, and
a starved ledger would fill its buffer; so once the ledger is behind (its
``catch_up_at``), batches go to a second thread at normal priority until it
has caught up. Not ``SCHED_IDLE``: an idle-class thread preempted while it
holds the GIL could wait behind any other process on the core, and the event
loop with it; a nice-19 thread still gets its small share.

One file's threads commit one batch at a time (``SQLiteWriteThreads.run``):
a catch-up batch waits for the batch in flight, not on the file's write
lock. A starved background batch holding that lock had made the other
thread's batch run out its busy timeout (``database is locked``) on a
saturated core.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.store.engine import enable_wal

__all__ = [
    "BACKGROUND_NICE",
    "SQLiteBatchWriter",
    "SQLiteWriteThreads",
    "lower_thread_priority",
    "sqlite_time",
]

BACKGROUND_NICE = 19


def sqlite_time(value: datetime) -> str:
    """What SQLAlchemy stores for a ``UTCDateTime`` on SQLite: naive UTC ISO text
    with microseconds (``isoformat``: two thirds of ``strftime``'s cost)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def lower_thread_priority(nice: int = BACKGROUND_NICE) -> None:
    """Give the calling thread the nice value ``nice``; where a thread has no
    nice value of its own (only Linux has one), leave it as it is."""
    if not sys.platform.startswith("linux"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError:
        pass  # not allowed here: the writer runs at normal priority, as before


class SQLiteWriteThreads:
    """The threads that commit batches into one SQLite file: a background one
    (nice 19) and, with ``catch_up=True``, one at normal priority; each with
    its own connection, opened on first use and closed on that thread.
    ``name``: their threads' name.

    Every batch writer of one file shares one (``open_store``): with a
    background thread per table, two starved nice-19 threads took turns
    holding the file's write lock, and the one waiting could run out its
    busy timeout (``database is locked``) on a saturated core. On one
    thread the ledger's and the stored responses' batches simply queue."""

    def __init__(self, path: str, *, busy_timeout_s: float = 5.0, name: str = "interlock-sqlite"):
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self._background = ThreadPoolExecutor(1, name, initializer=lower_thread_priority)
        self._catch_up = ThreadPoolExecutor(1, f"{name}-catch-up")
        self._used: set[ThreadPoolExecutor] = set()
        # Held from a batch's submission until its thread is done with it.
        self._turn = asyncio.Lock()
        # For tests and diagnostics: called with each new connection, on its thread.
        self.on_connect: Callable[[sqlite3.Connection], None] | None = None

    async def run(
        self, write: Callable[[sqlite3.Connection], None], *, catch_up: bool = False
    ) -> None:
        """``write`` called with the thread's connection, on the thread,
        after every batch submitted before it is done."""
        executor = self._catch_up if catch_up else self._background
        self._used.add(executor)
        loop = asyncio.get_running_loop()
        await self._turn.acquire()
        try:
            done = executor.submit(self._run, write)
        except BaseException:
            self._turn.release()
            raise
        # The turn ends when the thread is done, not when the caller stops
        # waiting: a cancelled caller leaves the batch running to its end.
        done.add_done_callback(lambda _: _call_soon(loop, self._turn.release))
        await asyncio.wrap_future(done)

    def dispose(self) -> None:
        """Close the connections on their threads, after any write in flight;
        does not wait (a write stuck on a lock ends within the busy timeout)."""
        for executor in (self._background, self._catch_up):
            if executor in self._used:
                executor.submit(self._close)
            executor.shutdown(wait=False)

    def _run(self, write: Callable[[sqlite3.Connection], None]) -> None:
        write(self._connection())

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # isolation_level=None: the driver opens no transactions of its own.
            connection = sqlite3.connect(
                self._path, timeout=self._busy_timeout_s, isolation_level=None
            )
            enable_wal(connection)
            if self.on_connect is not None:
                self.on_connect(connection)
            self._local.connection = connection
        return connection

    def _close(self) -> None:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            self._local.connection = None
            connection.close()


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """``callback`` on ``loop``'s thread; nothing once the loop is closed."""
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:
        pass  # closed: nothing waits on it any more


class SQLiteBatchWriter:
    """``insert`` commits rows into ``table`` (``columns``, in order) on
    ``threads``. With ``unique_by`` (a column with a unique index), a row
    whose value is there already is skipped. ``own_threads``: ``close``
    ends them (threads shared with other writers are their owner's to end)."""

    def __init__(
        self,
        threads: SQLiteWriteThreads,
        table: str,
        columns: Sequence[str],
        *,
        unique_by: str | None = None,
        own_threads: bool = False,
    ):
        self.threads = threads
        self._own_threads = own_threads
        self._sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        )
        if unique_by is not None:
            self._sql += f" ON CONFLICT ({unique_by}) DO NOTHING"

    @classmethod
    def for_engine(
        cls,
        engine: AsyncEngine,
        table: str,
        columns: Sequence[str],
        *,
        unique_by: str | None = None,
        threads: SQLiteWriteThreads | None = None,
        name: str = "interlock-sqlite",
    ) -> SQLiteBatchWriter | None:
        """The writer for ``engine``'s SQLite file (None on another database):
        on the file's shared ``threads``, else on threads of its own, ``name``d."""
        if engine.dialect.name != "sqlite":
            return None
        if threads is not None:
            return cls(threads, table, columns, unique_by=unique_by)
        own = SQLiteWriteThreads(engine.url.database or "", name=name)
        return cls(own, table, columns, unique_by=unique_by, own_threads=True)

    def close(self) -> None:
        """End its threads if they are its own (``SQLiteWriteThreads.dispose``)."""
        if self._own_threads:
            self.threads.dispose()

    async def insert(
        self,
        rows: list[tuple[Any, ...]],
        *,
        catch_up: bool = False,
        then: tuple[str, tuple[Any, ...]] | None = None,
    ) -> None:
        """One transaction, on the background thread (``catch_up``: the
        normal-priority one). ``then``: one more statement (SQL and its
        parameters) for the same transaction, after the rows."""
        if rows:
            await self.threads.run(partial(self._insert, rows, then), catch_up=catch_up)

    def _insert(
        self,
        rows: list[tuple[Any, ...]],
        then: tuple[str, tuple[Any, ...]] | None,
        connection: sqlite3.Connection,
    ) -> None:
        # BEGIN IMMEDIATE takes the write lock first, so a concurrent writer
        # (the admin API creating a key) queues on the busy timeout instead
        # of failing with SQLITE_BUSY on upgrade.
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany(self._sql, rows)
            if then is not None:
                connection.execute(*then)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
