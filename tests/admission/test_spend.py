"""Budget spend as a running total: one refresh at a time, only new rows read,
correct across instances and at the UTC day's rollover. Every test runs on
SQLite and PostgreSQL (``backend``); clocks are fakes, nothing sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.admission.gate import BudgetGuard
from interlock.admission.keys import Principal
from interlock.admission.spend import SpendTracker
from interlock.errors import TooManyRequests
from interlock.store import UsageLedger, UsageRecord, migrate
from interlock.store.ledger import SpendRange
from interlock.store.schema import usage_ledger
from tests.store.conftest import Backend

NOON = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
MakeLedger = Callable[..., UsageLedger]


class Ticks:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def spend_queries(engine: AsyncEngine) -> list[str]:
    """Every statement that sums the ledger, as the database receives it."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        statement = str(args[2])
        if "usage_ledger" in statement and "sum(" in statement:
            seen.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    return seen


async def write(ledger: UsageLedger, n: int, cost: float = 0.01, **fields: Any) -> None:
    for i in range(n):
        values: dict[str, Any] = {"ts": NOON, "key_name": "team-a", "model": "m"}
        values.update(fields)
        ledger.add(UsageRecord(request_id=f"r{i}", cost_usd=cost, **values))
    await ledger.flush()


async def insert_with_id(engine: AsyncEngine, row_id: int, cost: float) -> None:
    """A row whose id was allocated earlier than rows already visible (a late commit)."""
    async with engine.begin() as conn:
        await conn.execute(
            usage_ledger.insert().values(
                id=row_id, ts=NOON, request_id=f"late-{row_id}", key_name="team-a", model="m",
                prompt_tokens=0, completion_tokens=0, cost_usd=cost, latency_ms=0.0,
                status=200, cache_hit=False, stream=False,
            )
        )  # fmt: skip


def guard_for(ledger: UsageLedger, ticks: Ticks, now: Callable[[], datetime]) -> BudgetGuard:
    return BudgetGuard(lambda: ledger, cache_s=2.0, clock=ticks, now=now)


async def test_concurrent_checks_after_expiry_query_the_store_once(
    engine: AsyncEngine, make_ledger: MakeLedger
) -> None:
    ledger, ticks = make_ledger(), Ticks()
    await write(ledger, 50)
    guard = guard_for(ledger, ticks, lambda: NOON)
    key = Principal("team-a", budget_usd_day=100.0, budget_usd_month=1000.0)
    queries = spend_queries(engine)

    # No value yet: the 32 wait on one seed per period.
    await asyncio.gather(*(guard.check(key) for _ in range(32)))
    assert len(queries) == 2  # day and month

    ticks.t += 2.0  # expired
    await asyncio.gather(*(guard.check(key) for _ in range(32)))
    assert len(queries) == 4
    assert guard.spend.queries == 4

    await asyncio.gather(*(guard.check(key) for _ in range(32)))
    assert len(queries) == 4  # fresh again


async def test_a_refresh_reads_only_rows_newer_than_it_has_seen(make_ledger: MakeLedger) -> None:
    ledger, ticks = make_ledger(), Ticks()
    tracker = SpendTracker(lambda: ledger, refresh_s=2.0, settle_s=60.0, clock=ticks)
    await write(ledger, 1000)
    assert await tracker.spent("team-a", "day", NOON) == pytest.approx(10.0)
    assert tracker.rows_read == 1000  # the seed sums the period once

    await write(ledger, 10)
    ticks.t += 2.0
    assert await tracker.spent("team-a", "day", NOON) == pytest.approx(10.1)
    assert tracker.rows_read == 1010  # the new rows only

    await write(ledger, 5)
    ticks.t += 60.0  # the first increment settles: its 10 rows are read once more
    assert await tracker.spent("team-a", "day", NOON) == pytest.approx(10.15)
    assert tracker.rows_read == 1025
    assert tracker.queries == 3


async def test_a_row_committed_below_the_last_id_seen_counts_once_settled(
    engine: AsyncEngine, make_ledger: MakeLedger
) -> None:
    ledger, ticks = make_ledger(), Ticks()
    tracker = SpendTracker(lambda: ledger, refresh_s=2.0, settle_s=60.0, clock=ticks)
    await insert_with_id(engine, 10, 1.0)
    assert await tracker.spent("team-a", "day", NOON) == 1.0
    await insert_with_id(engine, 30, 2.0)
    ticks.t += 2.0
    assert await tracker.spent("team-a", "day", NOON) == 3.0
    await insert_with_id(engine, 20, 4.0)  # its writer committed after id 30's
    ticks.t += 2.0
    assert await tracker.spent("team-a", "day", NOON) == 3.0  # not yet: id 30 was seen
    ticks.t += 60.0
    assert await tracker.spent("team-a", "day", NOON) == 7.0  # the settle re-read finds it
    ticks.t += 60.0
    assert await tracker.spent("team-a", "day", NOON) == 7.0  # and counts it once


