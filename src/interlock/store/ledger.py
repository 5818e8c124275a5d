"""The usage ledger: one row per request, written behind the request path.

``add`` only appends to an in-memory buffer; a background task writes the
buffer in batches (one ``executemany`` per transaction), so a slow or absent
database never slows a response. The buffer is the place to lose records, so
its rules are explicit:

* Bounded by ``max_pending``. A full buffer wakes the writer at once and
  refuses the *new* record, counted in ``dropped`` and logged at ERROR.
  Dropping the oldest instead would silently rewrite history that was
  already accepted; refusing the newest keeps the ledger a clean prefix.
* A batch leaves the buffer only after its transaction commits. A failed
  write is retried with exponential backoff and nothing is lost meanwhile;
  new records keep queueing behind it up to the bound.
* ``aclose`` writes everything still pending, against a deadline: this is
  what makes a SIGTERM lose nothing (the app calls it on lifespan shutdown).
* With a ``LedgerJournal`` (``open_store`` gives it one), every accepted
  record is also appended to a local file at the end of the event-loop turn
  and kept there until its batch commits, so a process that is killed loses
  nothing it had journaled: the next process to start on the store replays
  it (``replay``). Each row carries a unique ``record_id`` and is inserted
  with ``ON CONFLICT DO NOTHING``, so a record committed just before the
  kill is not written twice.

On SQLite a batch is committed by a low-priority thread, so that writing the
ledger does not delay requests on the same core (``sqlite_writer``); once
``catch_up_at`` records are pending, and at close, batches go to a
normal-priority thread instead, so a busy core cannot starve the writer into
dropping records. Each record is encoded into the row it will be bound as
when it is added (a couple of µs, after its response is sent), so that
neither the event loop nor the writer thread converts a whole batch at once.

Reads (``query``, ``spend``) see committed rows only, so they trail the
request path by ``flush_interval_s`` and the write; on a saturated core, by
up to ``catch_up_at`` records.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import count, islice
from typing import Any

from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.store.engine import write_engine
from interlock.store.journal import DeadJournal, LedgerJournal
from interlock.store.schema import usage_ledger
from interlock.store.sqlite_writer import SQLiteBatchWriter, SQLiteWriteThreads
from interlock.store.usage_queries import (
    GroupBy,
    breakdown_query,
    spend_delta_query,
    spend_query,
    spend_seed_query,
    totals_query,
)
from interlock.store.usage_rows import COLUMNS, Row, RowEncoder, UsageRecord

__all__ = ["GroupBy", "SpendDelta", "SpendRange", "UsageLedger", "UsageRecord"]

log = logging.getLogger("interlock.store")


@dataclass(frozen=True, slots=True)
class SpendRange:
    """A key's cost over some of its ledger rows, the highest id among them
    (None when there were none) and how many rows were read."""

    cost: float = 0.0
    last_id: int | None = None
    rows: int = 0


@dataclass(frozen=True, slots=True)
class SpendDelta:
    """``UsageLedger.spend_delta``'s answer: the new rows and the settled range."""

    new: SpendRange
    settled: SpendRange


