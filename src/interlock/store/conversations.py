"""Conversations of the Responses API: their metadata and their items in
order, scoped to the key that created them. Every query names the key:
another key's conversation is as absent as one that never existed.

Items are stored as the JSON text they are shown as, each with its id,
unique in the conversation: an item that comes with an id the conversation
already holds (a client sending back an output item it was given), or one
too long for the column, is stored under a fresh id.
Appending reserves a run of positions with one ``UPDATE ... RETURNING`` on
the conversation's counter, in the same transaction as the items, so two
responses finishing at once on one conversation both land, in the order
their transactions commit. A conversation is kept until it is deleted (as
OpenAI keeps them); deleting it deletes its items.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from interlock.store.engine import write_engine
from interlock.store.schema import conversation_items, conversations

__all__ = ["ConversationFull", "ConversationStore", "StoredConversation"]

JSONDict = dict[str, Any]
# An id for an item whose own cannot be kept (missing, too long, taken).
FreshId = Callable[[JSONDict], str]


class ConversationFull(Exception):
    """An append would take a conversation past the items it may hold."""

    def __init__(self, held: int, limit: int):
        super().__init__(f"the conversation holds {held:,} items of {limit:,}")
        self.held = held
        self.limit = limit


@dataclass(frozen=True, slots=True)
class StoredConversation:
    id: str
    key_name: str
    created_at: int  # unix seconds
    metadata: dict[str, str]
    items: int  # how many it holds

    def to_json(self) -> JSONDict:
        """OpenAI's conversation object."""
        return {
            "id": self.id,
            "object": "conversation",
            "created_at": self.created_at,
            "metadata": self.metadata,
        }


# An item id longer than the column holds gets a fresh one.
MAX_ITEM_ID = 64


