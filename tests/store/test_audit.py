"""One audit log for every admin change, on SQLite and PostgreSQL: key
changes write their entries in their own transactions, never with the key
or its digest; entries are listed newest first by area and target; the
registry's revision counts only the registry's entries."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.registry.records import VersionSpec
from interlock.registry.store import RegistryStore
from interlock.store import AuditLog, KeyLimits, KeyNotFound, KeyRevoked, KeyStore, hash_key
from tests.store.conftest import Backend, FakeClock


@pytest.fixture
def audit(engine: AsyncEngine) -> AuditLog:
    return AuditLog(engine, clock=lambda: 1_700_000_000.0)


async def test_key_changes_are_audited_with_their_actor(
    keys: KeyStore, audit: AuditLog, clock: FakeClock
) -> None:
    record, _ = await keys.create("team-a", "standard", limits=KeyLimits(rpm=60), actor="alice")
    await keys.update(record.id, limits=KeyLimits(rpm=5), allowed_models=["m"], actor="bob")
    successor, _ = await keys.rotate(record.id, actor="carol")
    assert await keys.revoke(successor.id, actor="dave")
    entries = await audit.entries(area="keys")
    assert [(e["action"], e["actor"], e["target"]) for e in entries] == [
        ("revoke", "dave", f"key:{successor.id}"),
        ("rotate", "carol", f"key:{record.id}"),
        ("update", "bob", f"key:{record.id}"),
        ("create", "alice", f"key:{record.id}"),
    ]
    assert {e["area"] for e in entries} == {"keys"}
    assert all(e["detail"]["name"] == "team-a" for e in entries)
    assert entries[0]["ts"] == clock.now.timestamp()
    assert entries[1]["detail"]["rotated_to"] == successor.id
    update = entries[2]["detail"]
    assert update["before"] == {
        "allowed_models": None,
        "limits": {"rpm": 60, "tpm": None, "tokens_per_day": None, "max_concurrent": None},
    }
    assert update["after"] == {
        "allowed_models": ["m"],
        "limits": {"rpm": 5, "tpm": None, "tokens_per_day": None, "max_concurrent": None},
    }
    created = entries[3]["detail"]
    assert created["before"] is None and created["after"]["tier"] == "standard"
    one_key = await audit.entries(target=f"key:{successor.id}")
    assert [e["action"] for e in one_key] == ["revoke"]


async def test_no_audit_entry_holds_the_key_or_its_digest(keys: KeyStore, audit: AuditLog) -> None:
    record, first = await keys.create("a", "free", guardrails={"pii": {"action": "redact"}})
    await keys.update(record.id, name="b", tier="premium")
    successor, second = await keys.rotate(record.id)
    await keys.revoke(successor.id)
    entries = await audit.entries()
    assert len(entries) == 4
    dumped = orjson.dumps(entries).decode()
    for plain in (first, second):
        for secret in (plain, plain.removeprefix("sk-il-"), hash_key(plain)):
            assert secret not in dumped


async def test_a_key_change_whose_entry_cannot_be_written_is_not_made(
    backend: Backend, keys: KeyStore
) -> None:
    record, _ = await keys.create("a", "free")
    await backend.sql("DROP TABLE audit_log")
    with pytest.raises(Exception, match="audit_log"):
        await keys.update(record.id, tier="premium")
    with pytest.raises(Exception, match="audit_log"):
        await keys.revoke(record.id)
    with pytest.raises(Exception, match="audit_log"):
        await keys.create("b", "free")
    stored = await keys.get(record.id)
    assert stored is not None and stored.tier == "free" and stored.revoked_at is None
    assert [k.name for k in await keys.list(include_revoked=True)] == ["a"]


async def test_refused_key_changes_write_no_entry(keys: KeyStore, audit: AuditLog) -> None:
    record, _ = await keys.create("a", "free")
    await keys.revoke(record.id)
    assert not await keys.revoke(record.id)
    with pytest.raises(KeyRevoked):
        await keys.update(record.id, tier="premium")
    with pytest.raises(KeyRevoked):
        await keys.rotate(record.id)
    with pytest.raises(KeyNotFound):
        await keys.update("key_unknown", tier="premium")
    assert [e["action"] for e in await audit.entries()] == ["revoke", "create"]


async def test_entries_by_area_and_target_newest_first(audit: AuditLog) -> None:
    await audit.record(actor="a", area="chaos", action="set", target="chaos", detail={"n": 1})
    await audit.record(actor="b", area="registry", action="create", target="m@1", detail={})
    await audit.record(actor="c", area="registry", action="create", target="m@2", detail={})
    await audit.record(actor="d", area="chaos", action="set", target="chaos", detail={"n": 2})
    assert [e["actor"] for e in await audit.entries()] == ["d", "c", "b", "a"]
    assert [e["detail"] for e in await audit.entries(area="chaos")] == [{"n": 2}, {"n": 1}]
    assert [e["target"] for e in await audit.entries(target="m")] == ["m@2", "m@1"]
    assert [e["actor"] for e in await audit.entries(area="registry", limit=1)] == ["c"]
    assert await audit.entries(area="keys") == []
    assert (await audit.entries(limit=1))[0]["ts"] == 1_700_000_000.0


async def test_a_key_or_chaos_change_leaves_the_registry_revision_alone(
    engine: AsyncEngine, keys: KeyStore, audit: AuditLog
) -> None:
    registry = RegistryStore(engine)
    assert await registry.revision() == 0
    spec = {"name": "clf", "version": "1", "kind": "chat", "provider": "simulator"}
    await registry.create(VersionSpec.model_validate(spec), "alice")
    revision = await registry.revision()
    assert revision > 0
    record, _ = await keys.create("a", "free")
    await keys.update(record.id, tier="premium")
    await audit.record(actor="a", area="chaos", action="set", target="chaos", detail={})
    assert await registry.revision() == revision
    assert [e["action"] for e in await registry.audit()] == ["create"]
    assert {e["area"] for e in await audit.entries()} == {"registry", "keys", "chaos"}