class UsageLedger:
    """Buffered, batched writes of ``UsageRecord``s, plus the queries over them.

    ``add`` must be called on the event loop's thread. Counters for metrics:
    ``written``, ``dropped``, ``write_failures`` and the ``pending`` gauge.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        journal: LedgerJournal | None = None,
        max_batch: int = 500,
        flush_interval_s: float = 0.5,
        max_pending: int = 100_000,
        catch_up_at: int | None = None,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 10.0,
        close_timeout_s: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        sqlite_threads: SQLiteWriteThreads | None = None,
    ):
        """``journal``: where accepted records wait for their commit (none: in
        memory only). ``catch_up_at``: pending records from which SQLite batches
        are written at normal priority (default: ten batches, at most ``max_pending``).
        ``sqlite_threads``: the file's writer threads, shared with its other
        writers and closed by their owner (none: the ledger's own)."""
        if max_batch < 1 or max_pending < max_batch:
            raise ValueError("need 1 <= max_batch <= max_pending")
        self._engine = engine
        self._writer = write_engine(engine)
        sqlite = engine.dialect.name == "sqlite"
        self._sqlite = SQLiteBatchWriter.for_engine(
            engine,
            usage_ledger.name,
            COLUMNS,
            unique_by="record_id",
            threads=sqlite_threads,
            name="interlock-ledger",
        )
        self._encode = RowEncoder(sqlite)
        self._journal = journal
        self._id_prefix = f"{journal.writer if journal else secrets.token_hex(8)}:"
        self._ids = count(1)
        self._max_batch = max_batch
        self._flush_interval_s = flush_interval_s
        self._max_pending = max_pending
        self._catch_up_at = min(10 * max_batch if catch_up_at is None else catch_up_at, max_pending)
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._close_timeout_s = close_timeout_s
        self._sleep = sleep
        self._pending: deque[Row] = deque()
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._dropped_since_write = 0
        self.written = 0
        self.dropped = 0
        self.write_failures = 0
        self.catch_up_batches = 0  # written at normal priority (SQLite)
        self.replayed = 0  # from journals left by processes that are gone

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, record: UsageRecord) -> None:
        """Queue ``record`` for writing; never blocks, never raises for a full buffer."""
        if self._closed or len(self._pending) >= self._max_pending:
            self._drop()
            return
        row = self._encode(record, f"{self._id_prefix}{next(self._ids)}")
        self._pending.append(row)
        if self._journal is not None:
            self._journal.append(row)
        if len(self._pending) >= self._max_batch:
            self._wake.set()

    def start(self) -> None:
        """Start the background writer (on the running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="usage-ledger")

    async def flush(self) -> None:
        """Write everything pending now; failed writes are retried until they succeed.

        Records added while it writes are left for the next flush (a batch is
        filled up with them, no more): chasing them wrote a transaction per
        handful of records whenever a write took a while (the low-priority
        writer at c=1 committed ~190 times a second), and a commit costs
        more than the rows in it.
        """
        async with self._flushing:
            if self._journal is not None:
                self._journal.rotate()  # its older segments go once this flush commits
            delay = self._retry_initial_s
            owed = len(self._pending)
            while owed > 0 and self._pending:
                batch = list(islice(self._pending, self._max_batch))
                catch_up = self._closed or len(self._pending) >= self._catch_up_at
                try:
                    await self._write(batch, catch_up)
                except Exception as exc:
                    self.write_failures += 1
                    log.warning(
                        "usage ledger: writing %d records failed (%d pending), retry in %.2fs: %s",
                        len(batch),
                        len(self._pending),
                        delay,
                        exc,
                    )
                    await self._sleep(delay)
                    delay = min(delay * 2, self._retry_max_s)
                    continue
                for _ in batch:
                    self._pending.popleft()
                if self._journal is not None:
                    self._journal.committed(len(batch))
                owed -= len(batch)
                self.written += len(batch)
                delay = self._retry_initial_s
                self._report_drops()

    async def aclose(self) -> None:
        """Stop accepting records and write the pending ones, within ``close_timeout_s``."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        work = self._task if self._task is not None else asyncio.ensure_future(self.flush())
        try:
            await asyncio.wait_for(work, self._close_timeout_s)
        except TimeoutError:
            unwritten = len(self._pending)
            self._pending.clear()
            if self._journal is None:
                self.dropped += unwritten
            log.error(
                "usage ledger closed with %d records unwritten after %.1fs: %s",
                unwritten,
                self._close_timeout_s,
                "they are lost" if self._journal is None else "the journal keeps them",
            )
        finally:
            if self._journal is not None:
                self._journal.close()
            if self._sqlite is not None:
                self._sqlite.close()

    async def replay(self, journals: Iterable[DeadJournal]) -> int:
        """Write the records of journals left by processes that are gone (call
        before ``start``); a journal is deleted once written, kept if a write
        fails. Returns the number of records written."""
        replayed = 0
        for journal in journals:
            try:
                batch: list[Row] = []
                for values in journal.rows():
                    try:
                        batch.append(self._encode.decode(values))
                    except (KeyError, TypeError, ValueError):
                        journal.skipped += 1
                    if len(batch) == self._max_batch:
                        await self._write(batch, True)
                        replayed, batch = replayed + len(batch), []
                await self._write(batch, True)
                replayed += len(batch)
            except Exception as exc:
                journal.release()
                log.error("usage ledger: replaying %s failed, kept: %s", journal.lock_path, exc)
                continue
            journal.remove()
            if journal.skipped:
                log.error(
                    "usage ledger: %d unreadable records in %s", journal.skipped, journal.lock_path
                )
        if replayed:
            log.warning(
                "usage ledger: replayed %d records left by stopped processes"
                " (those already in the database are skipped)",
                replayed,
            )
        self.replayed += replayed
        return replayed

    async def query(
        self,
        key_name: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: GroupBy | None = None,
    ) -> list[dict[str, Any]]:
        """Totals over ``[since, until)``: requests, tokens, cost_usd,
        cache_hits, units (a tensor request's rows), unpriced_requests (whose
        deployment had no known price, so cost_usd leaves them out).

        Grouped by ``group_by`` ("key" is the key's name, "day" a UTC
        ``YYYY-MM-DD``), one dict per group, ordered by the group; ungrouped,
        a single dict, zeros when nothing matched.
        """
        statement = totals_query(key_name, model, since, until, group_by)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(statement)).mappings().all()
        return [_totals(row, group_by) for row in rows]

    async def breakdown(
        self,
        key_name: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100_000,
    ) -> list[dict[str, Any]]:
        """One row per UTC day, model and key over ``[since, until)``:
        requests, prompt_tokens, completion_tokens, cost_usd, cache_hits and
        the tokens of those hits (cached_prompt_tokens,
        cached_completion_tokens). At most ``limit`` rows."""
        statement = breakdown_query(key_name, model, since, until).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(statement)).mappings().all()
        return [
            {
                "day": str(row["day"]),
                "model": row["model"],
                "key": row["key"],
                "requests": int(row["requests"]),
                "prompt_tokens": int(row["prompt_tokens"]),
                "completion_tokens": int(row["completion_tokens"]),
                "cost_usd": float(row["cost_usd"]),
                "cache_hits": int(row["cache_hits"]),
                "cached_prompt_tokens": int(row["cached_prompt_tokens"]),
                "cached_completion_tokens": int(row["cached_completion_tokens"]),
            }
            for row in rows
        ]

    async def spend(self, key_name: str, since: datetime, until: datetime | None = None) -> float:
        """The key's total cost in USD over ``[since, until)``, for budget checks."""
        async with self._engine.connect() as conn:
            total = (await conn.execute(spend_query(key_name, since, until))).scalar_one()
        return float(total)

    async def spend_seed(self, key_name: str, since: datetime) -> SpendRange:
        """The key's whole spend since ``since``, with its highest row id."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(spend_seed_query(key_name, since))).mappings().one()
        return _spend_range(row)

    async def spend_delta(
        self, key_name: str, since: datetime, after_id: int, settle_from: int, settle_to: int
    ) -> SpendDelta:
        """The key's rows since ``since`` with ``id > after_id``, and (read again)
        those with ``settle_from < id <= settle_to``: one statement, two index ranges."""
        statement = spend_delta_query(key_name, since, after_id, settle_from, settle_to)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(statement)).mappings().all()
        parts = {int(row["part"]): _spend_range(row) for row in rows}
        return SpendDelta(parts[0], parts[1])

    async def _run(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_interval_s)
            self._wake.clear()
            await self.flush()
        await self.flush()

    async def _write(self, batch: list[Row], catch_up: bool) -> None:
        if self._sqlite is not None:
            await self._sqlite.insert(batch, catch_up=catch_up)
            self.catch_up_batches += catch_up
            return
        if not batch:
            return
        rows = [dict(zip(COLUMNS, row, strict=True)) for row in batch]
        async with self._writer.begin() as conn:
            await conn.execute(_PG_INSERT, rows)

    def _drop(self) -> None:
        self.dropped += 1
        self._dropped_since_write += 1
        if self._dropped_since_write == 1:
            reason = "is closed" if self._closed else f"is full ({len(self._pending)} pending)"
            log.error("usage ledger %s: dropping usage records", reason)
        self._wake.set()

    def _report_drops(self) -> None:
        if self._dropped_since_write:
            log.error(
                "usage ledger dropped %d records while full; %d dropped in all",
                self._dropped_since_write,
                self.dropped,
            )
            self._dropped_since_write = 0


# A replayed record that its process had committed already is left alone.
_PG_INSERT = postgresql.insert(usage_ledger).on_conflict_do_nothing(index_elements=["record_id"])


def _spend_range(row: Any) -> SpendRange:
    last_id = row["last_id"]
    return SpendRange(
        float(row["cost"]), None if last_id is None else int(last_id), int(row["rows"])
    )


def _totals(row: Any, group_by: GroupBy | None) -> dict[str, Any]:
    totals: dict[str, Any] = {} if group_by is None else {group_by: row["group"]}
    totals.update(
        requests=int(row["requests"]),
        prompt_tokens=int(row["prompt_tokens"]),
        completion_tokens=int(row["completion_tokens"]),
        cost_usd=float(row["cost_usd"]),
        cache_hits=int(row["cache_hits"]),
        units=int(row["units"]),
        unpriced_requests=int(row["unpriced"]),
    )
    return totals
