"""The stored responses, on SQLite and PostgreSQL (``tests/store``'s
``backend`` fixture: on CI a missing PostgreSQL is a failure): scoped to
the key, hidden once expired, deleted a bounded batch at a time."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.api.responses import _Keeper
from interlock.store import (
    ResponseStore,
    StoredResponse,
    create_engine,
    migrate,
    open_store,
)
from interlock.store.schema import responses
from interlock.store.sqlite_writer import SQLiteWriteThreads
from tests.store.conftest import Backend, backend, engine  # noqa: F401 (fixtures)
from tests.support.clock import FakeClock

DAY = 86_400
MakeStore = Callable[..., ResponseStore]


@pytest.fixture
async def stores(engine: AsyncEngine) -> AsyncIterator[MakeStore]:  # noqa: F811
    """Makes stores on ``engine`` and closes them before it is disposed: a
    flush a store has scheduled must not outlive the test's engine."""
    made: list[ResponseStore] = []

    def make(**settings: Any) -> ResponseStore:
        store = ResponseStore(engine, **settings)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.aclose()


def _record(
    response_id: str, key: str = "alice", created_at: int = 1_700_000_000
) -> StoredResponse:
    return StoredResponse(
        id=response_id,
        key_name=key,
        created_at=created_at,
        expires_at=created_at + 30 * DAY,
        input_items=[
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi ✓"}]}
        ],
        response={"id": response_id, "object": "response", "output": [{"type": "message"}]},
    )


async def _count(engine: AsyncEngine) -> int:  # noqa: F811 (the fixture's name)
    async with engine.connect() as conn:
        return int(
            (await conn.execute(sa.select(sa.func.count()).select_from(responses))).scalar_one()
        )


@pytest.fixture(params=["waiting", "written"])
def written(request: pytest.FixtureRequest) -> bool:
    """Each read test runs on a record still waiting in memory and on a written one."""
    return request.param == "written"


async def _saved(store: ResponseStore, record: StoredResponse, written: bool) -> None:
    await store.save(record)
    if written:
        await store.flush()


async def test_a_saved_response_reads_back_for_its_key_only(
    engine: AsyncEngine,  # noqa: F811
    written: bool,
    stores: MakeStore,
) -> None:
    store = stores(clock=FakeClock(1_700_000_000.0))
    record = _record("resp_1")
    await _saved(store, record, written)
    assert await _count(engine) == (1 if written else 0)
    assert await store.get("alice", "resp_1") == record
    assert await store.get("bob", "resp_1") is None
    assert await store.get("alice", "resp_2") is None


async def test_a_waiting_response_is_kept_as_written_not_as_the_callers_objects(
    written: bool,
    stores: MakeStore,
) -> None:
    # A waiting record is its row: the caller's dicts are let go at once
    # (not walked by the collector for the flush interval), and changing
    # them afterwards changes nothing stored.
    store = stores(clock=FakeClock(1_700_000_000.0))
    record = _record("resp_1")
    await _saved(store, record, written)
    record.response["output"].append({"type": "changed later"})
    record.input_items.clear()
    got = await store.get("alice", "resp_1")
    assert got is not None
    assert got.response["output"] == [{"type": "message"}]
    assert got.input_items[0]["content"][0]["text"] == "Hi ✓"
    assert got.response is not record.response


async def test_a_response_given_as_written_is_stored_as_it_is(
    written: bool,
    stores: MakeStore,
) -> None:
    # The stream's last event and a unary answer serialise the response
    # already; the store keeps those bytes instead of serialising it again.
    store = stores(clock=FakeClock(1_700_000_000.0))
    record = _record("resp_1")
    as_written = b'{"id":"resp_1","object":"response","output":[],"written":"by the edge"}'
    await _saved(store, replace(record, response_json=as_written), written)
    got = await store.get("alice", "resp_1")
    assert got is not None
    assert got.response["written"] == "by the edge"


async def test_delete_is_scoped_to_the_key(
    engine: AsyncEngine,  # noqa: F811
    written: bool,
    stores: MakeStore,
) -> None:
    store = stores(clock=FakeClock(1_700_000_000.0))
    await _saved(store, _record("resp_1"), written)
    assert await store.delete("bob", "resp_1") is False
    assert await store.delete("alice", "resp_1") is True
    assert await store.delete("alice", "resp_1") is False
    assert await store.get("alice", "resp_1") is None
    await store.flush()  # a record deleted while it waited is never written
    assert await _count(engine) == 0


