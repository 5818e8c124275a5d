from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from interlock.store.keys import KeyStore
from interlock.store.migrations import MIGRATIONS, Migration, migrate
from interlock.store.schema import api_keys, audit_log, schema_migrations, usage_ledger
from tests.store.conftest import Backend


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))


async def _versions(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        result = await conn.execute(sa.select(schema_migrations.c.version))
        return sorted(result.scalars())


async def test_migrate_creates_the_tables_once(backend: Backend) -> None:
    engine = backend.engine()
    assert await migrate(engine) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert await migrate(engine) == []
    assert await _versions(engine) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    assert await _tables(engine) >= {
        "api_keys",
        "usage_ledger",
        "schema_migrations",
        "files",
        "batches",
        "batch_items",
        "queue_messages",
        "responses",
    }


async def test_a_failing_migration_leaves_no_trace(backend: Backend) -> None:
    async def half_done(conn: AsyncConnection) -> None:
        await conn.execute(sa.text("CREATE TABLE half_done (x INTEGER)"))
        raise RuntimeError("step 2 broke")

    engine = backend.engine()
    with pytest.raises(RuntimeError, match="step 2 broke"):
        await migrate(engine, (*MIGRATIONS, Migration(99, "breaks", half_done)))
    # One transaction: the tables, the version table and the broken step's table are all gone.
    assert await _tables(engine) == set()
    assert await migrate(engine) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]


async def test_migrations_run_in_version_order(backend: Backend) -> None:
    seen: list[int] = []

    def step(version: int) -> Migration:
        async def apply(conn: AsyncConnection) -> None:
            seen.append(version)

        return Migration(version, f"v{version}", apply)

    engine = backend.engine()
    assert await migrate(engine, (step(14), *MIGRATIONS, step(13))) == [
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
        9,
        10,
        11,
        12,
        13,
        14,
    ]
    assert seen == [13, 14]
    assert await migrate(engine, (step(14), *MIGRATIONS, step(13), step(15))) == [15]


def _ledger_indexes(sync: sa.Connection) -> dict[str, tuple[list[str | None], bool]]:
    found = sa.inspect(sync).get_indexes("usage_ledger")
    return {str(i["name"]): (list(i["column_names"]), bool(i["unique"])) for i in found}


async def test_a_version_1_store_gains_the_budget_index_and_matches_the_schema(
    backend: Backend,
) -> None:
    engine = backend.engine()
    assert await migrate(engine, MIGRATIONS[:1]) == [1]
    assert await migrate(engine, MIGRATIONS[:2]) == [2]
    async with engine.connect() as conn:
        assert (await conn.run_sync(_ledger_indexes))["ix_usage_ledger_key_name_id"] == (
            ["key_name", "id"],
            False,
        )
    assert await migrate(engine) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    async with engine.connect() as conn:
        migrated = await conn.run_sync(_ledger_indexes)
    declared = {str(i.name): ([c.name for c in i.columns], i.unique) for i in usage_ledger.indexes}
    assert migrated == declared


async def test_a_version_3_ledger_gains_a_unique_record_id_and_keeps_its_rows(
    backend: Backend,
) -> None:
    engine = backend.engine()
    assert await migrate(engine, MIGRATIONS[:3]) == [1, 2, 3]
    old = {
        "ts": datetime(2025, 3, 1, tzinfo=UTC),
        "request_id": "r", "key_name": "k", "model": "m", "prompt_tokens": 1,
        "completion_tokens": 1, "cost_usd": 0.5, "latency_ms": 1.0, "status": 200,
        "cache_hit": False, "stream": False,
    }  # fmt: skip
    async with engine.begin() as conn:
        await conn.execute(usage_ledger.insert().values(old))
        await conn.execute(usage_ledger.insert().values(old))  # the same request id, twice
    assert await migrate(engine) == [4, 5, 6, 7, 8, 9, 10, 11, 12]

    def columns(sync: sa.Connection) -> set[str]:
        return {str(c["name"]) for c in sa.inspect(sync).get_columns("usage_ledger")}

    async with engine.connect() as conn:
        assert await conn.run_sync(columns) == {c.name for c in usage_ledger.columns}
        assert (await conn.run_sync(_ledger_indexes))["ix_usage_ledger_record_id"] == (
            ["record_id"],
            True,
        )
        rows = await conn.execute(sa.select(usage_ledger.c.record_id))
        assert list(rows.scalars()) == [None, None]  # NULLs never conflict


async def test_a_version_2_store_gains_key_guardrails_and_keeps_its_keys(backend: Backend) -> None:
    engine = backend.engine()
    assert await migrate(engine, MIGRATIONS[:2]) == [1, 2]
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        # Only version 2's columns: no value for guardrails is sent.
        await conn.execute(
            api_keys.insert().values(
                id="key_old", name="old", key_hash="h", key_prefix="sk-il-ab", tier="standard",
                limits={}, permissions=[], created_at=now, updated_at=now,
            )
        )  # fmt: skip
    assert await migrate(engine, MIGRATIONS[:3]) == [3]

    def columns(sync: sa.Connection) -> set[str]:
        return {str(c["name"]) for c in sa.inspect(sync).get_columns("api_keys")}

    async with engine.connect() as conn:
        assert await conn.run_sync(columns) == {c.name for c in api_keys.columns}
    old = await KeyStore(engine).get("key_old")
    assert old is not None and old.name == "old" and old.guardrails is None


async def test_a_version_9_audit_log_gains_an_area_and_its_rows_are_the_registrys(
    backend: Backend,
) -> None:
    engine = backend.engine()
    assert await migrate(engine, MIGRATIONS[:9]) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    async with engine.begin() as conn:
        # Only version 9's columns: no value for area is sent.
        await conn.execute(
            sa.text(
                "INSERT INTO audit_log (ts, actor, action, target, detail) "
                "VALUES (1.5, 'alice', 'create', 'm@1', '{}')"
            )
        )
    assert await migrate(engine) == [10, 11, 12]

    def shape(sync: sa.Connection) -> tuple[set[str], dict[str, list[str | None]]]:
        inspector = sa.inspect(sync)
        columns = {str(c["name"]) for c in inspector.get_columns("audit_log")}
        indexes = {
            str(i["name"]): list(i["column_names"]) for i in inspector.get_indexes("audit_log")
        }
        return columns, indexes

    async with engine.connect() as conn:
        columns, indexes = await conn.run_sync(shape)
        rows = (await conn.execute(sa.select(audit_log.c.target, audit_log.c.area))).all()
    assert columns == {c.name for c in audit_log.columns}
    assert indexes == {str(i.name): [c.name for c in i.columns] for i in audit_log.indexes}
    assert [tuple(row) for row in rows] == [("m@1", "registry")]
    async with engine.begin() as conn:  # a new row without an area is the registry's too
        await conn.execute(
            audit_log.insert().values(ts=2.0, actor="a", action="x", target="t", detail="{}")
        )
        areas = (await conn.execute(sa.select(audit_log.c.area))).scalars().all()
    assert areas == ["registry", "registry"]


async def test_gateways_starting_together_migrate_once(backend: Backend) -> None:
    engines = [backend.engine() for _ in range(4)]
    results = await asyncio.gather(*(migrate(engine) for engine in engines))
    assert sorted(results) == [[], [], [], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]]
    assert await _versions(engines[0]) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
