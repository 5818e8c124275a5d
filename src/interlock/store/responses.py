"""Stored responses of the Responses API (``store: true``, the default): one
row per response, scoped to the key that created it. Every query names the
key: another key's response is as absent as one that never existed.

A row holds the whole conversation's input items (a continued response's
history included, so ``previous_response_id`` is one lookup, however long
the chain) and the Response object, both JSON text. Retention is the row's
``expires_at``: an expired row is never read, and ``save`` deletes up to
``sweep_batch`` expired rows in its transaction, so cleanup keeps pace with
writes at a bounded cost per write and needs no background task.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.store.engine import write_engine
from interlock.store.schema import responses

__all__ = ["ResponseStore", "StoredResponse"]

JSONDict = dict[str, Any]

# Expired rows one save deletes at most: more than one, so a backlog shrinks.
SWEEP_BATCH = 100


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    key_name: str
    created_at: int  # unix seconds
    expires_at: int
    input_items: list[JSONDict]
    response: JSONDict


class ResponseStore:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        clock: Callable[[], float] = time.time,
        sweep_batch: int = SWEEP_BATCH,
    ):
        self._engine = engine
        self._writer = write_engine(engine)
        self._clock = clock
        self._sweep_batch = sweep_batch

    async def save(self, record: StoredResponse) -> None:
        """Store ``record`` (replacing none: ids are fresh) and sweep a few expired rows."""
        async with self._writer.begin() as conn:
            await conn.execute(
                sa.insert(responses).values(
                    id=record.id,
                    key_name=record.key_name,
                    created_at=record.created_at,
                    expires_at=record.expires_at,
                    input_items=orjson.dumps(record.input_items).decode(),
                    response=orjson.dumps(record.response).decode(),
                )
            )
            await conn.execute(self._sweep_statement())

    async def get(self, key_name: str, response_id: str) -> StoredResponse | None:
        query = sa.select(responses).where(*self._visible(key_name, response_id))
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        if row is None:
            return None
        return StoredResponse(
            id=row["id"],
            key_name=row["key_name"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            input_items=orjson.loads(row["input_items"]),
            response=orjson.loads(row["response"]),
        )

    async def delete(self, key_name: str, response_id: str) -> bool:
        """Whether the key's unexpired response was there (and is gone now)."""
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
