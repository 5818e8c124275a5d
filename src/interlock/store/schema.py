"""The records store's tables, one definition for SQLite and PostgreSQL.

Portable types only: JSON columns are ``JSON`` (text on SQLite, ``json`` on
PostgreSQL), timestamps go through ``UTCDateTime`` so both backends hand back
aware UTC datetimes, and the ledger's id is a ``BIGINT`` that becomes SQLite's
``INTEGER PRIMARY KEY`` (the only kind SQLite auto-increments).

``api_keys.updated_at`` is set on every change (create, update, revoke), so
cache invalidation polls one indexed column (``KeyStore.changed_since``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import FunctionElement

__all__ = [
    "UTCDateTime",
    "api_keys",
    "audit_log",
    "batch_items",
    "batches",
    "conversation_items",
    "conversations",
    "files",
    "metadata",
    "model_versions",
    "queue_messages",
    "responses",
    "schema_migrations",
    "usage_ledger",
    "utc_day",
]


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware timestamp stored in UTC.

    SQLite has no timestamp type: SQLAlchemy stores naive ISO text, which
    orders correctly only if every value is in the same zone, so values are
    converted to UTC on the way in and labelled UTC on the way out. Naive
    datetimes are refused: their zone would be a guess.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the records store needs tz-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class utc_day(FunctionElement[str]):
    """The UTC calendar day of a ``UTCDateTime`` column, as ``YYYY-MM-DD`` text."""

    type = sa.String()
    inherit_cache = True


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    # timestamptz -> UTC wall time -> text, independent of the session's TimeZone.
    column = compiler.process(element.clauses, **kw)
    return f"to_char(({column}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


metadata = sa.MetaData()

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", UTCDateTime, nullable=False),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("key_prefix", sa.String(16), nullable=False),
    sa.Column("tier", sa.String(64), nullable=False),
    # SQL NULL (not JSON null) means "every model".
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
    # The key's guardrails override (the config file's ``keys[].guardrails``
    # shape); SQL NULL: none. Added by migration 3.
    sa.Column("guardrails", sa.JSON(none_as_null=True), nullable=True),
    sa.Index("ix_api_keys_key_hash", "key_hash", unique=True),
    sa.Index("ix_api_keys_updated_at", "updated_at"),
)

usage_ledger = sa.Table(
    "usage_ledger",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("ts", UTCDateTime, nullable=False),
    sa.Column("request_id", sa.String(), nullable=False),
    # Unbounded text: a client's long X-Request-ID must not make a batch fail forever.
    # Keys from the config file have no row in api_keys: key_id is NULL, key_name says who.
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
    # The ledger's own id for the record (``<writer>:<n>``), unique, so that
    # replaying a crashed process's journal adds no row twice. Not the
    # request id: a client may send the same X-Request-ID again. NULL on rows
    # written before migration 4.
    sa.Column("record_id", sa.String(), nullable=True),
    # A tensor request's rows (UsageRecord.units). Added by migration 7.
    sa.Column("units", sa.Integer, nullable=False, server_default="0"),
    # False when the deployment's price was unknown (UsageRecord.priced). Migration 8.
    sa.Column("priced", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Index("ix_usage_ledger_ts", "ts"),
    sa.Index("ix_usage_ledger_key_id", "key_id"),
    # Budgets ask "this key's spend since T" on every admission cache miss.
    sa.Index("ix_usage_ledger_key_name_ts", "key_name", "ts"),
    # Budgets then read only the key's rows newer than the last id they saw (migration 2).
    sa.Index("ix_usage_ledger_key_name_id", "key_name", "id"),
    sa.Index("ix_usage_ledger_record_id", "record_id", unique=True),
)

files = sa.Table(
    # Uploaded files (the OpenAI Files API); their bytes are in the blob
    # store under the same id. Added by migration 5.
    "files",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("key_name", sa.String(), nullable=False),  # the key that uploaded it
    sa.Column("filename", sa.String(), nullable=False),
    sa.Column("purpose", sa.String(32), nullable=False),
    sa.Column("bytes", sa.BigInteger, nullable=False),
    sa.Column("lines", sa.Integer, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),  # unix seconds, as OpenAI shows it
    sa.Index("ix_files_key_name_created", "key_name", "created_at", "id"),
)

batches = sa.Table(
    # Batches of the Batches API and async jobs (``kind``): one row each, its
    # status and the times of its transitions (unix seconds, as OpenAI shows
    # them). Added by migration 6.
    "batches",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("key_name", sa.String(), nullable=False),  # the key that created it
    sa.Column("kind", sa.String(16), nullable=False),  # batch | job
    sa.Column("endpoint", sa.String(), nullable=False),
    sa.Column("input_file_id", sa.String(64), nullable=True),
    sa.Column("completion_window", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("metadata", sa.Text, nullable=True),  # JSON text
    sa.Column("webhook_url", sa.String(), nullable=True),
    sa.Column("webhook_state", sa.String(16), nullable=True),  # pending | delivered | failed
    sa.Column("errors", sa.Text, nullable=True),  # JSON text: why validation failed
    sa.Column("output_file_id", sa.String(64), nullable=True),
    sa.Column("error_file_id", sa.String(64), nullable=True),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("in_progress_at", sa.BigInteger, nullable=True),
    sa.Column("finalizing_at", sa.BigInteger, nullable=True),
    sa.Column("completed_at", sa.BigInteger, nullable=True),
    sa.Column("failed_at", sa.BigInteger, nullable=True),
    sa.Column("expired_at", sa.BigInteger, nullable=True),
    sa.Column("cancelling_at", sa.BigInteger, nullable=True),
    sa.Column("cancelled_at", sa.BigInteger, nullable=True),
    # Wall-clock seconds of the last change: the sweeper finds stuck work by it.
    sa.Column("touched_at", sa.Float, nullable=False),
    sa.Index("ix_batches_key_name_created", "key_name", "created_at", "id"),
    sa.Index("ix_batches_status", "status"),
)

batch_items = sa.Table(
    # One request of a batch, keyed by its custom_id: its body, and once run
    # its outcome. A result is written only while the item is pending, so a
    # redelivered chunk never writes one twice. Added by migration 6.
    "batch_items",
    metadata,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("custom_id", sa.String(), primary_key=True),
    sa.Column("line", sa.Integer, nullable=False),  # order in the input
    sa.Column("chunk", sa.Integer, nullable=False),  # the queue message that carries it
    # pending | succeeded | failed | expired | cancelled
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("body", sa.Text, nullable=False),  # the request body, JSON text
    sa.Column("response_status", sa.Integer, nullable=True),
    sa.Column("result", sa.Text, nullable=True),  # response body or error, JSON text
    sa.Column("request_id", sa.String(), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("worker", sa.String(), nullable=True),  # who wrote the result
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Index("ix_batch_items_chunk", "batch_id", "chunk"),
    sa.Index("ix_batch_items_status", "batch_id", "status"),
)

queue_messages = sa.Table(
    # The embedded default's work queue (batch/queue/sql.py): a message is
    # leased to one consumer until ``lease_until`` (wall-clock seconds), then
    # visible again. Added by migration 6.
    "queue_messages",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("queue", sa.String(64), nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("lease_owner", sa.String(), nullable=True),
    sa.Column("lease_until", sa.Float, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_queue_messages_lease", "queue", "lease_until", "id"),
)

model_versions = sa.Table(
    # The model registry: one row per version of a model (registry/store.py).
    # JSON text columns hold what is read back whole. Added by migration 7.
    "model_versions",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # chat | embedding | tensor
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("endpoint", sa.String(), nullable=True),
    sa.Column("upstream_model", sa.String(), nullable=True),
    sa.Column("params", sa.Text, nullable=False),
    sa.Column("timeouts", sa.Text, nullable=False),
    sa.Column("inputs", sa.Text, nullable=False),
    sa.Column("outputs", sa.Text, nullable=False),
    sa.Column("tags", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # staging | canary | live | retired
    sa.Column("traffic_share", sa.Float, nullable=False),
    sa.Column("sticky", sa.Boolean, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("updated_by", sa.String(), nullable=False),
    sa.Column("retired_at", sa.Float, nullable=True),
)

audit_log = sa.Table(
    # Every change an operator (or the gateway itself, e.g. an automatic
    # rollback) made through the admin API: who, what, to which target, and
    # the record before and after (store/audit.py). The id orders changes.
    # Added by migration 7 for the registry; ``area`` by migration 10.
    "audit_log",
    metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("ts", sa.Float, nullable=False),  # unix seconds
    sa.Column("actor", sa.String(), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target", sa.String(), nullable=False),
    sa.Column("detail", sa.Text, nullable=False),  # JSON text
    # registry | keys | chaos: what was changed (rows before migration 10: registry).
    sa.Column("area", sa.String(16), nullable=False, server_default="registry"),
    sa.Index("ix_audit_log_target", "target", "id"),
    # The registry's revision is its area's newest id (migration 10).
    sa.Index("ix_audit_log_area", "area", "id"),
)

responses = sa.Table(
    # Stored responses of the Responses API (store/responses.py): the whole
    # conversation's input items and the Response object, JSON text, scoped
    # to the key that created them. Rows past ``expires_at`` (unix seconds)
    # are not read, and are deleted a few at a time. Added by migration 9.
    "responses",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("key_name", sa.String(), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("input_items", sa.Text, nullable=False),
    sa.Column("response", sa.Text, nullable=False),
    sa.Index("ix_responses_expires_at", "expires_at"),
)

chat_completions = sa.Table(
    # Stored chat completions (``store: true`` on /v1/chat/completions,
    # store/chat_completions.py): the completion, the request's messages and
    # metadata, JSON text, scoped to the key that created them; the id is the
    # one the client saw, unique per key; ``created_at`` is when it was
    # stored, in unix milliseconds (the listing's order). Rows past
    # ``expires_at`` (unix seconds) are not read, and are deleted a few at a
    # time. Migration 12.
    "chat_completions",
    metadata,
    sa.Column("key_name", sa.String(), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("model", sa.String(), nullable=False),
    sa.Column("metadata", sa.Text, nullable=False),
    sa.Column("messages", sa.Text, nullable=False),
    sa.Column("completion", sa.Text, nullable=False),
    sa.Index("ix_chat_completions_key_created", "key_name", "created_at", "id"),
    sa.Index("ix_chat_completions_expires_at", "expires_at"),
)

conversations = sa.Table(
    # Conversations of the Responses API (store/conversations.py), scoped to
    # the key that created them; kept until deleted, as OpenAI keeps them.
    # ``next_position`` numbers the items appended: one UPDATE reserves a
    # run of positions, so concurrent appends never collide. Migration 11.
    "conversations",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("key_name", sa.String(), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("metadata", sa.Text, nullable=False),  # JSON text
    sa.Column("next_position", sa.BigInteger, nullable=False),
)

conversation_items = sa.Table(
    # A conversation's items in order (JSON text), each with its own id.
    "conversation_items",
    metadata,
    sa.Column("conversation_id", sa.String(64), primary_key=True),
    sa.Column("position", sa.BigInteger, primary_key=True),
    sa.Column("item_id", sa.String(64), nullable=False),
    sa.Column("item", sa.Text, nullable=False),
    sa.Index("ix_conversation_items_item_id", "conversation_id", "item_id", unique=True),
)
