"""The work queue in a table of the records store (``queue_messages``): the
embedded default, on SQLite or PostgreSQL.

A message is leased by writing its owner and ``lease_until`` (wall-clock
seconds from the injected clock); new messages carry ``lease_until = 0``.
``take`` leases the oldest due rows in one ``UPDATE ... WHERE id IN (SELECT
... LIMIT n) RETURNING``, so no two consumers ever get the same lease:

* SQLite: the statement runs in ``BEGIN IMMEDIATE``, which takes the file's
  write lock first; consumers in other processes queue on the busy timeout.
* PostgreSQL: the subquery locks its rows ``FOR UPDATE SKIP LOCKED``, so a
  second consumer passes over rows the first is leasing instead of waiting
  for them (and then leasing them a second time).

Only a ``put`` in this process wakes a waiting ``take`` at once; work put by
another process is found at the next poll: ``poll_s`` after the last one
that found work, the wait doubling while polls find none, up to
``idle_poll_s``. An idle gateway's batch worker would otherwise query the
store four times a second for nothing (a quarter of an idle process's
wake-ups and CPU); batch work put by another process waits at most
``idle_poll_s`` more to start. Leases compare the wall clocks of every
machine on the store: keep ``lease_s`` far above their skew.

Errors: an outage (connection refused or lost, a lock or pool wait that timed
out) raises ``QueueUnavailable``; a constraint or SQL error is our bug and
propagates.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.batch.queue.base import Delivery, QueueUnavailable
from interlock.store.engine import write_engine
from interlock.store.schema import queue_messages

__all__ = ["SqlQueue"]

_BUGS = (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.DataError)
# DBAPIError: PostgreSQL's shutdowns and SQLite's "database is locked" arrive
# as plain DBAPIError/OperationalError; sa.exc.TimeoutError is the pool's wait.
_OUTAGES = (sa.exc.DBAPIError, sa.exc.TimeoutError, OSError, TimeoutError)


@contextmanager
def _outage_is_unavailable() -> Iterator[None]:
    try:
        yield
    except _BUGS:
        raise
    except _OUTAGES as exc:
        raise QueueUnavailable(f"records store: {type(exc).__name__}: {exc}") from exc


class SqlQueue:
    """A ``WorkQueue`` on the records store's ``queue_messages`` table.

    ``queue`` names this queue's rows, so one table holds several queues.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        queue: str = "batch",
        lease_s: float = 30.0,
        poll_s: float = 0.25,
        idle_poll_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if lease_s <= 0 or poll_s <= 0:
            raise ValueError("lease_s and poll_s must be positive")
        self._engine = engine
        self._writer = write_engine(engine)
        self._queue = queue
        self._lease_s = lease_s
        self._poll_s = poll_s
        self._idle_poll_s = max(idle_poll_s, poll_s)
        self._next_poll_s = poll_s  # doubles while polls find nothing
        self._clock = clock
        # Replaced on every wake-up, so a waiter that grabbed it before looking
        # at the table cannot miss a put that lands while it looks.
        self._arrived = asyncio.Event()

    @property
    def engine(self) -> str:
        return "sql"

    async def put(self, payloads: Sequence[bytes]) -> None:
        if not payloads:
            return
        now = self._clock()
        rows = [
            {
                "queue": self._queue,
                "payload": bytes(payload),
                "lease_owner": None,
                "lease_until": 0.0,
                "attempts": 0,
                "created_at": now,
            }
            for payload in payloads
        ]
        with _outage_is_unavailable():
            async with self._writer.begin() as conn:
                await conn.execute(queue_messages.insert(), rows)
        self._wake()

    async def take(self, consumer: str, max_messages: int, wait_s: float) -> list[Delivery]:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            arrived = self._arrived
            taken = await self._lease(consumer, max_messages)
            if taken:
                self._next_poll_s = self._poll_s
                return taken
            remaining = deadline - loop.time()
            if remaining <= 0:
                return taken
            wait_s = self._next_poll_s
            self._next_poll_s = min(wait_s * 2, self._idle_poll_s)
            try:
                await asyncio.wait_for(arrived.wait(), min(wait_s, remaining))
            except TimeoutError:
                if loop.time() >= deadline:
                    # No last look: the caller's next take looks first thing,
                    # and a worker takes again at once (two queries, one moment).
                    return []

    async def extend(self, consumer: str, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        t = queue_messages
        renew = (
            sa.update(t)
            .where(t.c.id.in_(_ids(deliveries)), t.c.lease_owner == consumer)
            .values(lease_until=self._clock() + self._lease_s)
        )
        with _outage_is_unavailable():
            async with self._writer.begin() as conn:
                await conn.execute(renew)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        done = sa.delete(queue_messages).where(queue_messages.c.id.in_(_ids(deliveries)))
        with _outage_is_unavailable():
            async with self._writer.begin() as conn:
                await conn.execute(done)

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        t = queue_messages
        give_back = (
            sa.update(t)
            .where(t.c.id.in_(_ids(deliveries)))
            .values(lease_owner=None, lease_until=0.0)
        )
        with _outage_is_unavailable():
            async with self._writer.begin() as conn:
                await conn.execute(give_back)
        self._wake()

    async def depth(self) -> int:
        count = (
            sa.select(sa.func.count())
            .select_from(queue_messages)
            .where(queue_messages.c.queue == self._queue)
        )
        with _outage_is_unavailable():
            async with self._engine.connect() as conn:
                return int((await conn.execute(count)).scalar_one())

    async def aclose(self) -> None:
        """Nothing to close: the engine belongs to the caller."""

    async def _lease(self, consumer: str, max_messages: int) -> list[Delivery]:
        t = queue_messages
        now = self._clock()
        due = (
            sa.select(t.c.id)
            .where(t.c.queue == self._queue, t.c.lease_until <= now)
            .order_by(t.c.id)
            .limit(max_messages)
        )
        # A read first, without the write lock: an idle queue is polled
        # several times a second, and on SQLite every write transaction would
        # queue behind (and hold up) the usage ledger's writer.
        with _outage_is_unavailable():
            async with self._engine.connect() as conn:
                if (await conn.execute(due.limit(1))).first() is None:
                    return []
        if self._engine.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        lease = (
            sa.update(t)
            .where(t.c.id.in_(due))
            .values(
                lease_owner=consumer, lease_until=now + self._lease_s, attempts=t.c.attempts + 1
            )
            .returning(t.c.id, t.c.payload, t.c.attempts)
        )
        with _outage_is_unavailable():
            async with self._writer.begin() as conn:
                rows = (await conn.execute(lease)).all()
        # RETURNING promises no order.
        return [
            Delivery(id=str(row.id), payload=bytes(row.payload), attempts=row.attempts)
            for row in sorted(rows, key=lambda row: row.id)
        ]

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = asyncio.Event()


def _ids(deliveries: Sequence[Delivery]) -> list[int]:
    return [int(delivery.id) for delivery in deliveries]
