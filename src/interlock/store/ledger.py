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
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import datetime
from itertools import islice
from operator import attrgetter
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.store.engine import write_engine
from interlock.store.schema import usage_ledger
from interlock.store.sqlite_writer import SQLiteBatchWriter, sqlite_time
from interlock.store.usage_queries import (
    GroupBy,
    spend_delta_query,
    spend_query,
    spend_seed_query,
    totals_query,
)

__all__ = ["GroupBy", "SpendDelta", "SpendRange", "UsageLedger", "UsageRecord"]

log = logging.getLogger("interlock.store")


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One finished request. ``key_id`` is None for keys from the config file."""

    ts: datetime
    request_id: str
    key_name: str
    model: str
    key_id: str | None = None
    deployment: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    status: int = 200
    cache_hit: bool = False
    stream: bool = False

    def __post_init__(self) -> None:
        # Refused here, on the caller's stack: in the buffer it would fail every batch.
        if self.ts.tzinfo is None:
            raise ValueError("UsageRecord.ts must be timezone-aware")


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


# ``ts`` first: it is the one value that is converted for SQLite (``_Encoder``).
_COLUMNS = ("ts", *(f.name for f in fields(UsageRecord) if f.name != "ts"))
_Row = tuple[Any, ...]


class _Encoder:
    """A record as the row tuple that is bound, in ``_COLUMNS`` order (one C
    call for all but the timestamp)."""

    def __init__(self, sqlite: bool):
        self._time = sqlite_time if sqlite else None
        self._rest = attrgetter(*_COLUMNS[1:])

    def __call__(self, record: UsageRecord) -> _Row:
        ts = record.ts if self._time is None else self._time(record.ts)
        return (ts, *self._rest(record))


class UsageLedger:
    """Buffered, batched writes of ``UsageRecord``s, plus the queries over them.

    ``add`` must be called on the event loop's thread. Counters for metrics:
    ``written``, ``dropped``, ``write_failures`` and the ``pending`` gauge.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        max_batch: int = 500,
        flush_interval_s: float = 0.5,
        max_pending: int = 100_000,
        catch_up_at: int | None = None,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 10.0,
        close_timeout_s: float = 10.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        """``catch_up_at``: pending records from which SQLite batches are written
        at normal priority (default: ten batches, at most ``max_pending``)."""
        if max_batch < 1 or max_pending < max_batch:
            raise ValueError("need 1 <= max_batch <= max_pending")
        self._engine = engine
        self._writer = write_engine(engine)
        sqlite = engine.dialect.name == "sqlite"
        self._sqlite = (
            SQLiteBatchWriter(engine.url.database or "", usage_ledger.name, _COLUMNS)
            if sqlite
            else None
        )
        self._encode = _Encoder(sqlite)
        self._max_batch = max_batch
        self._flush_interval_s = flush_interval_s
        self._max_pending = max_pending
        self._catch_up_at = min(10 * max_batch if catch_up_at is None else catch_up_at, max_pending)
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._close_timeout_s = close_timeout_s
        self._sleep = sleep
        self._pending: deque[_Row] = deque()
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._dropped_since_write = 0
        self.written = 0
        self.dropped = 0
        self.write_failures = 0
        self.catch_up_batches = 0  # written at normal priority (SQLite)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, record: UsageRecord) -> None:
        """Queue ``record`` for writing; never blocks, never raises for a full buffer."""
        if self._closed or len(self._pending) >= self._max_pending:
            self._drop()
            return
        self._pending.append(self._encode(record))
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
            lost = len(self._pending)
            self._pending.clear()
            self.dropped += lost
            log.error(
                "usage ledger closed with %d records unwritten after %.1fs: they are lost",
                lost,
                self._close_timeout_s,
            )
        finally:
            if self._sqlite is not None:
                self._sqlite.dispose()

    async def query(
        self,
        key_name: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: GroupBy | None = None,
    ) -> list[dict[str, Any]]:
        """Totals over ``[since, until)``: requests, tokens, cost_usd, cache_hits.

        Grouped by ``group_by`` ("key" is the key's name, "day" a UTC
        ``YYYY-MM-DD``), one dict per group, ordered by the group; ungrouped,
        a single dict, zeros when nothing matched.
        """
        statement = totals_query(key_name, model, since, until, group_by)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(statement)).mappings().all()
        return [_totals(row, group_by) for row in rows]

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

    async def _write(self, batch: list[_Row], catch_up: bool) -> None:
        if self._sqlite is not None:
            await self._sqlite.insert(batch, catch_up=catch_up)
            self.catch_up_batches += catch_up
            return
        rows = [dict(zip(_COLUMNS, row, strict=True)) for row in batch]
        async with self._writer.begin() as conn:
            await conn.execute(usage_ledger.insert(), rows)

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
    )
    return totals
