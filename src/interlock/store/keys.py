"""Virtual API keys: created, looked up by digest, revoked and rotated.

The plain key exists once, in ``create``/``rotate``'s return value, for the
caller to show its owner; the store keeps only its SHA-256 (``hash_key``) and
an 8-character prefix for display. A leaked database therefore leaks no
usable key, and a record (``KeyRecord``) is safe to log and cache.

A key's settings change (``update``) and it is revoked in place; every
change stamps ``updated_at``, which is what ``changed_since`` polls: gateway
instances cache keys by digest and refresh the changed ones, so an edited
limit reaches every instance as a revocation does. Every change also writes
an audit entry (area ``keys``, target ``key:<id>``) in its own transaction:
the key's name and settings, never the key nor its digest.
"""

from __future__ import annotations

import builtins
import enum
import hashlib
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from interlock.store.audit import write_audit
from interlock.store.engine import write_engine
from interlock.store.schema import api_keys

__all__ = [
    "KEY_PREFIX",
    "UNCHANGED",
    "KeyLimits",
    "KeyNotFound",
    "KeyRecord",
    "KeyRevoked",
    "KeyStore",
    "Unchanged",
    "hash_key",
]

KEY_PREFIX = "sk-il-"
_DISPLAY_CHARS = 8
# What a rotated key inherits from the key it replaces.
_SETTINGS = (
    "name",
    "tier",
    "allowed_models",
    "limits",
    "budget_usd_day",
    "budget_usd_month",
    "permissions",
    "expires_at",
    "guardrails",
)


class Unchanged(enum.Enum):
    """The default of ``KeyStore.update``'s settings: leave this one as it is
    (``None`` is a value there: no budget, every model, no override)."""

    UNCHANGED = "unchanged"


UNCHANGED = Unchanged.UNCHANGED


def hash_key(plain_key: str) -> str:
    """The digest a key is stored and looked up by (SHA-256, hex)."""
    return hashlib.sha256(plain_key.encode()).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class KeyNotFound(LookupError):
    """No key has that id."""


