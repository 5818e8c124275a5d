"""What the usage ledger's journal costs per request: CPU, in process.

    .venv/bin/python bench/ledger_cost.py [--records 20000 --reps 9 --url URL]

Drives a ``UsageLedger`` the way the gateway does, once without a journal
and once with one, interleaved (the order alternates), ``--reps`` times:
``in flight`` records are added per event-loop turn (1: each request
finishes in a turn of its own, as at c=1; 32: many finish in one turn, as
under load), on uvloop like ``interlock serve``. Two figures, each
``time.process_time()`` per record (this process's CPU, every thread):

* *event loop*: ``add`` and, with the journal, its one ``write()`` per turn:
  what the request path pays. The writer is not started (the rows are
  committed after the timing).
* *whole ledger*: the same with the background writer running as in
  production and a final ``flush``: the commits, and with the journal also
  a segment created and deleted per flush.

Reported: the median and range of each, and the median of the per-rep
differences (journal - none), which is the journal's cost. The store is a
SQLite file in a temporary directory unless ``--url`` names another
(a scratch PostgreSQL database: rows are left in it). The journal is in a
temporary directory (on this machine: the same filesystem as /tmp).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import uvloop
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.store import UsageLedger, UsageRecord, create_engine, migrate
from interlock.store.journal import LedgerJournal
from interlock.store.usage_rows import COLUMNS

IN_FLIGHT = (1, 32)
MODES = ("event loop", "whole ledger")


def _records(count: int) -> list[UsageRecord]:
    now = datetime.now(UTC)
    return [
        UsageRecord(
            now, f"req_{i:024x}", "team-a", "chat-small", key_id="key_0123456789abcdef",
            deployment="chat-small-east", prompt_tokens=812, completion_tokens=64,
            cost_usd=0.000187, latency_ms=412.318, stream=i % 3 == 0,
        )
        for i in range(count)
    ]  # fmt: skip


async def _run(
    engine: AsyncEngine, journal: Path | None, records: list[UsageRecord], per_turn: int, mode: str
) -> float:
    """CPU µs per record."""
    ledger = UsageLedger(
        engine,
        journal=LedgerJournal(journal, COLUMNS) if journal is not None else None,
        max_pending=len(records),
    )
    whole = mode == "whole ledger"
    if whole:
        ledger.start()
    began = time.process_time()
    for i in range(0, len(records), per_turn):
        for record in records[i : i + per_turn]:
            ledger.add(record)
        await asyncio.sleep(0)  # the turn ends: the journal writes
    if whole:
        await ledger.flush()
    cpu_s = time.process_time() - began
    await ledger.aclose()
    assert ledger.written == len(records) and ledger.dropped == 0
    return 1e6 * cpu_s / len(records)


async def _main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(args.url or f"sqlite+aiosqlite:///{scratch}/bench.db")
        await migrate(engine)
        records = _records(args.records)
        cases = [(mode, n) for mode in MODES for n in IN_FLIGHT]
        runs: dict[tuple[str, int, bool], list[float]] = {}
        try:
            for _ in range(2):  # warm-up, untimed: the file, the caches, the threads
                await _run(engine, Path(scratch) / "j", records[:2000], 32, "whole ledger")
            for rep in range(args.reps):
                for mode, n in cases:
                    order = (False, True) if rep % 2 == 0 else (True, False)
                    for journaled in order:
                        journal = Path(scratch) / "j" if journaled else None
                        us = await _run(engine, journal, records, n, mode)
                        runs.setdefault((mode, n, journaled), []).append(us)
        finally:
            await engine.dispose()
    _report(args, cases, runs)


def _report(
    args: argparse.Namespace,
    cases: list[tuple[str, int]],
    runs: dict[tuple[str, int, bool], list[float]],
) -> None:
    backend = "PostgreSQL" if args.url and "postgresql" in args.url else "SQLite"
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {backend}, "
        f"{args.records} records per run, {args.reps} interleaved reps; CPU µs per record\n"
    )
    print("| figure | in flight | no journal | journal | journal's cost (median, range) |")
    print("| --- | --- | --- | --- | --- |")
    for mode, n in cases:
        without, with_ = runs[(mode, n, False)], runs[(mode, n, True)]
        costs = [b - a for a, b in zip(without, with_, strict=True)]
        print(
            f"| {mode} | {n} | {_spread(without)} | {_spread(with_)} | "
            f"{statistics.median(costs):+.2f} ({min(costs):+.2f} to {max(costs):+.2f}) |"
        )


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--url", help="the store (default: SQLite in a temporary directory)")
    uvloop.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