async def test_the_day_rolls_over_at_utc_midnight(
    engine: AsyncEngine, make_ledger: MakeLedger
) -> None:
    ledger, ticks = make_ledger(), Ticks()
    wall = [datetime(2025, 3, 1, 23, 59, 59, tzinfo=UTC)]
    guard = guard_for(ledger, ticks, lambda: wall[0])
    key = Principal("team-a", budget_usd_day=1.0, budget_usd_month=100.0)
    await write(ledger, 1, cost=1.5, ts=datetime(2025, 3, 1, 23, 0, tzinfo=UTC))
    with pytest.raises(TooManyRequests) as refused:
        await guard.check(key)
    assert refused.value.retry_after_s == 1.0

    wall[0] = datetime(2025, 3, 2, 0, 0, 1, tzinfo=UTC)  # a new day, the cache still fresh
    await guard.check(key)
    # Yesterday's row written late (a retried batch) is not today's spend.
    await write(ledger, 1, cost=5.0, ts=datetime(2025, 3, 1, 23, 59, tzinfo=UTC))
    ticks.t += 2.0
    await guard.check(key)
    assert await guard.spend.spent("team-a", "month", datetime(2025, 3, 1, tzinfo=UTC)) == 6.5
    await write(ledger, 1, cost=1.0, ts=wall[0])
    ticks.t += 2.0
    with pytest.raises(TooManyRequests):
        await guard.check(key)


async def test_spend_by_another_instance_counts(backend: Backend, engine: AsyncEngine) -> None:
    """Two gateways, each with its own pool, ledger and guard, on one store."""
    other_engine = backend.engine()
    await migrate(other_engine)
    here, there = UsageLedger(engine), UsageLedger(other_engine)
    ticks = Ticks()
    guards = [guard_for(ledger, ticks, lambda: NOON) for ledger in (here, there)]
    key = Principal("team-a", budget_usd_day=1.0)
    try:
        await write(here, 40, cost=0.01)
        for guard in guards:
            await guard.check(key)
        await write(there, 30, cost=0.01)
        await write(here, 30, cost=0.01)
        ticks.t += 2.0
        for guard in guards:
            with pytest.raises(TooManyRequests):
                await guard.check(key)
            assert await guard.spend.spent("team-a", "day", NOON) == pytest.approx(1.0)
    finally:
        await here.aclose()
        await there.aclose()


async def test_a_failed_refresh_keeps_the_last_value_for_the_others(
    backend: Backend, make_ledger: MakeLedger
) -> None:
    ledger, ticks = make_ledger(), Ticks()
    tracker = SpendTracker(lambda: ledger, refresh_s=2.0, clock=ticks)
    await write(ledger, 3, cost=1.0)
    assert await tracker.spent("team-a", "day", NOON) == 3.0
    await backend.sql("ALTER TABLE usage_ledger RENAME TO usage_ledger_gone")
    ticks.t += 2.0
    refresher = asyncio.ensure_future(tracker.spent("team-a", "day", NOON))
    await asyncio.sleep(0)
    assert await tracker.spent("team-a", "day", NOON) == 3.0  # while the refresh runs
    with pytest.raises(sa.exc.DBAPIError):
        await refresher
    await backend.sql("ALTER TABLE usage_ledger_gone RENAME TO usage_ledger")
    await write(ledger, 1, cost=1.0)
    assert await tracker.spent("team-a", "day", NOON) == 4.0  # the next caller retries


class HeldLedger:
    """A ledger whose spend query answers only when ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def spend_seed(self, key_name: str, since: datetime) -> SpendRange:
        await self.release.wait()
        return SpendRange(cost=2.5, last_id=7, rows=1)


async def test_settle_waits_for_a_refresh_whose_caller_went_away() -> None:
    ledger = HeldLedger()
    tracker = SpendTracker(lambda: ledger, clock=Ticks())  # type: ignore[arg-type, return-value]
    caller = asyncio.ensure_future(tracker.spent("team-a", "day", NOON))
    await asyncio.sleep(0)
    caller.cancel()  # a client disconnecting mid-check
    await asyncio.sleep(0)
    settling = asyncio.ensure_future(tracker.settle())
    await asyncio.sleep(0.01)
    assert not settling.done()  # the refresh still holds its connection
    ledger.release.set()
    await asyncio.wait_for(settling, 1)
    assert tracker.fresh("team-a", "day", NOON) == 2.5  # it ran to the end
    await tracker.settle()  # nothing in flight: returns at once
