"""The usage ledger's journal: group commit, clean-up after commit, replay after a kill."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.store import UsageLedger, UsageRecord, journal_dir, open_store
from interlock.store.journal import LedgerJournal, dead_journals
from interlock.store.schema import usage_ledger
from interlock.store.usage_rows import COLUMNS
from tests.store.conftest import Backend

T0 = datetime(2025, 3, 1, 23, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]


def usage(i: int) -> UsageRecord:
    return UsageRecord(T0, f"req-{i}", "team-a", "m", cost_usd=0.5)


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "journal"


@pytest.fixture
async def journaled(engine: AsyncEngine) -> AsyncIterator[list[UsageLedger]]:
    """Journaled ledgers on the test's engine, closed before the engine goes."""
    made: list[UsageLedger] = []
    yield made
    for ledger in made:
        await ledger.aclose()


def _ledger(
    made: list[UsageLedger], engine: AsyncEngine, directory: Path, **options: Any
) -> UsageLedger:
    ledger = UsageLedger(engine, journal=LedgerJournal(directory, COLUMNS), **options)
    made.append(ledger)
    return ledger


def _files(directory: Path) -> list[str]:
    return sorted(path.suffix for path in directory.iterdir())


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.jnl"))


def _journaled_ids(directory: Path) -> list[str]:
    """The request ids in the journal's segments, in order (after each header)."""
    index = COLUMNS.index("request_id")
    ids = []
    for segment in _segments(directory):
        header, *lines = segment.read_bytes().splitlines()
        assert orjson.loads(header) == {"journal": 1, "columns": list(COLUMNS)}
        ids += [orjson.loads(line)[index] for line in lines]
    return ids


async def _rows(engine: AsyncEngine) -> list[tuple[str, str]]:
    async with engine.connect() as conn:
        query = sa.select(usage_ledger.c.request_id, usage_ledger.c.record_id).order_by(
            usage_ledger.c.id
        )
        return [(row[0], row[1]) for row in await conn.execute(query)]


