from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.store import KeyLimits, KeyNotFound, KeyRevoked, KeyStore, hash_key
from interlock.store.schema import metadata
from tests.store.conftest import Backend, FakeClock


async def test_create_returns_the_plain_key_once_and_stores_its_digest(keys: KeyStore) -> None:
    record, plain = await keys.create("team-a", "standard")
    assert plain.startswith("sk-il-") and len(plain) > 40
    assert record.key_hash == hashlib.sha256(plain.encode()).hexdigest() == hash_key(plain)
    assert record.key_prefix == plain[:8]
    assert record.id.startswith("key_")
    assert await keys.get_by_hash(hash_key(plain)) == record
    assert await keys.get(record.id) == record


async def test_settings_round_trip(keys: KeyStore, clock: FakeClock) -> None:
    expires = datetime(2030, 1, 1, 9, 30, tzinfo=UTC)
    record, _ = await keys.create(
        "team-b",
        "premium",
        allowed_models=["gpt-4o", "claude", "gpt-4o"],
        limits=KeyLimits(rpm=60, tokens_per_day=100_000),
        budget_usd_day=5.5,
        budget_usd_month=100.0,
        permissions=["admin", "force_deployment"],
        expires_at=expires,
        guardrails={"pii": {"action": "block", "types": ["EMAIL"]}, "injection": None},
    )
    stored = await keys.get(record.id)
    assert stored is not None
    assert stored.tier == "premium"
    assert stored.allowed_models == ("claude", "gpt-4o")
    assert stored.limits == KeyLimits(rpm=60, tpm=None, tokens_per_day=100_000)
    assert (stored.budget_usd_day, stored.budget_usd_month) == (5.5, 100.0)
    assert stored.permissions == frozenset({"admin", "force_deployment"})
    assert stored.expires_at == expires and stored.expires_at.tzinfo is not None
    assert stored.created_at == stored.updated_at == clock.now
    assert stored.revoked_at is None and stored.rotated_from is None
    assert stored.guardrails == {"pii": {"action": "block", "types": ["EMAIL"]}, "injection": None}


async def test_defaults_mean_every_model_and_tier_limits(keys: KeyStore) -> None:
    record, _ = await keys.create("plain", "free")
    assert record.allowed_models is None
    assert record.limits == KeyLimits()
    assert record.permissions == frozenset()
    assert record.budget_usd_day is None and record.expires_at is None
    assert record.guardrails is None


async def test_unknown_keys_are_none(keys: KeyStore) -> None:
    assert await keys.get("key_nope") is None
    assert await keys.get_by_hash(hash_key("sk-il-nope")) is None


async def test_list_hides_revoked_keys_unless_asked(keys: KeyStore, clock: FakeClock) -> None:
    a, _ = await keys.create("a", "free")
    clock.advance(1)
    b, _ = await keys.create("b", "free")
    assert await keys.revoke(a.id)
    assert [k.id for k in await keys.list()] == [b.id]
    assert [k.id for k in await keys.list(include_revoked=True)] == [a.id, b.id]


async def test_revoke_marks_the_key_once(keys: KeyStore, clock: FakeClock) -> None:
    record, plain = await keys.create("a", "free")
    revoked_at = clock.advance(5)
    assert await keys.revoke(record.id) is True
    assert await keys.revoke(record.id) is False
    assert await keys.revoke("key_unknown") is False
    found = await keys.get_by_hash(hash_key(plain))
    assert found is not None and found.revoked_at == revoked_at == found.updated_at
    assert not found.usable_at(revoked_at)


async def test_usable_at_honours_expiry(keys: KeyStore, clock: FakeClock) -> None:
    record, _ = await keys.create("a", "free", expires_at=clock.now + timedelta(hours=1))
    assert record.usable_at(clock.now)
    assert not record.usable_at(clock.now + timedelta(hours=1))


async def test_rotate_replaces_a_key_with_the_same_settings(
    keys: KeyStore, clock: FakeClock
) -> None:
    old, old_plain = await keys.create(
        "svc",
        "premium",
        allowed_models=["m"],
        limits=KeyLimits(rpm=7),
        permissions=["p"],
        guardrails={"pii": {"action": "redact"}},
    )
    clock.advance(10)
    new, new_plain = await keys.rotate(old.id)
    assert new_plain != old_plain and new.id != old.id
    assert new.rotated_from == old.id
    assert (new.name, new.tier, new.allowed_models, new.limits, new.permissions) == (
        "svc",
        "premium",
        ("m",),
        KeyLimits(rpm=7),
        frozenset({"p"}),
    )
    assert new.guardrails == {"pii": {"action": "redact"}}
    assert await keys.get_by_hash(hash_key(new_plain)) == new
    old_now = await keys.get_by_hash(hash_key(old_plain))
    assert old_now is not None and old_now.revoked_at == clock.now


async def test_rotate_refuses_unknown_and_revoked_keys(keys: KeyStore) -> None:
    record, _ = await keys.create("a", "free")
    await keys.revoke(record.id)
    with pytest.raises(KeyRevoked):
        await keys.rotate(record.id)
    with pytest.raises(KeyNotFound):
        await keys.rotate("key_unknown")
    assert len(await keys.list(include_revoked=True)) == 1


