"""A process that journals usage records and is then killed with SIGKILL.

    python -m tests.support.crashed_ledger URL PG_SCHEMA JOURNAL_DIR COUNT COMMITTED

It adds ``COUNT`` records (``req-0`` ...) to a journaled ledger on the store
at ``URL`` (migrated by the caller; ``PG_SCHEMA`` "-" for none), lets the
event loop turn so they are journaled, and commits none of them, or with
``COMMITTED`` 1 all of them while keeping the journal as it was before the
commit: the state a kill between a commit and the journal's clean-up leaves.
Then it kills itself: nothing is closed, the kernel drops the lock.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from interlock.store import UsageLedger, UsageRecord, create_engine
from interlock.store.journal import LedgerJournal
from interlock.store.usage_rows import COLUMNS

T0 = datetime(2025, 3, 1, 23, 0, tzinfo=UTC)


async def main(url: str, pg_schema: str, directory: Path, count: int, committed: bool) -> None:
    engine = create_engine(url, pg_schema=None if pg_schema == "-" else pg_schema)
    ledger = UsageLedger(engine, journal=LedgerJournal(directory, COLUMNS))
    for i in range(count):
        ledger.add(UsageRecord(T0, f"req-{i}", "team-a", "m", cost_usd=0.5))
    await asyncio.sleep(0)  # the turn ends: the journal is written
    if committed:
        with tempfile.TemporaryDirectory() as kept:
            segments = _copy(_segments(directory), Path(kept))
            await ledger.flush()  # commits, and deletes the segments
            _copy(segments, directory)
    os.kill(os.getpid(), signal.SIGKILL)


def _segments(directory: Path) -> list[Path]:
    return list(directory.glob("*.jnl"))


def _copy(files: Iterable[Path], to: Path) -> list[Path]:
    return [Path(shutil.copy(path, to / path.name)) for path in files]


if __name__ == "__main__":
    url, schema, where, count, committed = sys.argv[1:]
    asyncio.run(main(url, schema, Path(where), int(count), committed == "1"))
