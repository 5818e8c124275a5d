"""The registry's records: model versions and the audit log, in the records
store (SQLite or PostgreSQL).

Every change is one transaction that writes the version rows and an audit
row (area ``registry``, ``store.audit``) together: a change is never made
without its record, and the audit log's id orders every change, so
``revision`` tells a gateway whether anything in the registry changed since
it last read. Life-cycle changes check the state they
start from inside the transaction (a rollback of a canary that was promoted
meanwhile changes nothing and says so).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from interlock.errors import Conflict, NotFound
from interlock.registry.records import ModelVersion, Status, VersionPatch, VersionSpec
from interlock.store.audit import AuditEntry, read_audit, revision, write_audit
from interlock.store.engine import write_engine
from interlock.store.schema import model_versions

__all__ = ["AuditEntry", "RegistryStore"]

Clock = Callable[[], float]
_JSON_COLUMNS = ("params", "timeouts", "inputs", "outputs", "tags")


class RegistryStore:
    def __init__(self, engine: AsyncEngine, *, clock: Clock = time.time):
        self._engine = engine
        self._writer = write_engine(engine)
        self._clock = clock

    # -- reads ---------------------------------------------------------------

    async def versions(self, name: str | None = None) -> list[ModelVersion]:
        """Every version (of ``name``), by model then creation."""
        query = sa.select(model_versions).order_by(
            model_versions.c.name, model_versions.c.created_at, model_versions.c.version
        )
        if name is not None:
            query = query.where(model_versions.c.name == name)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [_version(row) for row in rows]

    async def get(self, name: str, version: str) -> ModelVersion | None:
        async with self._engine.connect() as conn:
            return await _get(conn, name, version)

    async def revision(self) -> int:
        """The id of the registry's last change (0: none yet); changes to
        keys or chaos, in the same audit log, do not count."""
        async with self._engine.connect() as conn:
            return await revision(conn, "registry")

    async def audit(self, *, target: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """The registry's newest changes first; ``target``: one model
        (``name``) or version (``name@version``)."""
        async with self._engine.connect() as conn:
            return await read_audit(conn, area="registry", target=target, limit=limit)

    # -- changes -------------------------------------------------------------

    async def create(self, spec: VersionSpec, actor: str) -> ModelVersion:
        now = self._clock()
        async with self._writer.begin() as conn:
            if await _get(conn, spec.name, spec.version) is not None:
                raise Conflict(
                    f"Model `{spec.name}` already has a version `{spec.version}`.",
                    param="version",
                )
            values = {
                "name": spec.name,
                "version": spec.version,
                "kind": spec.kind,
                "provider": spec.provider,
                "endpoint": spec.endpoint,
                "upstream_model": spec.upstream_model,
                "params": spec.params,
                "timeouts": spec.timeouts,
                "inputs": [t.model_dump() for t in spec.inputs],
                "outputs": [t.model_dump() for t in spec.outputs],
                "tags": spec.tags,
                "description": spec.description,
                "status": Status.STAGING.value,
                "traffic_share": 0.0,
                "sticky": False,
                "created_at": now,
                "updated_at": now,
                "updated_by": actor,
            }
            await conn.execute(sa.insert(model_versions).values(**_encoded(values)))
            created = await _must_get(conn, spec.name, spec.version)
            await self._audit(conn, actor, "create", created, None, created)
            if spec.status == "live":
                await self._promote(conn, created, actor, now)
            return await _must_get(conn, spec.name, spec.version)

    async def update(
        self, name: str, version: str, patch: VersionPatch, actor: str
    ) -> ModelVersion:
        changes: dict[str, Any] = {}
        for field, value in patch.model_dump(exclude_unset=True).items():
            changes[field] = value
        async with self._writer.begin() as conn:
            before = await _must_get(conn, name, version)
            changes.update(updated_at=self._clock(), updated_by=actor)
            await conn.execute(_where(name, version).values(**_encoded(changes)))
            after = await _must_get(conn, name, version)
            await self._audit(conn, actor, "update", after, before, after)
            return after

    async def delete(self, name: str, version: str, actor: str) -> ModelVersion:
        async with self._writer.begin() as conn:
            before = await _must_get(conn, name, version)
            if before.status in (Status.LIVE, Status.CANARY):
                raise Conflict(
                    f"Version `{version}` of `{name}` is {before.status.value}: "
                    "promote another version or roll back first.",
                    param="version",
                )
            await conn.execute(
                sa.delete(model_versions).where(
                    model_versions.c.name == name, model_versions.c.version == version
                )
            )
            await self._audit(conn, actor, "delete", before, before, None)
            return before

    async def set_canary(
        self, name: str, version: str, share: float, sticky: bool, actor: str
    ) -> ModelVersion:
        async with self._writer.begin() as conn:
            target = await _must_get(conn, name, version)
            siblings = await _siblings(conn, name)
            if not any(v.status is Status.LIVE for v in siblings):
                raise Conflict(
                    f"Model `{name}` has no live version for a canary to share traffic with.",
                    param="version",
                )
            if target.status not in (Status.STAGING, Status.CANARY):
                raise Conflict(
                    f"Version `{version}` of `{name}` is {target.status.value}; "
                    "only a staging version becomes a canary.",
                    param="version",
                )
            other = [v for v in siblings if v.status is Status.CANARY and v.version != version]
            if other:
                raise Conflict(
                    f"Model `{name}` already has a canary, version `{other[0].version}`: "
                    "promote it or roll it back first.",
                    param="version",
                )
            await _set(conn, target, Status.CANARY, share, actor, self._clock(), sticky=sticky)
            after = await _must_get(conn, name, version)
            await self._audit(conn, actor, "canary", after, target, after)
            return after

    async def promote(self, name: str, version: str, actor: str) -> ModelVersion:
        async with self._writer.begin() as conn:
            target = await _must_get(conn, name, version)
            if target.status is Status.LIVE:
                return target
            await self._promote(conn, target, actor, self._clock())
            return await _must_get(conn, name, version)

    async def rollback(
        self, name: str, actor: str, *, reason: str = "", canary: str | None = None
    ) -> ModelVersion:
        """Undo the last step: a canary goes back to staging; with none, the
        live version retires and the one it replaced is live again.
        ``canary``: roll back only this canary, and only while it still is
        one (an automatic rollback must not undo a promotion made meanwhile).
        Returns the version now serving the model's traffic."""
        async with self._writer.begin() as conn:
            siblings = await _siblings(conn, name)
            if not siblings:
                raise NotFound(f"No model `{name}` in the registry.", param="name")
            now = self._clock()
            live = [v for v in siblings if v.status is Status.LIVE]
            canaries = [v for v in siblings if v.status is Status.CANARY]
            if canary is not None:
                canaries = [v for v in canaries if v.version == canary]
                if not canaries:
                    raise Conflict(f"Version `{canary}` of `{name}` is not a canary any more.")
            if canaries:
                before = canaries[0]
                await _set(conn, before, Status.STAGING, 0.0, actor, now, sticky=False)
                after = await _must_get(conn, name, before.version)
                await self._audit(conn, actor, "rollback", after, before, after, reason=reason)
                if not live:
                    raise Conflict(f"Model `{name}` has no live version.")
                return live[0]
            retired = sorted(
                (v for v in siblings if v.status is Status.RETIRED),  # every one was live once
                key=lambda v: v.retired_at or 0.0,
            )
            if not live or not retired:
                raise Conflict(
                    f"Model `{name}` has no canary and no earlier live version to roll back to."
                )
            previous = retired[-1]
            for current in live:
                await _set(conn, current, Status.RETIRED, 0.0, actor, now, retired_at=now)
            await _set(conn, previous, Status.LIVE, 1.0, actor, now)
            after = await _must_get(conn, name, previous.version)
            detail = {"retired": [v.version for v in live]}
            await self._audit(
                conn, actor, "rollback", after, previous, after, reason=reason, **detail
            )
            return after

    async def _promote(
        self, conn: AsyncConnection, target: ModelVersion, actor: str, now: float
    ) -> None:
        siblings = await _siblings(conn, target.name)
        replaced = [v for v in siblings if v.status is Status.LIVE]
        for current in replaced:
            await _set(conn, current, Status.RETIRED, 0.0, actor, now, retired_at=now)
        await _set(conn, target, Status.LIVE, 1.0, actor, now, sticky=False)
        after = await _must_get(conn, target.name, target.version)
        detail = {"retired": [v.version for v in replaced]}
        await self._audit(conn, actor, "promote", after, target, after, **detail)

    async def _audit(
        self,
        conn: AsyncConnection,
        actor: str,
        action: str,
        target: ModelVersion,
        before: ModelVersion | None,
        after: ModelVersion | None,
        **detail: Any,
    ) -> None:
        record = {
            "before": _summary(before),
            "after": _summary(after),
            **{k: v for k, v in detail.items() if v},
        }
        await write_audit(
            conn,
            ts=self._clock(),
            actor=actor,
            area="registry",
            action=action,
            target=target.deployment_id,
            detail=record,
        )


