"""Stored responses of the Responses API (``store: true``, the default): one
row per response, scoped to the key that created it. Every query names the
key: another key's response is as absent as one that never existed.

A row holds the whole conversation's input items (a continued response's
history included, so ``previous_response_id`` is one lookup, however long
the chain) and the Response object, both JSON text. Retention is the row's
``expires_at``: an expired row is never read, and each write deletes up to
``sweep_batch`` expired rows in its transaction, so cleanup keeps pace with
writes at a bounded cost and needs no background task.

Writes are batched: ``save`` puts the record in a bounded in-memory table,
visible at once to this process's reads, and a flush ``flush_interval_s``
later writes every waiting record in one transaction. One transaction per
response cost ~2 ms of CPU (``bench/dialects_cost.py``), ten times the rest
of the request; batched, it is a few percent. The price: another instance
sees a response up to ``flush_interval_s`` after it was answered, and a
process killed in that window loses the stored copy (the client has its
answer). When ``max_pending`` records wait, ``save`` writes them before it
returns, so memory stays bounded. A waiting record is kept as its row (the
JSON text it is written as), not as the objects it came in: a response's
few dozen dicts and lists would otherwise outlive their request by the
flush interval, and a few thousand of them waiting kept the garbage
collector busy walking them (about 7 µs per stored response in process,
timed with a ``gc`` callback).

On SQLite a batch goes through a ``SQLiteBatchWriter`` (tuples bound in C
by ``sqlite3`` on the low-priority thread the ledger's batches use too,
``SQLiteWriteThreads``), not SQLAlchemy,
whose per-row work in Python was most of a stored response's cost; on
PostgreSQL through SQLAlchemy, whose ``asyncpg`` work leaves the process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.store.engine import write_engine
from interlock.store.schema import responses
from interlock.store.sqlite_writer import SQLiteBatchWriter, SQLiteWriteThreads

__all__ = ["ResponseStore", "StoredResponse"]

JSONDict = dict[str, Any]

log = logging.getLogger("interlock.responses")

# Expired rows one write deletes at most: more than one, so a backlog shrinks.
SWEEP_BATCH = 100
FLUSH_INTERVAL_S = 0.05
MAX_PENDING = 10_000

_COLUMNS = ("id", "key_name", "created_at", "expires_at", "input_items", "response")
# The oldest expired first, by the expires_at index; a bounded batch.
_SQLITE_SWEEP = (
    "DELETE FROM responses WHERE id IN (SELECT id FROM responses WHERE expires_at <= ? "
    "ORDER BY expires_at LIMIT ?)"
)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    key_name: str
    created_at: int  # unix seconds
    expires_at: int
    input_items: list[JSONDict]
    response: JSONDict
    # ``response`` serialised, where the caller wrote it out already: kept
    # as it is instead of serialising the response again.
    response_json: bytes | None = field(default=None, compare=False, repr=False)


class ResponseStore:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Callable[[], float] = time.time,
        sweep_batch: int = SWEEP_BATCH,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        max_pending: int = MAX_PENDING,
        sqlite_threads: SQLiteWriteThreads | None = None,
    ):
        """``sqlite_threads``: the file's writer threads, shared with its
        other writers and closed by their owner (none: the store's own)."""
        self._engine = engine
        self._writer = write_engine(engine)
        self._sqlite = SQLiteBatchWriter.for_engine(
            engine,
            responses.name,
            _COLUMNS,
            unique_by="id",
            threads=sqlite_threads,
            name="interlock-responses",
        )
        self._clock = clock
        self._sweep_batch = sweep_batch
        self._flush_interval_s = flush_interval_s
        self._max_pending = max_pending
        # id -> row, until written; reads see them at once.
        self._pending: dict[str, _Row] = {}
        self._flushing = asyncio.Lock()
        self._scheduled: asyncio.Task[None] | None = None
        self._closed = False

    async def save(self, record: StoredResponse) -> None:
        """Store ``record`` (ids are fresh): readable here at once, written
        with the next flush (at once when ``max_pending`` wait)."""
        self._pending[record.id] = _Row(record)
        if len(self._pending) >= self._max_pending:
            await self.flush()
        elif self._scheduled is None or self._scheduled.done():
            self._scheduled = asyncio.get_running_loop().create_task(self._flush_later())

    async def flush(self) -> None:
        """Write every waiting record in one transaction, and sweep a few
        expired rows. Records stay readable from memory until written; a
        failed write leaves them waiting for the next flush."""
        async with self._flushing:
            batch = list(self._pending.values())
            if not batch:
                return
            await self._write(batch)
            for row in batch:
                if self._pending.get(row.id) is row:
                    del self._pending[row.id]

    async def _write(self, batch: list[_Row]) -> None:
        """One transaction: the batch, and a bounded sweep of expired rows.
        A batch committed just before its flush was interrupted is written
        again by the next: a row already there is left be."""
        if self._sqlite is not None:
            sweep = (_SQLITE_SWEEP, (int(self._clock()), self._sweep_batch))
            await self._sqlite.insert([row.values for row in batch], then=sweep)
            return
        async with self._writer.begin() as conn:
            await conn.execute(
                self._insert(conn.dialect.name),
                [dict(zip(_COLUMNS, row.values, strict=True)) for row in batch],
            )
            await conn.execute(self._sweep_statement())

    async def aclose(self) -> None:
        """Write what waits (called before the pool closes); once."""
        if self._closed:
            return
        self._closed = True
        if self._scheduled is not None:
            self._scheduled.cancel()  # a write under way is shielded; flush waits for it
        try:
            await self.flush()
        finally:
            if self._sqlite is not None:
                self._sqlite.close()

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._flush_interval_s)
        try:
            # Shielded: cancelling the schedule must not cut a write in half.
            await asyncio.shield(self.flush())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the records wait for the next flush
            log.error("could not store %d responses", len(self._pending), exc_info=exc)

    @staticmethod
    def _insert(dialect: str) -> sa.Insert:
        if dialect == "postgresql":
            return postgresql.insert(responses).on_conflict_do_nothing(index_elements=["id"])
        return sqlite.insert(responses).on_conflict_do_nothing(index_elements=["id"])

    def _waiting(self, key_name: str, response_id: str) -> _Row | None:
        row = self._pending.get(response_id)
        if row is None or row.key_name != key_name:
            return None
        return row if row.expires_at > int(self._clock()) else None

    async def get(self, key_name: str, response_id: str) -> StoredResponse | None:
        waiting = self._waiting(key_name, response_id)
        if waiting is not None:
            return _record(dict(zip(_COLUMNS, waiting.values, strict=True)))
        query = sa.select(responses).where(*self._visible(key_name, response_id))
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else _record(row)

    async def replace(self, key_name: str, response: JSONDict) -> bool:
        """The key's stored Response, with the same id, replaced by
        ``response`` (a background response once it has finished); False if
        the key has no unexpired response by that id."""
        response_id = response["id"]
        text = orjson.dumps(response).decode()
        async with self._flushing:  # after a flush under way, as ``delete``
            waiting = self._waiting(key_name, response_id)
            if waiting is not None:
                waiting.values = (*waiting.values[:5], text)
                return True
            async with self._writer.begin() as conn:
                result = await conn.execute(
                    sa.update(responses)
                    .where(*self._visible(key_name, response_id))
                    .values(response=text)
                )
            return bool(result.rowcount)

    async def delete(self, key_name: str, response_id: str) -> bool:
        """Whether the key's unexpired response was there (and is gone now)."""
        # After any flush under way: one writing this response now would
        # otherwise put it back after it was deleted from memory.
        async with self._flushing:
            if self._waiting(key_name, response_id) is not None:
                del self._pending[response_id]
                return True
            async with self._writer.begin() as conn:
                result = await conn.execute(
                    sa.delete(responses).where(*self._visible(key_name, response_id))
                )
            return bool(result.rowcount)

    async def sweep(self) -> int:
        """Delete up to ``sweep_batch`` expired rows; how many went."""
        async with self._writer.begin() as conn:
            result = await conn.execute(self._sweep_statement())
        return int(result.rowcount)

    def _visible(self, key_name: str, response_id: str) -> tuple[sa.ColumnElement[bool], ...]:
        return (
            responses.c.id == response_id,
            responses.c.key_name == key_name,
            responses.c.expires_at > int(self._clock()),
        )

    def _sweep_statement(self) -> sa.Delete:
        # The oldest expired first, by the expires_at index; a bounded batch.
        expired = (
            sa.select(responses.c.id)
            .where(responses.c.expires_at <= int(self._clock()))
            .order_by(responses.c.expires_at)
            .limit(self._sweep_batch)
        )
        return sa.delete(responses).where(responses.c.id.in_(expired.scalar_subquery()))


class _Row:
    """A record waiting to be written, as its row: ``values`` in ``_COLUMNS`` order."""

    __slots__ = ("expires_at", "id", "key_name", "values")

    def __init__(self, record: StoredResponse):
        self.id = record.id
        self.key_name = record.key_name
        self.expires_at = record.expires_at
        self.values = (
            record.id,
            record.key_name,
            record.created_at,
            record.expires_at,
            orjson.dumps(record.input_items).decode(),
            (record.response_json or orjson.dumps(record.response)).decode(),
        )


def _record(row: Mapping[str, Any] | sa.RowMapping) -> StoredResponse:
    """A stored row read back."""
    return StoredResponse(
        id=row["id"],
        key_name=row["key_name"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        input_items=orjson.loads(row["input_items"]),
        response=orjson.loads(row["response"]),
    )