async def _crash(backend: Backend, directory: Path, count: int, *, committed: bool) -> None:
    """A process journals ``count`` records (and commits them) and is killed."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.crashed_ledger", backend.url,
        backend.pg_schema or "-", str(directory), str(count), "1" if committed else "0",
        cwd=REPO,
    )  # fmt: skip
    async with asyncio.timeout(60):
        assert await child.wait() == -signal.SIGKILL


async def test_records_are_journaled_together_at_the_end_of_the_loop_turn(
    engine: AsyncEngine, directory: Path, journaled: list[UsageLedger]
) -> None:
    ledger = _ledger(journaled, engine, directory)
    for i in range(100):
        ledger.add(usage(i))
    assert _journaled_ids(directory) == []  # not one write per record
    await asyncio.sleep(0)
    assert _journaled_ids(directory) == [f"req-{i}" for i in range(100)]
    for i in range(100, 150):
        ledger.add(usage(i))
    await asyncio.sleep(0)
    assert _journaled_ids(directory) == [f"req-{i}" for i in range(150)]
    assert len(_segments(directory)) == 1


async def test_a_segment_is_deleted_once_its_records_are_committed(
    engine: AsyncEngine, directory: Path, journaled: list[UsageLedger]
) -> None:
    ledger = _ledger(journaled, engine, directory, max_batch=10)
    for i in range(20):
        ledger.add(usage(i))
    await asyncio.sleep(0)
    flushing = asyncio.create_task(ledger.flush())
    await asyncio.sleep(0)  # the flush started a new segment and waits for its first write
    for i in range(20, 25):
        ledger.add(usage(i))
    await flushing
    # The first segment is committed and gone; the records that came during
    # the flush wait in a second one for the next flush.
    assert (ledger.written, ledger.pending) == (20, 5)
    assert _journaled_ids(directory) == [f"req-{i}" for i in range(20, 25)]
    await ledger.flush()
    assert _segments(directory) == []
    await ledger.aclose()
    assert _files(directory) == []  # the lock file too
    assert [r for r, _ in await _rows(engine)] == [f"req-{i}" for i in range(25)]


async def test_the_journal_is_bounded_like_the_buffer(
    engine: AsyncEngine, directory: Path, journaled: list[UsageLedger]
) -> None:
    ledger = _ledger(journaled, engine, directory, max_batch=5, max_pending=10)
    for i in range(15):
        ledger.add(usage(i))
    await asyncio.sleep(0)
    assert (ledger.pending, ledger.dropped) == (10, 5)
    assert _journaled_ids(directory) == [f"req-{i}" for i in range(10)]


async def test_a_live_process_journal_is_not_replayed(
    engine: AsyncEngine, directory: Path, journaled: list[UsageLedger]
) -> None:
    ledger = _ledger(journaled, engine, directory)
    ledger.add(usage(0))
    await asyncio.sleep(0)
    assert dead_journals(directory) == []  # its flock is held (by another open file here)
    assert dead_journals(directory / "nowhere") == []


async def test_a_killed_process_journal_is_replayed_then_deleted(
    backend: Backend, engine: AsyncEngine, directory: Path, journaled: list[UsageLedger]
) -> None:
    await _crash(backend, directory, 1200, committed=False)
    assert await _rows(engine) == []
    assert len(_journaled_ids(directory)) == 1200
    ledger = _ledger(journaled, engine, directory)
    assert await ledger.replay(dead_journals(directory)) == 1200
    rows = await _rows(engine)
    assert [r for r, _ in rows] == [f"req-{i}" for i in range(1200)]
    assert len({record_id for _, record_id in rows}) == 1200
    # Only this ledger's own lock is left.
    assert _files(directory) == [".lock"]
    assert await ledger.spend("team-a", T0) == 600.0


async def test_records_committed_before_the_kill_are_not_written_twice(
    backend: Backend, engine: AsyncEngine, directory: Path, journaled: list[UsageLedger]
) -> None:
    await _crash(backend, directory, 30, committed=True)
    assert len(await _rows(engine)) == 30
    assert len(_journaled_ids(directory)) == 30  # killed before the journal's clean-up
    ledger = _ledger(journaled, engine, directory)
    assert await ledger.replay(dead_journals(directory)) == 30  # read, and left alone
    assert [r for r, _ in await _rows(engine)] == [f"req-{i}" for i in range(30)]
    assert _segments(directory) == []


async def test_a_torn_last_line_is_skipped_and_counted(
    backend: Backend,
    engine: AsyncEngine,
    directory: Path,
    journaled: list[UsageLedger],
    caplog: pytest.LogCaptureFixture,
) -> None:
    await _crash(backend, directory, 3, committed=False)
    [segment] = _segments(directory)
    with segment.open("ab") as file:
        file.write(b'["2025-03-01 23:00:00.000000","x:1","req-torn"')  # a power loss mid-write
    ledger = _ledger(journaled, engine, directory)
    with caplog.at_level(logging.ERROR, "interlock.store"):
        assert await ledger.replay(dead_journals(directory)) == 3
    assert "1 unreadable records" in caplog.text
    assert [r for r, _ in await _rows(engine)] == ["req-0", "req-1", "req-2"]


async def test_a_journal_the_database_refuses_is_kept_for_the_next_start(
    backend: Backend, engine: AsyncEngine, directory: Path, journaled: list[UsageLedger]
) -> None:
    await _crash(backend, directory, 3, committed=False)
    await backend.sql("ALTER TABLE usage_ledger RENAME TO usage_ledger_away")
    ledger = _ledger(journaled, engine, directory)
    assert await ledger.replay(dead_journals(directory)) == 0
    await backend.sql("ALTER TABLE usage_ledger_away RENAME TO usage_ledger")
    assert len(_journaled_ids(directory)) == 3
    assert await ledger.replay(dead_journals(directory)) == 3
    assert len(await _rows(engine)) == 3


async def test_closing_past_the_deadline_leaves_the_journal_to_the_next_start(
    backend: Backend, engine: AsyncEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = journal_dir(backend.url, backend.pg_schema, tmp_path)
    ledger = UsageLedger(engine, journal=LedgerJournal(directory, COLUMNS), close_timeout_s=0.2)
    await backend.sql("ALTER TABLE usage_ledger RENAME TO usage_ledger_away")
    for i in range(5):
        ledger.add(usage(i))
    with caplog.at_level(logging.ERROR, "interlock.store"):
        await ledger.aclose()
    assert "the journal keeps them" in caplog.text
    assert ledger.dropped == 0
    await backend.sql("ALTER TABLE usage_ledger_away RENAME TO usage_ledger")
    async with await open_store(
        backend.url, pg_schema=backend.pg_schema, ledger_journal_dir=tmp_path
    ) as again:
        assert again.ledger.replayed == 5
        assert await again.ledger.spend("team-a", T0) == 2.5


async def test_open_store_replays_before_the_ledger_writes(
    backend: Backend, engine: AsyncEngine, tmp_path: Path
) -> None:
    directory = journal_dir(backend.url, backend.pg_schema, tmp_path)
    await _crash(backend, directory, 10, committed=False)
    async with await open_store(
        backend.url, pg_schema=backend.pg_schema, ledger_journal_dir=tmp_path
    ) as store:
        assert store.ledger.replayed == 10
        assert len(await _rows(engine)) == 10
    assert _files(directory) == []


def test_one_store_one_journal_directory(tmp_path: Path) -> None:
    pg = "postgresql+asyncpg://u:secret@db:5432/interlock"
    env = {"INTERLOCK_DATA_DIR": str(tmp_path / "data")}
    here = journal_dir(pg, "a", environ=env)
    assert here.parent == tmp_path / "data"
    assert here == journal_dir(pg.replace("secret", "rotated"), "a", environ=env)
    assert here != journal_dir(pg, "b", environ=env)
    assert journal_dir(pg, "a", tmp_path / "j", environ=env).parent == tmp_path / "j"
    db = tmp_path / "s" / "interlock.db"
    assert journal_dir(f"sqlite+aiosqlite:///{db}").parent == tmp_path / "s"
    assert journal_dir(f"sqlite+aiosqlite:///{db}") != journal_dir(
        f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
    )
