from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.store import UsageLedger, UsageRecord
from interlock.store.schema import usage_ledger
from tests.store.conftest import Backend

T0 = datetime(2025, 3, 1, 23, 0, tzinfo=UTC)
MakeLedger = Callable[..., UsageLedger]


def usage(i: int = 0, **fields: Any) -> UsageRecord:
    values: dict[str, Any] = {
        "ts": T0,
        "request_id": f"req-{i}",
        "key_name": "team-a",
        "model": "gpt-4o",
        "key_id": "key_a",
        "deployment": "gpt-4o-east",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_usd": 0.25,
        "latency_ms": 12.5,
    }
    values.update(fields)
    return UsageRecord(**values)


async def _request_ids(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        query = sa.select(usage_ledger.c.request_id).order_by(usage_ledger.c.id)
        return list((await conn.execute(query)).scalars())


class Writes:
    """Counts the ledger's commits, and its transactions that inserted (one
    ``executemany`` each); ``wait`` awaits commits.

    On SQLite the ledger commits on its own connections, in writer threads:
    their trace callback sees each statement (an ``executemany`` runs its
    INSERT once per row) and hands it to the event loop. Elsewhere the async
    engine's hooks run on the event loop's thread. Either way a commit is
    counted just *before* it is done: to read the rows, wait for the writer
    to finish (``ledger.flush()``).
    """

    def __init__(self, engine: AsyncEngine, ledger: UsageLedger):
        self.commits = 0
        self.executemany = 0
        self._inserting = False
        self._committed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if ledger._sqlite is not None:
            ledger._sqlite.threads.on_connect = lambda c: c.set_trace_callback(self._traced)
        else:
            event.listen(engine.sync_engine, "commit", self._commit)
            event.listen(engine.sync_engine, "before_cursor_execute", self._execute)

    async def wait(self, commits: int) -> None:
        async with asyncio.timeout(5):
            while self.commits < commits:
                self._committed.clear()
                await self._committed.wait()

    def _traced(self, statement: str) -> None:  # on a writer thread
        self._loop.call_soon_threadsafe(self._statement, statement)

    def _statement(self, statement: str) -> None:
        if statement.startswith("BEGIN"):
            self._inserting = False
        elif statement.startswith("INSERT INTO usage_ledger") and not self._inserting:
            self._inserting = True
            self.executemany += 1
        elif statement == "COMMIT":
            self._count_commit()

    def _commit(self, conn: Any) -> None:
        self._loop.call_soon_threadsafe(self._count_commit)

    def _count_commit(self) -> None:
        self.commits += 1
        self._committed.set()

    def _execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if args[-1] and statement.startswith("INSERT INTO usage_ledger"):
            self.executemany += 1


async def test_a_thousand_adds_are_all_written_by_aclose(
    engine: AsyncEngine, make_ledger: MakeLedger
) -> None:
    ledger = make_ledger()
    writes = Writes(engine, ledger)
    ledger.start()
    for i in range(1000):
        ledger.add(usage(i, prompt_tokens=i, completion_tokens=2 * i, cache_hit=i % 4 == 0))
    await ledger.aclose()
    assert (ledger.pending, ledger.written, ledger.dropped) == (0, 1000, 0)
    assert await _request_ids(engine) == [f"req-{i}" for i in range(1000)]
    assert await ledger.query() == [
        {
            "requests": 1000,
            "prompt_tokens": 499_500,
            "completion_tokens": 999_000,
            "cost_usd": 250.0,
            "cache_hits": 250,
            "units": 0,
            "unpriced_requests": 0,
        }
    ]
    assert 2 <= writes.commits <= 3  # two batches of 500 (and at most one early one)
    assert writes.executemany == writes.commits


async def test_batches_are_one_transaction_each(
    engine: AsyncEngine, make_ledger: MakeLedger
) -> None:
    ledger = make_ledger(max_batch=100)
    writes = Writes(engine, ledger)
    for i in range(1000):
        ledger.add(usage(i))
    await ledger.flush()
    assert (writes.commits, writes.executemany) == (10, 10)


async def test_a_full_batch_is_written_without_waiting_for_the_interval(
    engine: AsyncEngine, make_ledger: MakeLedger
) -> None:
    ledger = make_ledger(max_batch=10, flush_interval_s=3600)
    writes = Writes(engine, ledger)
    ledger.start()
    for i in range(9):
        ledger.add(usage(i))
    await asyncio.sleep(0.05)
    assert writes.commits == 0
    ledger.add(usage(9))
    await writes.wait(1)
    await ledger.flush()  # the writer's own flush holds the lock until it commits
    assert writes.commits == 1
    assert await _request_ids(engine) == [f"req-{i}" for i in range(10)]


async def test_a_partial_batch_is_written_after_the_interval(
    engine: AsyncEngine, make_ledger: MakeLedger
) -> None:
    ledger = make_ledger(flush_interval_s=0.02)
    writes = Writes(engine, ledger)
    ledger.start()
    ledger.add(usage())
    await writes.wait(1)
    await ledger.flush()
    assert writes.commits == 1
    assert await _request_ids(engine) == ["req-0"]


async def test_a_full_buffer_refuses_new_records_and_says_so(
    engine: AsyncEngine, make_ledger: MakeLedger, caplog: pytest.LogCaptureFixture
) -> None:
    ledger = make_ledger(max_batch=5, max_pending=10)
    with caplog.at_level(logging.ERROR, "interlock.store"):
        for i in range(15):
            ledger.add(usage(i))
        assert (ledger.pending, ledger.dropped) == (10, 5)
        assert "dropping usage records" in caplog.text
        await ledger.flush()
    assert "dropped 5 records" in caplog.text
    # The oldest were kept: the ledger stays a clean prefix of what happened.
    assert await _request_ids(engine) == [f"req-{i}" for i in range(10)]


async def test_records_added_after_aclose_are_counted_as_dropped(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    await ledger.aclose()
    ledger.add(usage())
    assert (ledger.pending, ledger.dropped) == (0, 1)


async def test_failed_writes_keep_the_batch_and_retry_until_the_database_recovers(
    backend: Backend, engine: AsyncEngine, make_ledger: MakeLedger
) -> None:
    await backend.sql("ALTER TABLE usage_ledger RENAME TO usage_ledger_away")
    delays: list[float] = []
    pending_while_down: list[int] = []

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        pending_while_down.append(ledger.pending)
        if len(delays) == 3:
            await backend.sql("ALTER TABLE usage_ledger_away RENAME TO usage_ledger")

    ledger = make_ledger(max_batch=10, retry_initial_s=0.1, retry_max_s=0.3, sleep=sleep)
    for i in range(25):
        ledger.add(usage(i))
    await ledger.flush()
    assert delays == [0.1, 0.2, 0.3]
    assert pending_while_down == [25, 25, 25]
    assert (ledger.write_failures, ledger.written, ledger.dropped) == (3, 25, 0)
    assert await _request_ids(engine) == [f"req-{i}" for i in range(25)]


async def test_aclose_gives_up_at_its_deadline_and_counts_the_loss(
    backend: Backend, make_ledger: MakeLedger, caplog: pytest.LogCaptureFixture
) -> None:
    await backend.sql("DROP TABLE usage_ledger")
    ledger = make_ledger(retry_initial_s=0.005, close_timeout_s=0.1)
    ledger.start()
    for i in range(3):
        ledger.add(usage(i))
    with caplog.at_level(logging.ERROR, "interlock.store"):
        await ledger.aclose()
    assert (ledger.pending, ledger.dropped) == (0, 3)
    assert ledger.write_failures >= 1
    assert "3 records unwritten" in caplog.text


async def test_query_groups_and_filters(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    next_day = T0 + timedelta(hours=2)  # 01:00 UTC on March 2nd
    for record in [
        usage(1, key_name="a", model="m1", cost_usd=1.0, cache_hit=True),
        usage(2, key_name="a", model="m2", cost_usd=2.0),
        usage(3, key_name="b", model="m1", cost_usd=4.0, ts=next_day, prompt_tokens=7),
        usage(4, key_name="b", model="m1", cost_usd=8.0, ts=next_day + timedelta(days=1)),
    ]:
        ledger.add(record)
    await ledger.flush()

    def pick(rows: list[dict[str, Any]], *names: str) -> list[tuple[Any, ...]]:
        return [tuple(row[n] for n in names) for row in rows]

    by_key = await ledger.query(group_by="key")
    assert pick(by_key, "key", "requests", "cost_usd", "cache_hits") == [
        ("a", 2, 3.0, 1),
        ("b", 2, 12.0, 0),
    ]
    by_model = await ledger.query(group_by="model")
    assert pick(by_model, "model", "requests", "prompt_tokens") == [("m1", 3, 27), ("m2", 1, 10)]
    by_day = await ledger.query(group_by="day")
    assert pick(by_day, "day", "requests", "cost_usd") == [
        ("2025-03-01", 2, 3.0),
        ("2025-03-02", 1, 4.0),
        ("2025-03-03", 1, 8.0),
    ]
    window = await ledger.query(since=next_day, until=next_day + timedelta(days=1))
    assert pick(window, "requests", "cost_usd") == [(1, 4.0)]
    filtered = await ledger.query(key_name="b", model="m1", group_by="day")
    assert pick(filtered, "day", "requests") == [("2025-03-02", 1), ("2025-03-03", 1)]
    assert await ledger.query(key_name="nobody") == [
        {
            "requests": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost_usd": 0.0,
            "cache_hits": 0,
            "units": 0,
            "unpriced_requests": 0,
        }
    ]
    assert await ledger.query(key_name="nobody", group_by="key") == []


async def test_days_are_utc_whatever_the_offset_given(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    tokyo = datetime(2025, 3, 2, 8, 0, tzinfo=UTC).astimezone(ZoneInfo("Asia/Tokyo"))
    ledger.add(usage(ts=tokyo))  # 17:00 on March 2nd in Tokyo is 08:00 UTC
    await ledger.flush()
    assert [row["day"] for row in await ledger.query(group_by="day")] == ["2025-03-02"]
    assert await ledger.query(since=datetime(2025, 3, 2, 8, 0, 1, tzinfo=UTC)) == [
        {
            "requests": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cost_usd": 0.0,
            "cache_hits": 0,
            "units": 0,
            "unpriced_requests": 0,
        }
    ]


async def test_spend_sums_one_keys_cost_since_a_time(make_ledger: MakeLedger) -> None:
    ledger = make_ledger()
    ledger.add(usage(1, key_name="a", cost_usd=0.5, ts=T0 - timedelta(days=1)))
    ledger.add(usage(2, key_name="a", cost_usd=0.25))
    ledger.add(usage(3, key_name="a", cost_usd=0.125, ts=T0 + timedelta(hours=1)))
    ledger.add(usage(4, key_name="b", cost_usd=100.0))
    await ledger.flush()
    assert await ledger.spend("a", T0) == 0.375
    assert await ledger.spend("a", T0, until=T0 + timedelta(minutes=1)) == 0.25
    assert await ledger.spend("a", T0 - timedelta(days=2)) == 0.875
    assert await ledger.spend("nobody", T0) == 0.0


def test_records_need_aware_timestamps() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        usage(ts=datetime(2025, 3, 1))


def test_the_buffer_bound_must_hold_a_batch(engine: AsyncEngine) -> None:
    with pytest.raises(ValueError):
        UsageLedger(engine, max_batch=10, max_pending=5)


async def test_records_added_during_a_flush_wait_for_the_next_one(
    engine: AsyncEngine, make_ledger: MakeLedger
) -> None:
    ledger = make_ledger(max_batch=10)
    for i in range(3):
        ledger.add(usage(i))
    flushing = asyncio.create_task(ledger.flush())
    await asyncio.sleep(0)  # the flush is now waiting for its first write
    for i in range(3, 25):
        ledger.add(usage(i))
    await flushing
    # The batch in flight holds the 3 that were pending; the 22 newer wait.
    assert (ledger.written, ledger.pending) == (3, 22)
    await ledger.flush()
    assert (ledger.written, ledger.pending) == (25, 0)
    assert await _request_ids(engine) == [f"req-{i}" for i in range(25)]
