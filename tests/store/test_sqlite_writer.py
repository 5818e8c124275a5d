"""The usage ledger's SQLite writer threads: priority, catch-up, transactions, shutdown."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.store import (
    StoredResponse,
    UsageLedger,
    UsageRecord,
    create_engine,
    migrate,
    open_store,
)
from interlock.store.sqlite_writer import (
    BACKGROUND_NICE,
    SQLiteBatchWriter,
    SQLiteWriteThreads,
    lower_thread_priority,
    sqlite_time,
)

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="threads have their own nice value on Linux only"
)


def usage(i: int) -> UsageRecord:
    ts = datetime(2025, 3, 1, tzinfo=UTC)
    return UsageRecord(ts=ts, request_id=f"req-{i}", key_name="team-a", model="m")


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'interlock.db'}")
    await migrate(engine)
    yield engine
    await engine.dispose()


class Writers:
    """Which thread committed each batch, and at what nice value (``on_connect``
    runs on the thread that opens the connection, and traces its statements)."""

    def __init__(self, ledger: UsageLedger):
        self.commits: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        assert ledger._sqlite is not None
        ledger._sqlite.threads.on_connect = self._connected

    def _connected(self, connection: sqlite3.Connection) -> None:
        connection.set_trace_callback(self._traced)

    def _traced(self, statement: str) -> None:
        if statement == "COMMIT":
            nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            with self._lock:
                self.commits.append((threading.current_thread().name, nice))


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        rows = await conn.exec_driver_sql("SELECT count(*) FROM usage_ledger")
        return int(rows.scalar_one())


@linux_only
async def test_batches_are_written_by_a_nice_19_thread(engine: AsyncEngine) -> None:
    ledger = UsageLedger(engine, max_batch=5)
    writers = Writers(ledger)
    for i in range(12):
        ledger.add(usage(i))
    await ledger.flush()
    await ledger.aclose()
    assert [nice for _, nice in writers.commits] == [BACKGROUND_NICE] * 3
    assert all(name.startswith("interlock-ledger_") for name, _ in writers.commits)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) != BACKGROUND_NICE


async def test_a_ledger_behind_catches_up_at_normal_priority(engine: AsyncEngine) -> None:
    ledger = UsageLedger(engine, max_batch=5, catch_up_at=20)
    writers = Writers(ledger)
    for i in range(32):
        ledger.add(usage(i))
    await ledger.flush()
    # 32, 27 and 22 pending: behind; then 17, 12, 7 and 2: caught up.
    names = [name.rsplit("_", 1)[0] for name, _ in writers.commits]
    assert names == ["interlock-ledger-catch-up"] * 3 + ["interlock-ledger"] * 4
    assert (ledger.catch_up_batches, ledger.written) == (3, 32)
    await ledger.aclose()
    assert await _count(engine) == 32


async def test_what_is_left_at_close_is_written_at_normal_priority(engine: AsyncEngine) -> None:
    ledger = UsageLedger(engine, max_batch=5)
    writers = Writers(ledger)
    ledger.start()
    for i in range(7):
        ledger.add(usage(i))
    await ledger.aclose()
    assert [name.rsplit("_", 1)[0] for name, _ in writers.commits] == [
        "interlock-ledger-catch-up"
    ] * 2
    assert await _count(engine) == 7


async def test_the_writer_threads_end_with_the_ledger(engine: AsyncEngine) -> None:
    # An earlier test's ledger may still be ending its threads (they are not
    # joined at close): only the ones this ledger starts are counted.
    before = set(threading.enumerate())
    ledger = UsageLedger(engine, max_batch=5, catch_up_at=5)
    for i in range(7):  # one batch behind (catch-up thread), one not (background)
        ledger.add(usage(i))
    await ledger.flush()
    threads = [
        t
        for t in threading.enumerate()
        if t.name.startswith("interlock-ledger") and t not in before
    ]
    assert len(threads) == 2
    await ledger.aclose()
    for thread in threads:
        thread.join(timeout=5)
    assert not any(t.is_alive() for t in threads)


async def test_a_failed_batch_leaves_no_rows_and_the_next_one_commits(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    columns = ("ts", "request_id", "key_name", "model", "prompt_tokens", "completion_tokens")
    threads = SQLiteWriteThreads(str(tmp_path / "interlock.db"))
    writer = SQLiteBatchWriter(
        threads,
        "usage_ledger",
        (*columns, "cost_usd", "latency_ms", "status", "cache_hit", "stream"),
    )
    ts = "2025-03-01 00:00:00.000000"
    good: tuple[Any, ...] = (ts, "r1", "k", "m", 1, 2, 0.5, 1.0, 200, 0, 0)
    bad = (good[0], "r2", None, *good[3:])  # key_name is NOT NULL
    try:
        with pytest.raises(sqlite3.IntegrityError):
            await writer.insert([good, bad])
        assert await _count(engine) == 0
        await writer.insert([good])  # not left inside the failed transaction
        assert await _count(engine) == 1
    finally:
        threads.dispose()


@pytest.mark.parametrize(
    "value",
    [
        datetime(2025, 3, 1, 23, 0, tzinfo=UTC),  # no microseconds: still six digits
        datetime(2025, 3, 1, 23, 0, 0, 123456, tzinfo=UTC),
        datetime(2025, 3, 2, 8, 30, 0, 5, tzinfo=timezone(timedelta(hours=9))),
    ],
)
def test_times_are_stored_as_sqlalchemy_stores_them(value: datetime) -> None:
    assert sqlite_time(value) == value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


@linux_only
def test_lowering_a_threads_priority_leaves_the_others_alone() -> None:
    seen: list[int] = []

    def lowered() -> None:
        lower_thread_priority()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread = threading.Thread(target=lowered)
    thread.start()
    thread.join()
    assert seen == [BACKGROUND_NICE]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


@linux_only
async def test_the_ledger_and_the_stored_responses_share_one_writer_per_file(
    tmp_path: Path,
) -> None:
    # Two background writers on one file took turns holding its write lock;
    # starved, the one waiting ran out its busy timeout ("database is locked").
    url = f"sqlite+aiosqlite:///{tmp_path / 'interlock.db'}"
    async with await open_store(url, ledger_journal_dir=tmp_path / "journal") as store:
        assert store.sqlite_threads is not None
        commits: list[str] = []
        store.sqlite_threads.on_connect = lambda connection: connection.set_trace_callback(
            lambda statement: (
                commits.append(threading.current_thread().name) if statement == "COMMIT" else None
            )
        )
        store.ledger.add(usage(1))
        await store.ledger.flush()
        await store.responses.save(
            StoredResponse("resp_1", "team-a", 1, 2**31, [], {"id": "resp_1"})
        )
        await store.responses.flush()
        assert len(commits) == 2
        assert {name.rsplit("_", 1)[0] for name in commits} == {"interlock-sqlite"}
        assert len(set(commits)) == 1
        threads = [t for t in threading.enumerate() if t.name.startswith("interlock-sqlite")]
    for thread in threads:  # closed with the store
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in threads)


async def test_a_catch_up_batch_waits_for_the_batch_in_flight_not_on_the_lock(
    tmp_path: Path,
) -> None:
    # A starved background batch held the file's write lock while the
    # catch-up thread's batch ran out its busy timeout ("database is locked").
    threads = SQLiteWriteThreads(str(tmp_path / "interlock.db"), busy_timeout_s=0.05)
    holding, release = threading.Event(), threading.Event()
    steps: list[str] = []

    def slow(connection: sqlite3.Connection) -> None:
        connection.execute("BEGIN IMMEDIATE")
        steps.append("slow holds the lock")
        holding.set()
        release.wait(timeout=30)
        connection.execute("CREATE TABLE t (x)")
        connection.execute("COMMIT")
        steps.append("slow committed")

    def urgent(connection: sqlite3.Connection) -> None:
        steps.append("urgent starts")
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO t VALUES (1)")
        connection.execute("COMMIT")

    try:
        first = asyncio.create_task(threads.run(slow))
        await asyncio.to_thread(holding.wait, 30)
        second = asyncio.create_task(threads.run(urgent, catch_up=True))
        # Longer than the busy timeout: time for the wrong order to fail.
        await asyncio.sleep(0.3)
        release.set()
        await asyncio.gather(first, second)
        assert steps == ["slow holds the lock", "slow committed", "urgent starts"]
    finally:
        release.set()
        threads.dispose()


async def test_a_cancelled_caller_leaves_its_batch_the_turn_until_it_is_done(
    tmp_path: Path,
) -> None:
    threads = SQLiteWriteThreads(str(tmp_path / "interlock.db"))
    holding, release = threading.Event(), threading.Event()
    steps: list[str] = []

    def slow(connection: sqlite3.Connection) -> None:
        holding.set()
        release.wait(timeout=30)
        steps.append("slow done")

    try:
        first = asyncio.create_task(threads.run(slow))
        await asyncio.to_thread(holding.wait, 30)
        first.cancel()
        second = asyncio.create_task(
            threads.run(lambda connection: steps.append("next"), catch_up=True)
        )
        await asyncio.sleep(0.1)
        release.set()
        await second
        assert steps == ["slow done", "next"]
        assert first.cancelled()
    finally:
        release.set()
        threads.dispose()