async def test_an_expired_response_is_gone_for_reads_and_deletes(
    engine: AsyncEngine,  # noqa: F811
    written: bool,
    stores: MakeStore,
) -> None:
    clock = FakeClock(1_700_000_000.0)
    store = stores(clock=clock)
    await _saved(store, _record("resp_1"), written)
    clock.now += 30 * DAY - 1
    assert await store.get("alice", "resp_1") is not None
    clock.now += 1
    assert await store.get("alice", "resp_1") is None
    assert await store.delete("alice", "resp_1") is False


async def test_saves_sweep_a_bounded_batch_of_expired_rows(
    engine: AsyncEngine,  # noqa: F811
    stores: MakeStore,
) -> None:
    clock = FakeClock(1_700_000_000.0)
    store = stores(clock=clock, sweep_batch=3)
    for n in range(7):
        await store.save(_record(f"resp_old{n}"))
    await store.flush()
    clock.now += 31 * DAY
    await store.save(_record("resp_new", created_at=int(clock.now)))
    await store.flush()
    assert await _count(engine) == 8 - 3  # the new row, and 4 old ones left
    assert await store.sweep() == 3
    assert await store.sweep() == 1
    assert await store.sweep() == 0
    assert await _count(engine) == 1
    assert await store.get("alice", "resp_new") is not None


async def test_waiting_records_are_written_in_one_batch_and_bounded(
    engine: AsyncEngine,  # noqa: F811
    stores: MakeStore,
) -> None:
    # A long interval: nothing is written unless asked or full.
    store = stores(clock=FakeClock(1_700_000_000.0), flush_interval_s=3600, max_pending=5)
    for n in range(4):
        await store.save(_record(f"resp_{n}"))
    assert await _count(engine) == 0
    await store.save(_record("resp_4"))  # the fifth: written before save returns
    assert await _count(engine) == 5
    await store.save(_record("resp_5"))
    await store.aclose()  # what waits is written on close
    assert await _count(engine) == 6


async def test_the_store_opens_migrated_and_wired(backend: Backend) -> None:  # noqa: F811
    async with await open_store(backend.url, pg_schema=backend.pg_schema) as store:
        await store.responses.save(_record("resp_1", created_at=int(time.time())))
        assert (await store.responses.get("alice", "resp_1")) is not None


async def test_a_batch_written_twice_is_stored_once(
    engine: AsyncEngine,  # noqa: F811
    stores: MakeStore,
) -> None:
    # As when a flush committed and was then interrupted before it could
    # forget its records: the next flush writes them again, harmlessly.
    store = stores(clock=FakeClock(1_700_000_000.0), flush_interval_s=3600)
    record = _record("resp_1")
    await store.save(record)
    await store.flush()
    await store.save(record)
    await store.save(_record("resp_2"))
    await store.flush()
    assert await _count(engine) == 2
    assert await store.get("alice", "resp_1") == record


async def test_a_response_deleted_while_its_flush_is_writing_stays_deleted(
    engine: AsyncEngine,  # noqa: F811
    stores: MakeStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = stores(clock=FakeClock(1_700_000_000.0), flush_interval_s=3600)
    writing, release = asyncio.Event(), asyncio.Event()
    write = store._write

    async def held_write(batch: list[StoredResponse]) -> None:
        writing.set()
        await release.wait()
        await write(batch)

    monkeypatch.setattr(store, "_write", held_write)
    await store.save(_record("resp_1"))
    flush = asyncio.create_task(store.flush())
    try:
        await writing.wait()  # the flush holds the record, not yet committed
        deleting = asyncio.create_task(store.delete("alice", "resp_1"))
        await asyncio.sleep(0)  # the delete runs up to waiting for the flush
        assert not deleting.done()
    finally:
        release.set()
    await flush
    assert await deleting is True
    assert await store.get("alice", "resp_1") is None
    assert await _count(engine) == 0


async def test_an_answer_whose_store_is_locked_still_goes_out_and_is_written_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The SQLite batch writer raises sqlite3's errors, not SQLAlchemy's: the
    # keeper must treat them alike (log; the record waits for the next flush).
    path = tmp_path / "interlock.db"
    sqlite = create_engine(f"sqlite+aiosqlite:///{path}")
    await migrate(sqlite)
    threads = SQLiteWriteThreads(str(path), busy_timeout_s=0.05)
    store = ResponseStore(sqlite, max_pending=1, sqlite_threads=threads)
    keep = _Keeper("alice", [], [], store, 30 * DAY, None, None)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the file
        response = {"id": "resp_locked", "created_at": int(time.time()), "output": []}
        with caplog.at_level(logging.ERROR, "interlock.responses"):
            await keep(response, orjson.dumps(response))
        assert "could not store response resp_locked" in caplog.text
        holder.execute("COMMIT")
        await store.flush()
        assert await _count(sqlite) == 1
    finally:
        holder.close()
        await store.aclose()
        threads.dispose()
        await sqlite.dispose()