def _summary(version: ModelVersion | None) -> dict[str, Any] | None:
    if version is None:
        return None
    summary = version.to_json()
    del summary["object"]
    return summary


async def _set(
    conn: AsyncConnection,
    version: ModelVersion,
    status: Status,
    share: float,
    actor: str,
    now: float,
    **columns: Any,
) -> None:
    """Move one version in its life cycle (the audit row is the caller's)."""
    await conn.execute(
        _where(version.name, version.version).values(
            status=status.value,
            traffic_share=share,
            updated_at=now,
            updated_by=actor,
            **columns,
        )
    )


def _where(name: str, version: str) -> sa.Update:
    return sa.update(model_versions).where(
        model_versions.c.name == name, model_versions.c.version == version
    )


def _encoded(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: orjson.dumps(value).decode() if key in _JSON_COLUMNS else value
        for key, value in values.items()
        if not (key == "description" and value is None)
    }


async def _get(conn: AsyncConnection, name: str, version: str) -> ModelVersion | None:
    query = sa.select(model_versions).where(
        model_versions.c.name == name, model_versions.c.version == version
    )
    row = (await conn.execute(query)).mappings().first()
    return _version(row) if row is not None else None


async def _must_get(conn: AsyncConnection, name: str, version: str) -> ModelVersion:
    found = await _get(conn, name, version)
    if found is None:
        raise NotFound(f"Model `{name}` has no version `{version}`.", param="version")
    return found


async def _siblings(conn: AsyncConnection, name: str) -> list[ModelVersion]:
    query = sa.select(model_versions).where(model_versions.c.name == name)
    return [_version(row) for row in (await conn.execute(query)).mappings().all()]


def _version(row: sa.RowMapping) -> ModelVersion:
    decoded = {k: orjson.loads(row[k]) for k in _JSON_COLUMNS}
    return ModelVersion(
        name=row["name"],
        version=row["version"],
        kind=row["kind"],
        provider=row["provider"],
        endpoint=row["endpoint"],
        upstream_model=row["upstream_model"],
        description=row["description"],
        status=Status(row["status"]),
        traffic_share=row["traffic_share"],
        sticky=bool(row["sticky"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
        retired_at=row["retired_at"],
        **decoded,
    )
