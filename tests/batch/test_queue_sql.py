"""The work queue's contract (``QueueContract``, run here on SQLite and
PostgreSQL and in ``test_queue_redis.py`` on Redis Streams), then what only
the SQL queue promises: a lease follows the injected clock, a put wakes a
waiting take, and two processes on one SQLite file never share a message.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import sqlite3
import sys
import time
from pathlib import Path
from typing import Protocol

import pytest

from interlock.batch.queue.base import Delivery, QueueUnavailable, WorkQueue
from interlock.batch.queue.sql import SqlQueue
from interlock.store import create_engine, migrate
from tests.store.conftest import Backend, backend  # noqa: F401 (a fixture)
from tests.support.clock import FakeClock

REPO = Path(__file__).resolve().parents[2]
# The longest any wait in these tests may take on a slow, busy machine.
DEADLINE_S = 30.0


class QueueHarness(Protocol):
    """Handles on one queue (each one another process's), and time."""

    short_lease_s: float  # for tests that wait for a lease to lapse
    extend_lease_s: float  # long enough to extend before it lapses, on a busy machine

    def open(self, *, lease_s: float = 120.0) -> WorkQueue: ...

    async def elapse(self, seconds: float) -> None: ...


async def take_eventually(queue: WorkQueue, consumer: str, count: int = 1) -> list[Delivery]:
    """The first non-empty take, polling until ``DEADLINE_S``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while loop.time() < deadline:
        if taken := await queue.take(consumer, count, 0.1):
            return taken
    raise AssertionError(f"{consumer} was given nothing in {DEADLINE_S}s")


class QueueContract:
    """What every ``WorkQueue`` promises; a subclass provides ``harness``."""

    async def test_messages_come_in_order_and_go_when_acked(self, harness: QueueHarness) -> None:
        queue, other = harness.open(), harness.open()
        await queue.put([b"a", b"b", b"c"])
        first = await queue.take("w1", 2, 0)
        assert [(d.payload, d.attempts) for d in first] == [(b"a", 1), (b"b", 1)]
        assert len({d.id for d in first}) == 2
        await queue.ack(first)
        [last] = await other.take("w2", 10, 0)
        assert (last.payload, last.attempts) == (b"c", 1)
        assert await queue.take("w1", 10, 0) == []  # w2 holds c
        await other.ack([last])
        assert await queue.take("w1", 10, 0) == []
        assert await queue.depth() == 0

    async def test_a_lapsed_lease_goes_to_another_consumer(self, harness: QueueHarness) -> None:
        lease_s = harness.short_lease_s
        dying, alive = harness.open(lease_s=lease_s), harness.open(lease_s=lease_s)
        await dying.put([b"x"])
        [taken] = await dying.take("dying", 1, 0)
        assert taken.attempts == 1
        await harness.elapse(lease_s * 1.5)
        [again] = await take_eventually(alive, "alive")
        assert (again.id, again.payload, again.attempts) == (taken.id, b"x", 2)
        await alive.ack([again])
        assert await alive.depth() == 0

    async def test_extend_keeps_the_lease(self, harness: QueueHarness) -> None:
        lease_s = harness.extend_lease_s
        worker, other = harness.open(lease_s=lease_s), harness.open(lease_s=lease_s)
        await worker.put([b"x"])
        [taken] = await worker.take("worker", 1, 0)
        await harness.elapse(lease_s * 0.7)
        await worker.extend("worker", [taken])
        await harness.elapse(lease_s * 0.7)  # lapsed, had it not been extended
        assert await other.take("other", 1, 0) == []
        await worker.ack([taken])
        assert await worker.depth() == 0

    async def test_release_makes_it_deliverable_at_once(self, harness: QueueHarness) -> None:
        leaving, staying = harness.open(), harness.open()
        await leaving.put([b"x", b"y"])
        taken = await leaving.take("leaving", 2, 0)
        await leaving.release(taken)
        # The lease is 120 s: getting them back within the deadline is "at once".
        again = await staying.take("staying", 2, DEADLINE_S)
        assert [(d.id, d.payload, d.attempts) for d in again] == [
            (d.id, d.payload, 2) for d in taken
        ]

    async def test_depth_counts_waiting_and_leased_messages(self, harness: QueueHarness) -> None:
        queue = harness.open()
        assert await queue.depth() == 0
        await queue.put([b"a", b"b", b"c"])
        assert await queue.depth() == 3
        a, b = await queue.take("w", 2, 0)
        assert await queue.depth() == 3
        await queue.ack([a])
        await queue.release([b])
        assert await queue.depth() == 2
        await queue.ack(await queue.take("w", 10, 0))
        assert await queue.depth() == 0

    async def test_concurrent_consumers_get_every_message_once(self, harness: QueueHarness) -> None:
        payloads = [f"m{i}".encode() for i in range(300)]
        await harness.open().put(payloads)
        delivered: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_S * 2

        async def consume(queue: WorkQueue, name: str) -> None:
            while len(delivered) < len(payloads) and loop.time() < deadline:
                taken = await queue.take(name, 7, 0.2)
                delivered.extend(d.payload for d in taken)
                await queue.ack(taken)

        await asyncio.gather(*(consume(harness.open(), f"c{n}") for n in range(4)))
        assert sorted(delivered) == sorted(payloads)  # each one, once
        assert await harness.open().depth() == 0

    async def test_take_from_an_empty_queue_waits_then_returns_nothing(
        self, harness: QueueHarness
    ) -> None:
        queue = harness.open()
        started = time.monotonic()
        assert await queue.take("w", 5, 0.5) == []
        assert 0.4 <= time.monotonic() - started < DEADLINE_S


class SqlHarness:
    short_lease_s = 30.0  # the clock is fake: no test waits for it
    extend_lease_s = 30.0

    def __init__(self, store: Backend) -> None:
        self._store = store
        self.clock = FakeClock(1_700_000_000.0)

    def open(
        self, *, lease_s: float = 120.0, poll_s: float = 0.05, idle_poll_s: float = 2.0
    ) -> SqlQueue:
        # An engine (a pool) of its own, as another process would have.
        return SqlQueue(
            self._store.engine(),
            lease_s=lease_s,
            poll_s=poll_s,
            idle_poll_s=idle_poll_s,
            clock=self.clock,
        )

    async def elapse(self, seconds: float) -> None:
        self.clock.now += seconds


@pytest.fixture
async def sql(backend: Backend) -> SqlHarness:  # noqa: F811
    await migrate(backend.engine())
    return SqlHarness(backend)


class TestSqlQueue(QueueContract):
    @pytest.fixture
    def harness(self, sql: SqlHarness) -> SqlHarness:
        return sql


async def test_only_the_holder_extends_a_lease(sql: SqlHarness) -> None:
    holder, stranger = sql.open(lease_s=30.0), sql.open(lease_s=30.0)
    await holder.put([b"x"])
    [taken] = await holder.take("holder", 1, 0)
    await sql.elapse(20)
    await stranger.extend("stranger", [taken])
    await sql.elapse(20)
    [again] = await stranger.take("stranger", 1, 0)  # lapsed at 30 s all the same
    assert (again.id, again.attempts) == (taken.id, 2)
    await sql.elapse(20)
    await holder.extend("holder", [taken])  # holder no more: no effect
    await sql.elapse(20)
    [third] = await holder.take("holder", 1, 0)
    assert third.attempts == 3


async def test_a_put_wakes_a_waiting_take_at_once(sql: SqlHarness) -> None:
    queue = sql.open(poll_s=60.0)  # no poll within the test: only the put can wake it
    waiting = asyncio.create_task(queue.take("w", 1, DEADLINE_S * 2))
    await asyncio.sleep(0.2)  # let it look at the empty table and wait
    started = time.monotonic()
    await queue.put([b"x"])
    async with asyncio.timeout(DEADLINE_S):
        [taken] = await waiting
    assert taken.payload == b"x"
    assert time.monotonic() - started < DEADLINE_S / 2


class Polls:
    """Counts the times ``queue`` looks at its table; ``reached`` is set at ``until``."""

    def __init__(self, queue: SqlQueue, until: int = 0) -> None:
        self.count = 0
        self.reached = asyncio.Event()
        self._until = until
        self._lease = queue._lease
        queue._lease = self._counted  # type: ignore[method-assign]

    async def _counted(self, consumer: str, max_messages: int) -> list[Delivery]:
        self.count += 1
        if self.count >= self._until:
            self.reached.set()
        return await self._lease(consumer, max_messages)


async def test_an_idle_queue_polls_less_and_less(sql: SqlHarness) -> None:
    queue = sql.open(poll_s=0.01, idle_poll_s=0.08)
    polls = Polls(queue)
    assert await queue.take("w", 1, 1.0) == []
    # Every 10 ms for a second would be 100 polls; doubling to 80 ms, about 15.
    assert polls.count <= 25


async def test_a_take_that_waits_in_vain_looks_once_not_again_at_its_deadline(
    sql: SqlHarness,
) -> None:
    # The next take looks first thing: a last look here would be a second
    # query at the same moment, every time an idle worker's take runs out.
    queue = sql.open(poll_s=60.0, idle_poll_s=60.0)
    polls = Polls(queue)
    assert await queue.take("w", 1, 0.2) == []
    assert polls.count == 1


async def test_an_idle_queue_still_finds_work_another_process_put(sql: SqlHarness) -> None:
    waiting, other = sql.open(poll_s=0.01, idle_poll_s=0.05), sql.open()
    polls = Polls(waiting, until=6)  # by then backed off to its longest wait
    taking = asyncio.create_task(waiting.take("w", 1, DEADLINE_S * 2))
    async with asyncio.timeout(DEADLINE_S):
        await polls.reached.wait()
    await other.put([b"x"])  # no wake-up reaches another process's queue
    async with asyncio.timeout(DEADLINE_S):
        [taken] = await taking
    assert taken.payload == b"x"


async def test_a_locked_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}", command_timeout_s=0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        await migrate(engine)
        queue = SqlQueue(engine)
        await queue.put([b"due"])  # take looks before it locks: give it something
        holder.execute("BEGIN IMMEDIATE")  # another writer that never lets go
        async with asyncio.timeout(DEADLINE_S):
            with pytest.raises(QueueUnavailable, match="locked"):
                await queue.put([b"x"])
            with pytest.raises(QueueUnavailable, match="locked"):
                await queue.take("w", 1, 0)
        holder.execute("ROLLBACK")
        await queue.put([b"x"])
        assert [d.payload for d in await queue.take("w", 2, 0)] == [b"due", b"x"]
    finally:
        holder.close()
        await engine.dispose()


async def test_an_unreachable_postgresql_is_unavailable() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/test")
    try:
        queue = SqlQueue(engine)
        async with asyncio.timeout(DEADLINE_S):
            with pytest.raises(QueueUnavailable):
                await queue.put([b"x"])
            with pytest.raises(QueueUnavailable):
                await queue.take("w", 1, 0)
            with pytest.raises(QueueUnavailable):
                await queue.depth()
    finally:
        await engine.dispose()


# A consumer in a process of its own: takes (and acks) until the queue stays
# empty, then prints what it was given.
_CONSUMER = """
import asyncio, sys
from pathlib import Path
from interlock.batch.queue.sql import SqlQueue
from interlock.store import create_engine

async def main(url, go, name):
    engine = create_engine(url, command_timeout_s=30.0)
    queue = SqlQueue(engine, lease_s=600.0, poll_s=0.05)
    given = []
    print("ready", flush=True)
    while not Path(go).exists():
        await asyncio.sleep(0.005)
    try:
        while taken := await queue.take(name, 2, 1.0):
            given += [d.payload.decode() for d in taken]
            await queue.ack(taken)
    finally:
        await engine.dispose()
    print("\\n".join(given), flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


async def test_two_processes_on_one_sqlite_file_never_share_a_message(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'queue.db'}"
    engine = create_engine(url)
    try:
        await migrate(engine)
        payloads = [f"m{i}" for i in range(300)]
        await SqlQueue(engine).put([p.encode() for p in payloads])
    finally:
        await engine.dispose()
    go = tmp_path / "go"
    children = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-c", _CONSUMER, url, str(go), f"p{n}"),
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
        )
        for n in range(2)
    ]
    try:
        async with asyncio.timeout(DEADLINE_S * 2):
            for child in children:
                assert child.stdout is not None
                assert await child.stdout.readline() == b"ready\n"
            go.touch()  # both start taking together
            outputs = [(await child.communicate())[0] for child in children]
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    assert [child.returncode for child in children] == [0, 0]
    given = [line for out in outputs for line in out.decode().split()]
    assert collections.Counter(given) == collections.Counter(payloads)
