"""Batches and their items in the records store (SQLite or PostgreSQL).

Every change of a batch's status is a conditional ``UPDATE`` (from the
statuses it may come from), so of several workers racing to finalize,
expire or cancel one batch exactly one wins. An item's result is written
only while the item is pending: a chunk delivered twice (its first worker
died after writing) writes nothing the second time, and a result that
arrives after the batch expired or was cancelled is dropped.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.batch.records import ACTIVE, BatchRow, BatchStatus, ItemStatus, RequestCounts
from interlock.store.engine import write_engine
from interlock.store.paging import page_after
from interlock.store.schema import batch_items, batches

__all__ = ["BatchStore", "ItemResult", "NewItem", "PendingItem", "StoredItem"]

_PAGE = 1_000


@dataclass(frozen=True, slots=True)
class NewItem:
    custom_id: str
    line: int
    chunk: int
    body: str  # JSON text


@dataclass(frozen=True, slots=True)
class PendingItem:
    custom_id: str
    line: int
    body: str
    attempts: int


@dataclass(frozen=True, slots=True)
class ItemResult:
    custom_id: str
    status: ItemStatus
    response_status: int | None
    result: str | None  # JSON text
    request_id: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class StoredItem:
    custom_id: str
    status: ItemStatus
    response_status: int | None
    result: str | None
    request_id: str | None


class BatchStore:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.time):
        self._engine = engine
        self._writer = write_engine(engine)
        self._clock = clock

    # -- batches -------------------------------------------------------------

    async def create(self, batch: BatchRow, items: Sequence[NewItem] = ()) -> None:
        async with self._writer.begin() as conn:
            await conn.execute(sa.insert(batches).values(**batch.to_row()))
            if items:
                await conn.execute(sa.insert(batch_items), [_item_row(batch.id, i) for i in items])

    async def get(
        self, batch_id: str, key_name: str | None = None, *, counts: bool = True
    ) -> BatchRow | None:
        """The batch; with ``key_name``, only that key's. ``counts``: with its
        request counts (a GROUP BY over its items: for clients, not for the
        worker's own bookkeeping)."""
        query = sa.select(batches).where(batches.c.id == batch_id)
        if key_name is not None:
            query = query.where(batches.c.key_name == key_name)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
            if row is None:
                return None
            batch = BatchRow.from_row(row)
            if counts:
                batch.counts = await _counts(conn, batch.id, batch.total)
        return batch

    async def listing(
        self,
        key_name: str,
        *,
        limit: int,
        after: str | None = None,
        before: str | None = None,
        kind: str = "batch",
    ) -> tuple[list[BatchRow], bool]:
        """The key's batches, newest first: the page after the batch
        ``after`` (older ones), or the page just before ``before`` (newer
        ones, as Anthropic's ``before_id`` pages); and whether there are more
        that way."""
        async with self._engine.connect() as conn:
            rows, more = await page_after(
                conn,
                batches,
                batches.c.key_name == key_name,
                limit=limit,
                after=before if before is not None else after,
                newest_first=before is None,
                where=[batches.c.kind == kind],
            )
            if before is not None:
                rows = list(reversed(rows))
            found = [BatchRow.from_row(row) for row in rows]
            for batch in found:
                batch.counts = await _counts(conn, batch.id, batch.total)
        return found, more

    async def recent(self, limit: int) -> list[BatchRow]:
        """Every key's batches and jobs, newest first, with their counts (the console)."""
        query = sa.select(batches).order_by(batches.c.created_at.desc()).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
            found = [BatchRow.from_row(row) for row in rows]
            for batch in found:
                batch.counts = await _counts(conn, batch.id, batch.total)
        return found

    async def delete(self, batch_id: str, key_name: str) -> bool:
        """The key's batch and its items gone; False if it had none by that id."""
        async with self._writer.begin() as conn:
            found = await conn.execute(
                sa.delete(batches).where(batches.c.id == batch_id, batches.c.key_name == key_name)
            )
            if not found.rowcount:
                return False
            await conn.execute(sa.delete(batch_items).where(batch_items.c.batch_id == batch_id))
        return True

    async def active(self) -> list[BatchRow]:
        """Every batch not in a final state (for the sweeper)."""
        query = sa.select(batches).where(batches.c.status.in_([s.value for s in ACTIVE]))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [BatchRow.from_row(row) for row in rows]

    async def awaiting_webhook(self, touched_before: float) -> list[BatchRow]:
        query = sa.select(batches).where(
            batches.c.webhook_state == "pending",
            batches.c.status.in_([s.value for s in BatchStatus if s.finished]),
            batches.c.touched_at < touched_before,
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [BatchRow.from_row(row) for row in rows]

    async def transition(
        self, batch_id: str, came_from: Iterable[BatchStatus], to: BatchStatus, **values: Any
    ) -> bool:
        """Move the batch to ``to`` if it is in one of ``came_from``; whether it moved."""
        statuses = [s.value for s in came_from]
        async with self._writer.begin() as conn:
            result = await conn.execute(
                sa.update(batches)
                .where(batches.c.id == batch_id, batches.c.status.in_(statuses))
                .values(status=to.value, touched_at=self._clock(), **values)
            )
        return bool(result.rowcount)

    async def claim(self, batch_id: str, status: BatchStatus, touched_before: float) -> bool:
        """Take over a batch stuck in ``status`` since before ``touched_before``
        (its worker died): touched now, so no other sweeper takes it too."""
        async with self._writer.begin() as conn:
            result = await conn.execute(
                sa.update(batches)
                .where(
                    batches.c.id == batch_id,
                    batches.c.status == status.value,
                    batches.c.touched_at < touched_before,
                )
                .values(touched_at=self._clock())
            )
        return bool(result.rowcount)

    async def update(self, batch_id: str, **values: Any) -> None:
        async with self._writer.begin() as conn:
            await conn.execute(
                sa.update(batches)
                .where(batches.c.id == batch_id)
                .values(touched_at=self._clock(), **values)
            )

    async def status_of(self, batch_id: str) -> BatchStatus | None:
        async with self._engine.connect() as conn:
            value = (
                await conn.execute(sa.select(batches.c.status).where(batches.c.id == batch_id))
            ).scalar()
        return BatchStatus(value) if value is not None else None

    # -- items ---------------------------------------------------------------

    async def add_items(self, batch_id: str, items: Sequence[NewItem]) -> None:
        """Insert ``items``; ones there already (an expansion redone) are kept."""
        if not items:
            return
        insert = pg_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        statement = insert(batch_items).on_conflict_do_nothing(
            index_elements=["batch_id", "custom_id"]
        )
        async with self._writer.begin() as conn:
            await conn.execute(statement, [_item_row(batch_id, i) for i in items])

    async def delete_items(self, batch_id: str) -> None:
        """Drop a batch's items (its input failed validation half-way)."""
        async with self._writer.begin() as conn:
            await conn.execute(sa.delete(batch_items).where(batch_items.c.batch_id == batch_id))

    async def pending_in_chunk(self, batch_id: str, chunk: int) -> list[PendingItem]:
        query = (
            sa.select(
                batch_items.c.custom_id,
                batch_items.c.line,
                batch_items.c.body,
                batch_items.c.attempts,
            )
            .where(
                batch_items.c.batch_id == batch_id,
                batch_items.c.chunk == chunk,
                batch_items.c.status == ItemStatus.PENDING.value,
            )
            .order_by(batch_items.c.line)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [PendingItem(*row) for row in rows]

    async def write_results(
        self, batch_id: str, results: Sequence[ItemResult], worker: str
    ) -> None:
        """Each result, only where its item is still pending (written once)."""
        if not results:
            return
        now = self._clock()
        statement = (
            sa.update(batch_items)
            .where(
                batch_items.c.batch_id == sa.bindparam("b_batch"),
                batch_items.c.custom_id == sa.bindparam("b_custom_id"),
                batch_items.c.status == ItemStatus.PENDING.value,
            )
            .values(
                status=sa.bindparam("b_status"),
                response_status=sa.bindparam("b_response_status"),
                result=sa.bindparam("b_result"),
                request_id=sa.bindparam("b_request_id"),
                attempts=sa.bindparam("b_attempts"),
                worker=worker,
                finished_at=now,
            )
        )
        params = [
            {
                "b_batch": batch_id,
                "b_custom_id": r.custom_id,
                "b_status": r.status.value,
                "b_response_status": r.response_status,
                "b_result": r.result,
                "b_request_id": r.request_id,
                "b_attempts": r.attempts,
            }
            for r in results
        ]
        async with self._writer.begin() as conn:
            await conn.execute(statement, params)

    async def close_pending(self, batch_id: str, status: ItemStatus) -> None:
        """Every item not yet run ends ``status`` (expired, cancelled)."""
        async with self._writer.begin() as conn:
            await conn.execute(
                sa.update(batch_items)
                .where(
                    batch_items.c.batch_id == batch_id,
                    batch_items.c.status == ItemStatus.PENDING.value,
                )
                .values(status=status.value, finished_at=self._clock())
            )

    async def any_pending(self, batch_id: str) -> bool:
        """Whether an item still waits: the first index entry answers, where
        a count would visit every pending item (per chunk, quadratic)."""
        query = (
            sa.select(batch_items.c.custom_id)
            .where(
                batch_items.c.batch_id == batch_id,
                batch_items.c.status == ItemStatus.PENDING.value,
            )
            .limit(1)
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def pending_count(self, batch_id: str) -> int:
        query = sa.select(sa.func.count()).where(
            batch_items.c.batch_id == batch_id,
            batch_items.c.status == ItemStatus.PENDING.value,
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar() or 0)

    async def chunks(self, batch_id: str, pending_only: bool = False) -> list[int]:
        query = sa.select(batch_items.c.chunk).where(batch_items.c.batch_id == batch_id)
        if pending_only:
            query = query.where(batch_items.c.status == ItemStatus.PENDING.value)
        query = query.distinct()
        async with self._engine.connect() as conn:
            return sorted(int(c) for c in (await conn.execute(query)).scalars())

    async def items(self, batch_id: str) -> AsyncIterator[StoredItem]:
        """Every item in input order, a page at a time. Paged by (chunk,
        line), which is input order too (a chunk is a run of lines), on the
        chunk index: an index on the line alone would be one more entry to
        write for every item inserted and every result."""
        after = (-1, -1)
        position = sa.tuple_(batch_items.c.chunk, batch_items.c.line)
        while True:
            query = (
                sa.select(
                    batch_items.c.chunk,
                    batch_items.c.line,
                    batch_items.c.custom_id,
                    batch_items.c.status,
                    batch_items.c.response_status,
                    batch_items.c.result,
                    batch_items.c.request_id,
                )
                .where(
                    batch_items.c.batch_id == batch_id,
                    position > sa.tuple_(sa.literal(after[0]), sa.literal(after[1])),
                )
                .order_by(batch_items.c.chunk, batch_items.c.line)
                .limit(_PAGE)
            )
            async with self._engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            for chunk, line, custom_id, status, response_status, result, request_id in rows:
                yield StoredItem(custom_id, ItemStatus(status), response_status, result, request_id)
                after = (chunk, line)
            if len(rows) < _PAGE:
                return

    async def workers_of(self, batch_id: str) -> dict[str, int]:
        """Items per worker that wrote them (reports and tests)."""
        query = (
            sa.select(batch_items.c.worker, sa.func.count())
            .where(batch_items.c.batch_id == batch_id, batch_items.c.worker.is_not(None))
            .group_by(batch_items.c.worker)
        )
        async with self._engine.connect() as conn:
            return {str(w): int(n) for w, n in (await conn.execute(query)).all()}


async def _counts(conn: Any, batch_id: str, total: int) -> RequestCounts:
    query = (
        sa.select(batch_items.c.status, sa.func.count())
        .where(batch_items.c.batch_id == batch_id)
        .group_by(batch_items.c.status)
    )
    by_status = {status: int(n) for status, n in (await conn.execute(query)).all()}
    return RequestCounts(
        total=total,
        succeeded=by_status.get(ItemStatus.SUCCEEDED.value, 0),
        errored=by_status.get(ItemStatus.FAILED.value, 0),
        expired=by_status.get(ItemStatus.EXPIRED.value, 0),
        cancelled=by_status.get(ItemStatus.CANCELLED.value, 0),
    )


def _item_row(batch_id: str, item: NewItem) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "custom_id": item.custom_id,
        "line": item.line,
        "chunk": item.chunk,
        "status": ItemStatus.PENDING.value,
        "body": item.body,
        "attempts": 0,
    }