async def test_concurrent_rotations_leave_one_successor(
    backend: Backend, engine: AsyncEngine
) -> None:
    record, _ = await KeyStore(engine).create("a", "free")
    stores = [KeyStore(backend.engine()) for _ in range(2)]
    results = await asyncio.gather(*(s.rotate(record.id) for s in stores), return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["KeyRevoked", "tuple"]
    live = await stores[0].list()
    assert len(live) == 1 and live[0].rotated_from == record.id


async def test_changed_since_reports_creations_and_revocations(
    keys: KeyStore, clock: FakeClock
) -> None:
    a, _ = await keys.create("a", "free")
    t1 = clock.advance(60)
    b, _ = await keys.create("b", "free")
    assert [k.id for k in await keys.changed_since(t1)] == [b.id]
    t2 = clock.advance(60)
    assert await keys.changed_since(t2) == []
    await keys.revoke(a.id)
    changed = await keys.changed_since(t2)
    assert [(k.id, k.revoked_at) for k in changed] == [(a.id, t2)]
    t3 = clock.advance(60)
    c, _ = await keys.rotate(b.id)
    assert {k.id for k in await keys.changed_since(t3)} == {b.id, c.id}
    # Oldest change first: a's revocation (t2), then b's revocation and c (both t3).
    since_t1 = [k.id for k in await keys.changed_since(t1)]
    assert since_t1[0] == a.id and set(since_t1[1:]) == {b.id, c.id}


async def test_naive_datetimes_are_refused(keys: KeyStore) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        await keys.create("a", "free", expires_at=datetime(2030, 1, 1))


async def test_the_plain_key_is_never_stored(
    backend: Backend, engine: AsyncEngine, keys: KeyStore
) -> None:
    created, first = await keys.create("a", "free")
    _, second = await keys.rotate(created.id)
    secrets = [first, second, first.removeprefix("sk-il-"), second.removeprefix("sk-il-")]
    async with engine.connect() as conn:
        for table in metadata.sorted_tables:
            for row in (await conn.execute(sa.select(table))).all():
                dumped = repr(tuple(row))
                assert not any(secret in dumped for secret in secrets), table.name
    if backend.name == "sqlite":
        await engine.dispose()  # checkpoint the WAL; then read every byte on disk
        database = Path(backend.url.removeprefix("sqlite+aiosqlite:///"))
        raw = b"".join(p.read_bytes() for p in database.parent.iterdir())
        assert hash_key(first).encode() in raw  # the digest is there ...
        assert not any(secret.encode() in raw for secret in secrets)  # ... the key is not


async def test_update_changes_only_the_given_settings(keys: KeyStore, clock: FakeClock) -> None:
    record, plain = await keys.create(
        "svc",
        "standard",
        allowed_models=["a", "b"],
        limits=KeyLimits(rpm=60, tpm=1000),
        budget_usd_day=5.0,
        budget_usd_month=50.0,
        permissions=["p"],
        guardrails={"pii": {"action": "redact"}},
    )
    edited = clock.advance(30)
    renamed = await keys.update(record.id, name="svc-2")
    assert renamed.name == "svc-2" and renamed.updated_at == edited
    assert (renamed.tier, renamed.allowed_models, renamed.limits) == (
        "standard",
        ("a", "b"),
        KeyLimits(rpm=60, tpm=1000),
    )
    changes: list[tuple[str, Any, Any]] = [  # (setting, value given, value stored)
        ("tier", "premium", "premium"),
        ("allowed_models", ["b", "c", "b"], ("b", "c")),
        ("allowed_models", None, None),
        ("limits", KeyLimits(rpm=5), KeyLimits(rpm=5)),
        ("budget_usd_day", 1.5, 1.5),
        ("budget_usd_day", None, None),
        ("budget_usd_month", None, None),
        ("guardrails", {"pii": {"action": "block"}}, {"pii": {"action": "block"}}),
        ("guardrails", None, None),
    ]
    for setting, given, stored in changes:
        updated = await keys.update(record.id, **{setting: given})
        assert getattr(updated, setting) == stored, setting
        assert await keys.get(record.id) == updated
    final = await keys.get_by_hash(hash_key(plain))
    assert final is not None
    assert (final.name, final.tier, final.limits) == ("svc-2", "premium", KeyLimits(rpm=5))
    assert final.permissions == frozenset({"p"}) and final.key_hash == record.key_hash
    assert final.created_at == record.created_at and final.revoked_at is None


async def test_update_refuses_unknown_and_revoked_keys(keys: KeyStore) -> None:
    record, _ = await keys.create("a", "free")
    with pytest.raises(KeyNotFound):
        await keys.update("key_unknown", tier="premium")
    await keys.revoke(record.id)
    with pytest.raises(KeyRevoked):
        await keys.update(record.id, tier="premium")
    stored = await keys.get(record.id)
    assert stored is not None and stored.tier == "free"


async def test_changed_since_reports_updates(keys: KeyStore, clock: FakeClock) -> None:
    a, _ = await keys.create("a", "free")
    await keys.create("b", "free")
    t1 = clock.advance(60)
    assert await keys.changed_since(t1) == []
    await keys.update(a.id, limits=KeyLimits(rpm=1))
    changed = await keys.changed_since(t1)
    assert [(k.id, k.limits.rpm, k.updated_at) for k in changed] == [(a.id, 1, t1)]
