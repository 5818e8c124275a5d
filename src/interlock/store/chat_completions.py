"""Stored chat completions (``store: true`` on ``/v1/chat/completions``):
one row per completion, scoped to the key that created it. Every query
names the key: another key's completion is as absent as one that never
existed.

A row holds the completion object, the request's messages and the
metadata, JSON text. Its id is the one the client saw (the upstream's);
ids are unique per key, and an upstream that repeats ids keeps the latest.
Retention is the row's ``expires_at``: an expired row is never read, and
each write deletes up to ``sweep_batch`` expired rows in its transaction,
so cleanup keeps pace with writes at a bounded cost. Storing is opt-in per
request, so a write is one transaction (no batching as for stored
responses, which are stored by default).

Listing filters by ``model`` in SQL and by ``metadata`` pairs in Python,
reading at most ``MAX_SCANNED`` rows past the cursor for one page: a
filter that matches rarely answers a short page with ``has_more``, never
a scan of the whole table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.store.engine import write_engine
from interlock.store.schema import chat_completions

__all__ = ["MAX_SCANNED", "ChatCompletionStore", "StoredChatCompletion"]

JSONDict = dict[str, Any]

SWEEP_BATCH = 100
_KEY = ("key_name", "id")
# Rows one listing reads at most to fill a page when filtering by metadata.
MAX_SCANNED = 1_000


@dataclass(frozen=True, slots=True)
class StoredChatCompletion:
    id: str
    key_name: str
    created_at: int  # when it was stored, unix milliseconds: the listing's order
    expires_at: int  # unix seconds
    model: str
    metadata: dict[str, str]
    messages: list[JSONDict]
    completion: JSONDict

    def to_json(self) -> JSONDict:
        """The completion as OpenAI shows a stored one: with its metadata."""
        return {**self.completion, "metadata": self.metadata}


class ChatCompletionStore:
    def __init__(
        self,
        engine: AsyncEngine,
        clock: Callable[[], float] = time.time,
        sweep_batch: int = SWEEP_BATCH,
    ):
        self._engine = engine
        self._writer = write_engine(engine)
        self._clock = clock
        self._sweep_batch = sweep_batch

    async def save(self, record: StoredChatCompletion) -> None:
        values = {
            "key_name": record.key_name,
            "id": record.id,
            "created_at": record.created_at,
            "expires_at": record.expires_at,
            "model": record.model,
            "metadata": orjson.dumps(record.metadata).decode(),
            "messages": orjson.dumps(record.messages).decode(),
            "completion": orjson.dumps(record.completion).decode(),
        }
        async with self._writer.begin() as conn:
            insert = _insert(conn.dialect.name).values(values)
            kept = {
                name: insert.excluded[name] for name in values if name not in ("key_name", "id")
            }
            await conn.execute(
                insert.on_conflict_do_update(index_elements=["key_name", "id"], set_=kept)
            )
            await conn.execute(self._sweep_statement())

    async def get(self, key_name: str, completion_id: str) -> StoredChatCompletion | None:
        query = sa.select(chat_completions).where(*self._visible(key_name, completion_id))
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else _record(row)

    async def listing(
        self,
        key_name: str,
        *,
        limit: int,
        after: str | None = None,
        newest_first: bool = False,
        model: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> tuple[list[StoredChatCompletion], bool]:
        """A page of the key's completions in ``created_at`` order, after
        the completion ``after``; and whether there are more."""
        table = chat_completions
        owned = sa.and_(table.c.key_name == key_name, table.c.expires_at > int(self._clock()))
        where = [table.c.model == model] if model is not None else []
        found: list[StoredChatCompletion] = []
        scanned = 0
        async with self._engine.connect() as conn:
            cursor = await self._cursor(conn, owned, after)
            while True:
                batch = limit + 1 if not metadata else min(MAX_SCANNED - scanned, 100)
                rows = await _page(conn, owned, where, cursor, batch, newest_first)
                scanned += len(rows)
                for row in rows:
                    record = _record(row)
                    if _matches(record.metadata, metadata):
                        found.append(record)
                if len(found) > limit:
                    return found[:limit], True
                if len(rows) < batch:
                    return found, False
                if scanned >= MAX_SCANNED:
                    return found, True
                cursor = (rows[-1]["created_at"], rows[-1]["id"])

    async def update_metadata(
        self, key_name: str, completion_id: str, metadata: dict[str, str]
    ) -> StoredChatCompletion | None:
        async with self._writer.begin() as conn:
            result = await conn.execute(
                sa.update(chat_completions)
                .where(*self._visible(key_name, completion_id))
                .values(metadata=orjson.dumps(metadata).decode())
            )
        if not result.rowcount:
            return None
        return await self.get(key_name, completion_id)

    async def delete(self, key_name: str, completion_id: str) -> bool:
        async with self._writer.begin() as conn:
            result = await conn.execute(
                sa.delete(chat_completions).where(*self._visible(key_name, completion_id))
            )
        return bool(result.rowcount)

    async def _cursor(
        self, conn: Any, owned: sa.ColumnElement[bool], after: str | None
    ) -> tuple[int, str] | None:
        if after is None:
            return None
        table = chat_completions
        created = (
            await conn.execute(sa.select(table.c.created_at).where(owned, table.c.id == after))
        ).scalar()
        return None if created is None else (int(created), after)

    def _visible(self, key_name: str, completion_id: str) -> tuple[sa.ColumnElement[bool], ...]:
        return (
            chat_completions.c.key_name == key_name,
            chat_completions.c.id == completion_id,
            chat_completions.c.expires_at > int(self._clock()),
        )

    def _sweep_statement(self) -> sa.Delete:
        # The oldest expired first, by the expires_at index; a bounded batch.
        table = chat_completions
        expired = (
            sa.select(table.c.key_name, table.c.id)
            .where(table.c.expires_at <= int(self._clock()))
            .order_by(table.c.expires_at)
            .limit(self._sweep_batch)
        )
        pair = sa.tuple_(table.c.key_name, table.c.id)
        return sa.delete(table).where(pair.in_(expired))


async def _page(
    conn: Any,
    owned: sa.ColumnElement[bool],
    where: Sequence[sa.ColumnElement[bool]],
    cursor: tuple[int, str] | None,
    limit: int,
    newest_first: bool,
) -> Sequence[Any]:
    table = chat_completions
    created, row_id = table.c.created_at, table.c.id
    query = sa.select(table).where(owned, *where)
    if cursor is not None:
        position = sa.tuple_(created, row_id)
        bound = sa.tuple_(sa.literal(cursor[0]), sa.literal(cursor[1]))
        query = query.where(position < bound if newest_first else position > bound)
    order = (created.desc(), row_id.desc()) if newest_first else (created.asc(), row_id.asc())
    rows: Sequence[Any] = (await conn.execute(query.order_by(*order).limit(limit))).mappings().all()
    return rows


def _insert(dialect: str) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(chat_completions)
    return sqlite.insert(chat_completions)


def _matches(held: Mapping[str, str], wanted: Mapping[str, str] | None) -> bool:
    return not wanted or all(held.get(key) == value for key, value in wanted.items())


def _record(row: Any) -> StoredChatCompletion:
    """A row (a ``RowMapping``) as the record it stores."""
    return StoredChatCompletion(
        id=row["id"],
        key_name=row["key_name"],
        created_at=int(row["created_at"]),
        expires_at=int(row["expires_at"]),
        model=row["model"],
        metadata=orjson.loads(row["metadata"]),
        messages=orjson.loads(row["messages"]),
        completion=orjson.loads(row["completion"]),
    )
