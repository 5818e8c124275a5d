"""The model registry's records on SQLite and PostgreSQL: the life cycle
(staging, canary, live, retired), its refusals, and an audit row for every
change, written in the change's own transaction."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.errors import Conflict, NotFound
from interlock.registry.records import Status, VersionPatch, VersionSpec
from interlock.registry.store import RegistryStore


class Ticks:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


@pytest.fixture
def registry(engine: AsyncEngine) -> RegistryStore:
    return RegistryStore(engine, clock=Ticks())


def spec(version: str, **changes: Any) -> VersionSpec:
    fields = {
        "name": "clf",
        "version": version,
        "kind": "tensor",
        "provider": "kserve",
        "endpoint": "http://127.0.0.1:9000",
        "upstream_model": "tiny",
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
        "tags": ["demo"],
        **changes,
    }
    return VersionSpec.model_validate(fields)


async def _statuses(registry: RegistryStore) -> dict[str, tuple[str, float]]:
    return {v.version: (v.status.value, v.traffic_share) for v in await registry.versions("clf")}


async def test_a_version_is_stored_whole_and_starts_in_staging(registry: RegistryStore) -> None:
    created = await registry.create(spec("1", params={"model_version": "3"}), "alice")
    assert created.status is Status.STAGING and created.updated_by == "alice"
    assert created.inputs == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
    assert created.params == {"model_version": "3"} and created.tags == ["demo"]
    assert await registry.get("clf", "1") == created
    with pytest.raises(Conflict):
        await registry.create(spec("1"), "bob")


async def test_canary_promote_and_rollback_move_traffic_and_are_audited(
    registry: RegistryStore,
) -> None:
    await registry.create(spec("1", status="live"), "alice")
    await registry.create(spec("2"), "alice")
    canary = await registry.set_canary("clf", "2", 0.1, True, "bob")
    assert (canary.status, canary.traffic_share, canary.sticky) == (Status.CANARY, 0.1, True)
    assert await _statuses(registry) == {"1": ("live", 1.0), "2": ("canary", 0.1)}

    serving = await registry.rollback("clf", "carol", reason="p99 up")
    assert serving.version == "1"
    assert await _statuses(registry) == {"1": ("live", 1.0), "2": ("staging", 0.0)}

    await registry.set_canary("clf", "2", 0.5, False, "bob")
    await registry.promote("clf", "2", "bob")
    assert await _statuses(registry) == {"1": ("retired", 0.0), "2": ("live", 1.0)}
    back = await registry.rollback("clf", "carol")  # no canary: the previous live returns
    assert back.version == "1"
    assert await _statuses(registry) == {"1": ("live", 1.0), "2": ("retired", 0.0)}

    entries = await registry.audit(target="clf")
    assert [(e["action"], e["actor"], e["target"]) for e in entries] == [
        ("rollback", "carol", "clf@1"),
        ("promote", "bob", "clf@2"),
        ("canary", "bob", "clf@2"),
        ("rollback", "carol", "clf@2"),
        ("canary", "bob", "clf@2"),
        ("create", "alice", "clf@2"),
        ("promote", "alice", "clf@1"),
        ("create", "alice", "clf@1"),
    ]
    rollback = entries[3]["detail"]
    assert rollback["reason"] == "p99 up"
    assert (rollback["before"]["status"], rollback["after"]["status"]) == ("canary", "staging")
    assert await registry.audit(target="clf@1", limit=2) == [entries[0], entries[6]]


async def test_refusals_leave_everything_as_it_was(registry: RegistryStore) -> None:
    await registry.create(spec("1"), "alice")
    with pytest.raises(Conflict, match="no live version"):
        await registry.set_canary("clf", "1", 0.1, False, "bob")
    await registry.promote("clf", "1", "alice")
    await registry.create(spec("2"), "alice")
    await registry.create(spec("3"), "alice")
    await registry.set_canary("clf", "2", 0.1, False, "bob")
    with pytest.raises(Conflict, match="already has a canary"):
        await registry.set_canary("clf", "3", 0.1, False, "bob")
    with pytest.raises(Conflict, match="only a staging version"):
        await registry.set_canary("clf", "1", 0.1, False, "bob")
    with pytest.raises(Conflict, match="is live"):
        await registry.delete("clf", "1", "bob")
    with pytest.raises(NotFound):
        await registry.promote("clf", "9", "bob")
    with pytest.raises(NotFound):
        await registry.rollback("nothing", "bob")
    revision = await registry.revision()
    with pytest.raises(Conflict, match="not a canary any more"):
        await registry.rollback("clf", "judge", canary="3")
    assert await registry.revision() == revision  # nothing written, not even audit
    assert await _statuses(registry) == {
        "1": ("live", 1.0),
        "2": ("canary", 0.1),
        "3": ("staging", 0.0),
    }


async def test_update_and_delete_are_audited_and_move_the_revision(
    registry: RegistryStore,
) -> None:
    assert await registry.revision() == 0
    await registry.create(spec("1"), "alice")
    first = await registry.revision()
    updated = await registry.update(
        "clf", "1", VersionPatch(tags=["x"], description="new weights"), "bob"
    )
    assert (updated.tags, updated.description, updated.updated_by) == (["x"], "new weights", "bob")
    assert updated.endpoint == "http://127.0.0.1:9000"  # untouched fields stay
    assert await registry.revision() > first
    await registry.delete("clf", "1", "carol")
    assert await registry.get("clf", "1") is None
    actions = [(e["action"], e["actor"]) for e in await registry.audit()]
    assert actions == [("delete", "carol"), ("update", "bob"), ("create", "alice")]


async def test_rollback_returns_the_version_retired_last_whatever_was_edited_since(
    registry: RegistryStore,
) -> None:
    for version in ("1", "2", "3"):
        await registry.create(spec(version, status="live"), "alice")
    # An edit of the oldest one must not make it the one a rollback brings back.
    await registry.update("clf", "1", VersionPatch(description="notes"), "bob")
    assert (await registry.rollback("clf", "carol")).version == "2"


async def test_a_rolled_back_canary_is_no_longer_sticky(registry: RegistryStore) -> None:
    await registry.create(spec("1", status="live"), "alice")
    await registry.create(spec("2"), "alice")
    await registry.set_canary("clf", "2", 0.2, True, "bob")
    await registry.rollback("clf", "bob")
    assert (await registry.get("clf", "2")).sticky is False  # type: ignore[union-attr]


async def test_the_audit_filter_matches_names_literally(registry: RegistryStore) -> None:
    await registry.create(spec("1", name="a_b"), "alice")
    await registry.create(spec("1", name="axb"), "alice")
    assert [e["target"] for e in await registry.audit(target="a_b")] == ["a_b@1"]