class KeyRevoked(Exception):
    """The key was already revoked (a revoked key cannot be rotated back to life)."""


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """Per-key caps; ``None`` means the tier's default applies."""

    rpm: int | None = None
    tpm: int | None = None
    tokens_per_day: int | None = None
    max_concurrent: int | None = None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored key, without its plain text. ``allowed_models=None`` allows every model."""

    id: str
    name: str
    key_hash: str
    key_prefix: str
    tier: str
    allowed_models: tuple[str, ...] | None
    limits: KeyLimits
    budget_usd_day: float | None
    budget_usd_month: float | None
    permissions: frozenset[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    updated_at: datetime
    rotated_from: str | None
    # Overrides the gateway's guardrails for this key (``keys[].guardrails``'s shape).
    guardrails: dict[str, Any] | None = None

    def usable_at(self, now: datetime) -> bool:
        """Neither revoked nor expired at ``now``."""
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at


class KeyStore:
    """Key records in the records store; every method is one transaction."""

    def __init__(self, engine: AsyncEngine, *, clock: Callable[[], datetime] = _utcnow):
        self._engine = engine
        self._writer = write_engine(engine)
        self._clock = clock

    async def create(
        self,
        name: str,
        tier: str,
        *,
        allowed_models: Iterable[str] | None = None,
        limits: KeyLimits | None = None,
        budget_usd_day: float | None = None,
        budget_usd_month: float | None = None,
        permissions: Iterable[str] = (),
        expires_at: datetime | None = None,
        guardrails: dict[str, Any] | None = None,
        actor: str = "admin",
    ) -> tuple[KeyRecord, str]:
        """Store a new key; return its record and the plain key, which is not kept.

        ``guardrails`` is stored as given: the caller validates it
        (``GuardrailsConfig.override``)."""
        values = _columns(
            {
                "name": name,
                "tier": tier,
                "allowed_models": allowed_models,
                "limits": limits or KeyLimits(),
                "budget_usd_day": budget_usd_day,
                "budget_usd_month": budget_usd_month,
                "guardrails": guardrails,
            }
        )
        values.update(
            permissions=sorted(set(permissions)), expires_at=expires_at, rotated_from=None
        )
        async with self._writer.begin() as conn:
            record, plain = await self._insert(conn, values)
            detail = {"name": name, "before": None, "after": _settings(record, _SETTINGS)}
            await self._audit(conn, actor, "create", record.id, detail)
            return record, plain

    async def update(
        self,
        key_id: str,
        *,
        actor: str = "admin",
        name: str | Unchanged = UNCHANGED,
        tier: str | Unchanged = UNCHANGED,
        allowed_models: Iterable[str] | Unchanged | None = UNCHANGED,
        limits: KeyLimits | Unchanged = UNCHANGED,
        budget_usd_day: float | Unchanged | None = UNCHANGED,
        budget_usd_month: float | Unchanged | None = UNCHANGED,
        guardrails: dict[str, Any] | Unchanged | None = UNCHANGED,
    ) -> KeyRecord:
        """Change a live key's settings: only those given change (``limits``
        as a whole). Raises ``KeyNotFound`` or ``KeyRevoked``.

        The audit entry holds the given settings before and after."""
        given = {
            "name": name,
            "tier": tier,
            "allowed_models": allowed_models,
            "limits": limits,
            "budget_usd_day": budget_usd_day,
            "budget_usd_month": budget_usd_month,
            "guardrails": guardrails,
        }
        changes = {k: v for k, v in given.items() if v is not UNCHANGED}
        where = api_keys.c.id == key_id
        async with self._writer.begin() as conn:
            # Locked, so that concurrent updates serialise and each sees its "before".
            found = (await conn.execute(sa.select(api_keys).where(where).with_for_update())).first()
            if found is None:
                raise KeyNotFound(key_id)
            before = _record(found._mapping)
            if before.revoked_at is not None:
                raise KeyRevoked(key_id)
            now = self._clock()
            values = {**_columns(changes), "updated_at": now}
            await conn.execute(api_keys.update().where(where).values(values))
            after = _record((await conn.execute(sa.select(api_keys).where(where))).one()._mapping)
            detail = {
                "name": after.name,
                "before": _settings(before, changes),
                "after": _settings(after, changes),
            }
            await self._audit(conn, actor, "update", key_id, detail)
            return after

    async def get(self, key_id: str) -> KeyRecord | None:
        return await self._one(api_keys.c.id == key_id)

    async def get_by_hash(self, hash_hex: str) -> KeyRecord | None:
        """The key with this digest, revoked or expired ones included (check ``usable_at``)."""
        return await self._one(api_keys.c.key_hash == hash_hex)

    async def list(self, include_revoked: bool = False) -> builtins.list[KeyRecord]:
        query = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        return await self._many(query)

    async def revoke(self, key_id: str, *, actor: str = "admin") -> bool:
        """Revoke the key; False when it is unknown or was already revoked."""
        async with self._writer.begin() as conn:
            if not await self._revoke(conn, key_id):
                return False
            query = sa.select(api_keys.c.name).where(api_keys.c.id == key_id)
            name = (await conn.execute(query)).scalar_one()
            await self._audit(conn, actor, "revoke", key_id, {"name": name})
            return True

    async def rotate(self, key_id: str, *, actor: str = "admin") -> tuple[KeyRecord, str]:
        """Replace a live key with a new one of the same settings, atomically.

        The old key is revoked first, under its row lock, so two concurrent
        rotations of one key cannot both succeed and leave two successors.
        """
        async with self._writer.begin() as conn:
            if not await self._revoke(conn, key_id):
                old = await conn.execute(sa.select(api_keys.c.id).where(api_keys.c.id == key_id))
                if old.first() is None:
                    raise KeyNotFound(key_id)
                raise KeyRevoked(key_id)
            row = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id))).one()
            values = {column: row._mapping[column] for column in _SETTINGS}
            values["rotated_from"] = key_id
            record, plain = await self._insert(conn, values)
            detail = {"name": record.name, "rotated_to": record.id}
            await self._audit(conn, actor, "rotate", key_id, detail)
            return record, plain

    async def changed_since(self, ts: datetime) -> builtins.list[KeyRecord]:
        """Keys created, updated or revoked at or after ``ts``, oldest change first.

        ``updated_at`` comes from the writing instance's clock before its
        commit, so a poller should ask from its previous poll's time minus a
        margin (clock skew plus the longest transaction); repeats are harmless.
        """
        query = (
            sa.select(api_keys)
            .where(api_keys.c.updated_at >= ts)
            .order_by(api_keys.c.updated_at, api_keys.c.id)
        )
        return await self._many(query)

    async def _insert(self, conn: AsyncConnection, values: dict[str, Any]) -> tuple[KeyRecord, str]:
        plain = KEY_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        row = {
            **values,
            "id": "key_" + secrets.token_hex(12),
            "key_hash": hash_key(plain),
            "key_prefix": plain[:_DISPLAY_CHARS],
            "revoked_at": None,
            "created_at": now,
            "updated_at": now,
        }
        await conn.execute(api_keys.insert().values(row))
        stored = (await conn.execute(sa.select(api_keys).where(api_keys.c.id == row["id"]))).one()
        return _record(stored._mapping), plain

    async def _audit(
        self,
        conn: AsyncConnection,
        actor: str,
        action: str,
        key_id: str,
        detail: Mapping[str, Any],
    ) -> None:
        ts = self._clock().timestamp()
        target = f"key:{key_id}"
        await write_audit(
            conn, ts=ts, actor=actor, area="keys", action=action, target=target, detail=detail
        )

    async def _revoke(self, conn: AsyncConnection, key_id: str) -> bool:
        now = self._clock()
        result = await conn.execute(
            api_keys.update()
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=now, updated_at=now)
        )
        return result.rowcount == 1

    async def _one(self, where: sa.ColumnElement[bool]) -> KeyRecord | None:
        found = await self._many(sa.select(api_keys).where(where))
        return found[0] if found else None

    async def _many(self, query: sa.Select[Any]) -> builtins.list[KeyRecord]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_record(row._mapping) for row in rows]


def _columns(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as the table stores them."""
    values = dict(settings)
    if values.get("allowed_models") is not None:
        values["allowed_models"] = sorted(set(values["allowed_models"]))
    if "limits" in values:
        values["limits"] = asdict(values["limits"])
    return values


def _settings(record: KeyRecord, names: Iterable[str]) -> dict[str, Any]:
    """Some of a key's settings as JSON values, for its audit entries (never
    the key's digest: ``names`` are settings)."""
    shown: dict[str, Any] = {}
    for name in names:
        value = getattr(record, name)
        if isinstance(value, KeyLimits):
            value = asdict(value)
        elif isinstance(value, tuple | frozenset):
            value = sorted(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        shown[name] = value
    return shown


def _record(row: sa.RowMapping) -> KeyRecord:
    limits = row["limits"] or {}
    allowed = row["allowed_models"]
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        key_hash=row["key_hash"],
        key_prefix=row["key_prefix"],
        tier=row["tier"],
        allowed_models=None if allowed is None else tuple(allowed),
        limits=KeyLimits(**{f.name: limits.get(f.name) for f in fields(KeyLimits)}),
        budget_usd_day=row["budget_usd_day"],
        budget_usd_month=row["budget_usd_month"],
        permissions=frozenset(row["permissions"]),
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        rotated_from=row["rotated_from"],
        guardrails=row["guardrails"],
    )
