"""Schema migrations: numbered steps, applied at start-up, recorded in the database.

Why not Alembic: the gateway is one ``pip install`` and starts with one
command. Alembic would add a separate tool, an ``env.py`` and a migrations
directory that must ship beside the package and be run before the server.
The records store has a handful of tables; a list of ``(version, step)``
pairs in this one module ships inside the package and runs in the app's
start-up, so an upgraded gateway brings its own schema along.

Rules for a step:

* It runs on an ``AsyncConnection`` inside the transaction that records its
  version, so a failing step leaves no trace (SQLite's DDL is transactional
  too, see ``engine``).
* Once released it never changes. ``v1`` builds its tables from ``schema``;
  before the first step that alters a table, freeze ``v1`` by copying the
  table definitions it creates into this module.

Two gateways starting at once against PostgreSQL serialise on a
transaction-scoped advisory lock (keyed by the schema), so the second sees
the first's versions and applies nothing. SQLite needs no lock: the first
write in ``BEGIN IMMEDIATE`` already excludes every other writer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from interlock.store.engine import write_engine
from interlock.store.schema import api_keys, metadata, schema_migrations, usage_ledger

__all__ = ["MIGRATIONS", "Migration", "migrate"]

log = logging.getLogger("interlock.store")

# An arbitrary constant: the first half of the advisory lock's key ("IL").
_LOCK_NAMESPACE = 0x494C


class Migration(NamedTuple):
    version: int
    description: str
    apply: Callable[[AsyncConnection], Awaitable[None]]


async def _v1_keys_and_ledger(conn: AsyncConnection) -> None:
    await conn.run_sync(metadata.create_all, tables=[api_keys, usage_ledger], checkfirst=False)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "api_keys and usage_ledger", _v1_keys_and_ledger),
)


async def migrate(engine: AsyncEngine, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Bring the schema up to date in one transaction; return the versions applied now."""
    async with write_engine(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:namespace, hashtext(current_schema()))"),
                {"namespace": _LOCK_NAMESPACE},
            )
        await conn.run_sync(metadata.create_all, tables=[schema_migrations], checkfirst=True)
        done = set((await conn.execute(sa.select(schema_migrations.c.version))).scalars())
        applied: list[int] = []
        for migration in sorted(migrations, key=lambda m: m.version):
            if migration.version in done:
                continue
            await migration.apply(conn)
            await conn.execute(
                schema_migrations.insert().values(
                    version=migration.version, applied_at=datetime.now(UTC)
                )
            )
            log.info("applied schema migration %d: %s", migration.version, migration.description)
            applied.append(migration.version)
    newest = max((m.version for m in migrations), default=0)
    if done and max(done) > newest:
        # A rolled-back gateway meeting a newer schema: steps are additive, so carry on.
        log.warning(
            "database schema is at version %d, newer than this gateway's %d", max(done), newest
        )
    return applied