class ConversationStore:
    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time):
        self._engine = engine
        self._writer = write_engine(engine)
        self._clock = clock

    async def create(
        self,
        conversation_id: str,
        key_name: str,
        metadata: dict[str, str],
        items: list[JSONDict],
        fresh_id: FreshId,
    ) -> tuple[StoredConversation, list[JSONDict]]:
        """A new conversation holding ``items``, and the items as stored."""
        created = int(self._clock())
        items = _unique(items, set(), fresh_id)
        async with self._writer.begin() as conn:
            await conn.execute(
                sa.insert(conversations).values(
                    id=conversation_id,
                    key_name=key_name,
                    created_at=created,
                    metadata=orjson.dumps(metadata).decode(),
                    next_position=len(items),
                )
            )
            await _insert_items(conn, conversation_id, 0, items)
        return StoredConversation(conversation_id, key_name, created, metadata, len(items)), items

    async def get(self, key_name: str, conversation_id: str) -> StoredConversation | None:
        query = sa.select(conversations).where(*_owned(key_name, conversation_id))
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
            if row is None:
                return None
            count = await conn.scalar(_count(conversation_id))
        return _conversation(row, int(count or 0))

    async def update_metadata(
        self, key_name: str, conversation_id: str, metadata: dict[str, str]
    ) -> StoredConversation | None:
        async with self._writer.begin() as conn:
            found = await conn.execute(
                sa.update(conversations)
                .where(*_owned(key_name, conversation_id))
                .values(metadata=orjson.dumps(metadata).decode())
            )
        if not found.rowcount:
            return None
        return await self.get(key_name, conversation_id)

    async def delete(self, key_name: str, conversation_id: str) -> bool:
        """The conversation and its items gone; False if the key had none by that id."""
        async with self._writer.begin() as conn:
            found = await conn.execute(
                sa.delete(conversations).where(*_owned(key_name, conversation_id))
            )
            if not found.rowcount:
                return False
            await conn.execute(
                sa.delete(conversation_items).where(
                    conversation_items.c.conversation_id == conversation_id
                )
            )
        return True

    async def append(
        self,
        key_name: str,
        conversation_id: str,
        items: Sequence[JSONDict],
        fresh_id: FreshId,
        max_items: int | None = None,
    ) -> list[JSONDict] | None:
        """``items`` added at the end, in one transaction, as stored; None if
        the key has no such conversation (deleted meanwhile, say).
        ``ConversationFull`` if it would then hold more than ``max_items``."""
        if not items:
            return [] if await self.get(key_name, conversation_id) is not None else None
        async with self._writer.begin() as conn:
            reserved = await conn.execute(
                sa.update(conversations)
                .where(*_owned(key_name, conversation_id))
                .values(next_position=conversations.c.next_position + len(items))
                .returning(conversations.c.next_position)
            )
            end = reserved.scalar()
            if end is None:
                return None
            # Under the row lock the UPDATE took: no other append adds items meanwhile.
            if max_items is not None:
                held = int(await conn.scalar(_count(conversation_id)) or 0)
                if held + len(items) > max_items:
                    raise ConversationFull(held, max_items)
            asked = [i["id"] for i in items if isinstance(i.get("id"), str)]
            taken = await conn.execute(
                sa.select(conversation_items.c.item_id).where(
                    conversation_items.c.conversation_id == conversation_id,
                    conversation_items.c.item_id.in_(asked),
                )
            )
            stored = _unique(items, set(taken.scalars()), fresh_id)
            await _insert_items(conn, conversation_id, int(end) - len(items), stored)
        return stored

    async def all_items(self, key_name: str, conversation_id: str) -> list[JSONDict] | None:
        """Every item in order (a response's context), or None without the conversation."""
        query = (
            sa.select(conversation_items.c.item)
            .where(conversation_items.c.conversation_id == conversation_id)
            .order_by(conversation_items.c.position)
        )
        async with self._engine.connect() as conn:
            if await self._missing(conn, key_name, conversation_id):
                return None
            rows = (await conn.execute(query)).scalars().all()
        return [orjson.loads(text) for text in rows]

    async def page(
        self,
        key_name: str,
        conversation_id: str,
        *,
        limit: int,
        after: str | None,
        newest_first: bool,
    ) -> tuple[list[JSONDict], bool] | None:
        """Up to ``limit`` items after the item ``after`` in the order asked,
        and whether there are more; None without the conversation."""
        items = conversation_items.c
        query = sa.select(items.item).where(items.conversation_id == conversation_id)
        async with self._engine.connect() as conn:
            if await self._missing(conn, key_name, conversation_id):
                return None
            if after is not None:
                cursor = await conn.scalar(
                    sa.select(items.position).where(
                        items.conversation_id == conversation_id, items.item_id == after
                    )
                )
                if cursor is not None:
                    query = query.where(
                        items.position < cursor if newest_first else items.position > cursor
                    )
            order = items.position.desc() if newest_first else items.position.asc()
            rows = (await conn.execute(query.order_by(order).limit(limit + 1))).scalars().all()
        return [orjson.loads(text) for text in rows[:limit]], len(rows) > limit

    async def item(self, key_name: str, conversation_id: str, item_id: str) -> JSONDict | None:
        query = (
            sa.select(conversation_items.c.item)
            .join(conversations, conversations.c.id == conversation_items.c.conversation_id)
            .where(*_owned(key_name, conversation_id), conversation_items.c.item_id == item_id)
        )
        async with self._engine.connect() as conn:
            text = await conn.scalar(query)
        return None if text is None else orjson.loads(text)

    async def delete_item(self, key_name: str, conversation_id: str, item_id: str) -> bool:
        async with self._writer.begin() as conn:
            if await self._missing(conn, key_name, conversation_id):
                return False
            found = await conn.execute(
                sa.delete(conversation_items).where(
                    conversation_items.c.conversation_id == conversation_id,
                    conversation_items.c.item_id == item_id,
                )
            )
        return bool(found.rowcount)

    @staticmethod
    async def _missing(conn: AsyncConnection, key_name: str, conversation_id: str) -> bool:
        found = await conn.scalar(
            sa.select(conversations.c.id).where(*_owned(key_name, conversation_id))
        )
        return found is None


def _unique(items: Sequence[JSONDict], taken: set[str], fresh_id: FreshId) -> list[JSONDict]:
    """``items``, each under an id not in ``taken`` nor used before it."""
    unique = []
    for item in items:
        item_id = item.get("id")
        if not isinstance(item_id, str) or len(item_id) > MAX_ITEM_ID or item_id in taken:
            item = {**item, "id": fresh_id(item)}
        taken.add(item["id"])
        unique.append(item)
    return unique


def _count(conversation_id: str) -> sa.Select[int]:
    return sa.select(sa.func.count()).where(conversation_items.c.conversation_id == conversation_id)


def _owned(key_name: str, conversation_id: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (conversations.c.id == conversation_id, conversations.c.key_name == key_name)


async def _insert_items(
    conn: AsyncConnection, conversation_id: str, start: int, items: Sequence[JSONDict]
) -> None:
    if not items:
        return
    await conn.execute(
        sa.insert(conversation_items),
        [
            {
                "conversation_id": conversation_id,
                "position": start + offset,
                "item_id": item["id"],
                "item": orjson.dumps(item).decode(),
            }
            for offset, item in enumerate(items)
        ],
    )


def _conversation(row: sa.RowMapping, count: int) -> StoredConversation:
    return StoredConversation(
        id=row["id"],
        key_name=row["key_name"],
        created_at=row["created_at"],
        metadata=orjson.loads(row["metadata"]),
        items=count,
    )
