"""The audit log: every change made through the admin API, in one table.

An entry says who (``actor``), what (``area``: registry, keys or chaos;
``action``), to which ``target`` (``name@version``, ``key:<id>``, ``chaos``)
and how (``detail``: a JSON object, typically the record before and after).
A store that makes a change writes its entry with ``write_audit`` on the
connection of the change's own transaction, so a change is never made
without its entry; a change with no transaction of its own (the chaos
settings live in memory) writes one through ``AuditLog.record``.

The id orders the entries. The registry's instances compare the newest id
of its area (``revision``) to notice each other's changes, so a key change
never makes them reload the registry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from interlock.store.engine import write_engine
from interlock.store.schema import audit_log

__all__ = ["AREAS", "Area", "AuditEntry", "AuditLog", "read_audit", "revision", "write_audit"]

Area = Literal["registry", "keys", "chaos"]
AREAS: tuple[Area, ...] = get_args(Area)
# One entry as the admin API shows it: id, ts, actor, area, action, target, detail.
AuditEntry = dict[str, Any]


async def write_audit(
    conn: AsyncConnection,
    *,
    ts: float,
    actor: str,
    area: Area,
    action: str,
    target: str,
    detail: Mapping[str, Any],
) -> None:
    """Add one entry inside the caller's transaction (``ts``: unix seconds).

    ``detail`` must hold nothing secret: the audit log is shown to every
    holder of the admin key."""
    await conn.execute(
        sa.insert(audit_log).values(
            ts=ts,
            actor=actor,
            area=area,
            action=action,
            target=target,
            detail=orjson.dumps(detail).decode(),
        )
    )


async def read_audit(
    conn: AsyncConnection,
    *,
    area: Area | None = None,
    target: str | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """The newest entries first, of one ``area`` and ``target`` when given.

    A ``target`` also matches the targets under it: a model (``name``)
    matches its versions (``name@version``)."""
    query = sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
    if area is not None:
        query = query.where(audit_log.c.area == area)
    if target is not None:
        query = query.where(
            sa.or_(
                audit_log.c.target == target,
                audit_log.c.target.startswith(f"{target}@", autoescape=True),
            )
        )
    rows = (await conn.execute(query)).mappings().all()
    return [
        {
            "id": row["id"],
            "ts": row["ts"],
            "actor": row["actor"],
            "area": row["area"],
            "action": row["action"],
            "target": row["target"],
            "detail": orjson.loads(row["detail"]),
        }
        for row in rows
    ]


async def revision(conn: AsyncConnection, area: Area) -> int:
    """The id of ``area``'s newest entry (0: none yet)."""
    query = sa.select(sa.func.max(audit_log.c.id)).where(audit_log.c.area == area)
    return int((await conn.execute(query)).scalar() or 0)


class AuditLog:
    """The audit log over the records store's engine."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], float] = time.time):
        self._engine = engine
        self._writer = write_engine(engine)
        self._clock = clock

    async def record(
        self, *, actor: str, area: Area, action: str, target: str, detail: Mapping[str, Any]
    ) -> None:
        """Add one entry in a transaction of its own, stamped with the clock's time."""
        async with self._writer.begin() as conn:
            await write_audit(
                conn,
                ts=self._clock(),
                actor=actor,
                area=area,
                action=action,
                target=target,
                detail=detail,
            )

    async def entries(
        self, *, area: Area | None = None, target: str | None = None, limit: int = 100
    ) -> list[AuditEntry]:
        """``read_audit`` in a connection of its own."""
        async with self._engine.connect() as conn:
            return await read_audit(conn, area=area, target=target, limit=limit)
