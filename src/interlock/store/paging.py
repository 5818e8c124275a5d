"""Keyset pagination over a table ordered by (created_at, id), as the
OpenAI list endpoints page (``after`` an object's id): stable when rows are
added meanwhile, and one index range scan per page, never an OFFSET."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["page_after"]


async def page_after(
    conn: AsyncConnection,
    table: sa.Table,
    owned: sa.ColumnElement[bool],
    *,
    limit: int,
    after: str | None,
    newest_first: bool = True,
    where: Sequence[sa.ColumnElement[bool]] = (),
) -> tuple[Sequence[Any], bool]:
    """At most ``limit`` rows matching ``owned`` and ``where``, after the row
    ``after`` (one of ``owned``; unknown: from the start) in the order asked;
    and whether there are more."""
    created, row_id = table.c.created_at, table.c.id
    query = sa.select(table).where(owned, *where)
    if after is not None:
        cursor = (await conn.execute(sa.select(created).where(row_id == after, owned))).scalar()
        if cursor is not None:
            position = sa.tuple_(created, row_id)
            bound = sa.tuple_(sa.literal(cursor), sa.literal(after))
            query = query.where(position < bound if newest_first else position > bound)
    order = (created.desc(), row_id.desc()) if newest_first else (created.asc(), row_id.asc())
    rows = (await conn.execute(query.order_by(*order).limit(limit + 1))).mappings().all()
    return rows[:limit], len(rows) > limit
