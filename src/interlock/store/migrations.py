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
* Once released it never changes. ``v1`` builds its tables from frozen
  copies of their first definitions (below), not from ``schema``, so that
  ``schema`` can show today's tables while later steps alter them.

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
from interlock.store.schema import UTCDateTime, metadata, schema_migrations

__all__ = ["MIGRATIONS", "Migration", "migrate"]

log = logging.getLogger("interlock.store")

# An arbitrary constant: the first half of the advisory lock's key ("IL").
_LOCK_NAMESPACE = 0x494C


class Migration(NamedTuple):
    version: int
    description: str
    apply: Callable[[AsyncConnection], Awaitable[None]]


# The tables as version 1 created them: frozen, never edited.
_v1 = sa.MetaData()
_v1_api_keys = sa.Table(
    "api_keys",
    _v1,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("key_prefix", sa.String(16), nullable=False),
    sa.Column("tier", sa.String(64), nullable=False),
    sa.Column("allowed_models", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("limits", sa.JSON, nullable=False),
    sa.Column("budget_usd_day", sa.Float, nullable=True),
    sa.Column("budget_usd_month", sa.Float, nullable=True),
    sa.Column("permissions", sa.JSON, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=True),
    sa.Column("revoked_at", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("rotated_from", sa.String(64), nullable=True),
    sa.Index("ix_api_keys_key_hash", "key_hash", unique=True),
    sa.Index("ix_api_keys_updated_at", "updated_at"),
)
_v1_usage_ledger = sa.Table(
    "usage_ledger",
    _v1,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("ts", UTCDateTime, nullable=False),
    sa.Column("request_id", sa.String(), nullable=False),
    sa.Column("key_id", sa.String(64), nullable=True),
    sa.Column("key_name", sa.String(), nullable=False),
    sa.Column("model", sa.String(), nullable=False),
    sa.Column("deployment", sa.String(), nullable=True),
    sa.Column("prompt_tokens", sa.Integer, nullable=False),
    sa.Column("completion_tokens", sa.Integer, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("cache_hit", sa.Boolean, nullable=False),
    sa.Column("stream", sa.Boolean, nullable=False),
    sa.Index("ix_usage_ledger_ts", "ts"),
    sa.Index("ix_usage_ledger_key_id", "key_id"),
    sa.Index("ix_usage_ledger_key_name_ts", "key_name", "ts"),
)


async def _v1_keys_and_ledger(conn: AsyncConnection) -> None:
    await conn.run_sync(_v1.create_all, checkfirst=False)


async def _v2_ledger_key_name_id(conn: AsyncConnection) -> None:
    # Plain DDL, the same on SQLite and PostgreSQL, frozen like v1.
    await conn.execute(
        sa.text("CREATE INDEX ix_usage_ledger_key_name_id ON usage_ledger (key_name, id)")
    )


async def _v3_api_keys_guardrails(conn: AsyncConnection) -> None:
    # JSON on PostgreSQL; SQLite keeps JSON as text under any declared type.
    await conn.execute(sa.text("ALTER TABLE api_keys ADD COLUMN guardrails JSON"))


async def _v4_record_id(conn: AsyncConnection) -> None:
    # Nullable: rows written before have none (a unique index allows many NULLs).
    await conn.execute(sa.text("ALTER TABLE usage_ledger ADD COLUMN record_id VARCHAR"))
    await conn.execute(
        sa.text("CREATE UNIQUE INDEX ix_usage_ledger_record_id ON usage_ledger (record_id)")
    )


async def _v5_files(conn: AsyncConnection) -> None:
    # Frozen DDL, the same on SQLite and PostgreSQL.
    await conn.execute(
        sa.text(
            "CREATE TABLE files (id VARCHAR(64) PRIMARY KEY, key_name VARCHAR NOT NULL, "
            "filename VARCHAR NOT NULL, purpose VARCHAR(32) NOT NULL, bytes BIGINT NOT NULL, "
            "lines INTEGER NOT NULL, created_at BIGINT NOT NULL)"
        )
    )
    await conn.execute(
        sa.text("CREATE INDEX ix_files_key_name_created ON files (key_name, created_at, id)")
    )


async def _v6_batches(conn: AsyncConnection) -> None:
    # Frozen DDL; only the queue's auto-increment id differs between backends.
    serial = (
        "INTEGER PRIMARY KEY AUTOINCREMENT"
        if conn.dialect.name == "sqlite"
        else "BIGSERIAL PRIMARY KEY"
    )
    statements = (
        "CREATE TABLE batches (id VARCHAR(64) PRIMARY KEY, key_name VARCHAR NOT NULL, "
        "kind VARCHAR(16) NOT NULL, endpoint VARCHAR NOT NULL, input_file_id VARCHAR(64), "
        "completion_window VARCHAR(16) NOT NULL, status VARCHAR(16) NOT NULL, metadata TEXT, "
        "webhook_url VARCHAR, webhook_state VARCHAR(16), errors TEXT, "
        "output_file_id VARCHAR(64), error_file_id VARCHAR(64), total INTEGER NOT NULL, "
        "created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, in_progress_at BIGINT, "
        "finalizing_at BIGINT, completed_at BIGINT, failed_at BIGINT, expired_at BIGINT, "
        "cancelling_at BIGINT, cancelled_at BIGINT, touched_at FLOAT NOT NULL)",
        "CREATE INDEX ix_batches_key_name_created ON batches (key_name, created_at, id)",
        "CREATE INDEX ix_batches_status ON batches (status)",
        "CREATE TABLE batch_items (batch_id VARCHAR(64) NOT NULL, custom_id VARCHAR NOT NULL, "
        "line INTEGER NOT NULL, chunk INTEGER NOT NULL, status VARCHAR(16) NOT NULL, "
        "body TEXT NOT NULL, response_status INTEGER, result TEXT, request_id VARCHAR, "
        "attempts INTEGER NOT NULL, worker VARCHAR, finished_at FLOAT, "
        "PRIMARY KEY (batch_id, custom_id))",
        "CREATE INDEX ix_batch_items_chunk ON batch_items (batch_id, chunk)",
        "CREATE INDEX ix_batch_items_status ON batch_items (batch_id, status)",
        f"CREATE TABLE queue_messages (id {serial}, queue VARCHAR(64) NOT NULL, "
        "payload BYTEA NOT NULL, lease_owner VARCHAR, lease_until FLOAT NOT NULL, "
        "attempts INTEGER NOT NULL, created_at FLOAT NOT NULL)",
        "CREATE INDEX ix_queue_messages_lease ON queue_messages (queue, lease_until, id)",
    )
    for statement in statements:
        await conn.execute(sa.text(statement))


async def _v7_registry(conn: AsyncConnection) -> None:
    # Frozen DDL; only the audit log's auto-increment id differs between backends.
    serial = (
        "INTEGER PRIMARY KEY AUTOINCREMENT"
        if conn.dialect.name == "sqlite"
        else "BIGSERIAL PRIMARY KEY"
    )
    statements = (
        "CREATE TABLE model_versions (name VARCHAR(128) NOT NULL, version VARCHAR(64) NOT NULL, "
        "kind VARCHAR(16) NOT NULL, provider VARCHAR(32) NOT NULL, endpoint VARCHAR, "
        "upstream_model VARCHAR, params TEXT NOT NULL, timeouts TEXT NOT NULL, "
        "inputs TEXT NOT NULL, outputs TEXT NOT NULL, tags TEXT NOT NULL, "
        "description TEXT NOT NULL, status VARCHAR(16) NOT NULL, traffic_share FLOAT NOT NULL, "
        "sticky BOOLEAN NOT NULL, created_at FLOAT NOT NULL, updated_at FLOAT NOT NULL, "
        "updated_by VARCHAR NOT NULL, retired_at FLOAT, PRIMARY KEY (name, version))",
        f"CREATE TABLE audit_log (id {serial}, ts FLOAT NOT NULL, actor VARCHAR NOT NULL, "
        "action VARCHAR(32) NOT NULL, target VARCHAR NOT NULL, detail TEXT NOT NULL)",
        "CREATE INDEX ix_audit_log_target ON audit_log (target, id)",
        "ALTER TABLE usage_ledger ADD COLUMN units INTEGER NOT NULL DEFAULT 0",
    )
    for statement in statements:
        await conn.execute(sa.text(statement))


async def _v8_priced(conn: AsyncConnection) -> None:
    await conn.execute(
        sa.text("ALTER TABLE usage_ledger ADD COLUMN priced BOOLEAN NOT NULL DEFAULT TRUE")
    )


async def _v9_responses(conn: AsyncConnection) -> None:
    # Frozen DDL, the same on SQLite and PostgreSQL.
    await conn.execute(
        sa.text(
            "CREATE TABLE responses (id VARCHAR(64) PRIMARY KEY, key_name VARCHAR NOT NULL, "
            "created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, "
            "input_items TEXT NOT NULL, response TEXT NOT NULL)"
        )
    )
    await conn.execute(sa.text("CREATE INDEX ix_responses_expires_at ON responses (expires_at)"))


async def _v10_audit_area(conn: AsyncConnection) -> None:
    # Frozen DDL, the same on SQLite and PostgreSQL; every row so far is the registry's.
    await conn.execute(
        sa.text("ALTER TABLE audit_log ADD COLUMN area VARCHAR(16) NOT NULL DEFAULT 'registry'")
    )
    await conn.execute(sa.text("CREATE INDEX ix_audit_log_area ON audit_log (area, id)"))


async def _v11_conversations(conn: AsyncConnection) -> None:
    # Frozen DDL, the same on SQLite and PostgreSQL.
    await conn.execute(
        sa.text(
            "CREATE TABLE conversations (id VARCHAR(64) PRIMARY KEY, key_name VARCHAR NOT NULL, "
            "created_at BIGINT NOT NULL, metadata TEXT NOT NULL, next_position BIGINT NOT NULL)"
        )
    )
    await conn.execute(
        sa.text(
            "CREATE TABLE conversation_items (conversation_id VARCHAR(64) NOT NULL, "
            "position BIGINT NOT NULL, item_id VARCHAR(64) NOT NULL, item TEXT NOT NULL, "
            "PRIMARY KEY (conversation_id, position))"
        )
    )
    await conn.execute(
        sa.text(
            "CREATE UNIQUE INDEX ix_conversation_items_item_id "
            "ON conversation_items (conversation_id, item_id)"
        )
    )


async def _v12_chat_completions(conn: AsyncConnection) -> None:
    # Frozen DDL, the same on SQLite and PostgreSQL.
    await conn.execute(
        sa.text(
            "CREATE TABLE chat_completions (key_name VARCHAR NOT NULL, id VARCHAR(128) NOT NULL, "
            "created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, model VARCHAR NOT NULL, "
            "metadata TEXT NOT NULL, messages TEXT NOT NULL, completion TEXT NOT NULL, "
            "PRIMARY KEY (key_name, id))"
        )
    )
    await conn.execute(
        sa.text(
            "CREATE INDEX ix_chat_completions_key_created "
            "ON chat_completions (key_name, created_at, id)"
        )
    )
    await conn.execute(
        sa.text("CREATE INDEX ix_chat_completions_expires_at ON chat_completions (expires_at)")
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "api_keys and usage_ledger", _v1_keys_and_ledger),
    Migration(2, "usage_ledger (key_name, id) index for budget refreshes", _v2_ledger_key_name_id),
    Migration(3, "api_keys.guardrails: a key's guardrails override", _v3_api_keys_guardrails),
    Migration(4, "usage_ledger.record_id: a replayed journal adds no row twice", _v4_record_id),
    Migration(5, "files: uploads of the Files API", _v5_files),
    Migration(6, "batches, batch_items and queue_messages: batch inference", _v6_batches),
    Migration(7, "model_versions, audit_log, usage_ledger.units: the model registry", _v7_registry),
    Migration(8, "usage_ledger.priced: requests whose price was unknown", _v8_priced),
    Migration(9, "responses: stored responses of the Responses API", _v9_responses),
    Migration(10, "audit_log.area: key and chaos changes in the audit log", _v10_audit_area),
    Migration(11, "conversations, conversation_items: the Conversations API", _v11_conversations),
    Migration(12, "chat_completions: stored chat completions", _v12_chat_completions),
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
