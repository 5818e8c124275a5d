"""The work queue's contract on Redis Streams (``QueueContract``), then what
only this engine promises: it owns the consumer group (created when needed,
re-created when Redis lost it), leaves entries deleted while pending behind,
and survives a Redis restart with persistence, failing fast while it is down.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from interlock.batch.queue.base import Delivery, QueueUnavailable
from interlock.batch.queue.redis_streams import RedisStreamQueue
from tests.batch.test_queue_sql import DEADLINE_S, QueueContract, take_eventually
from tests.support.redis_scratch import scratch_prefix

REDIS_URL = "redis://127.0.0.1:6379/15"


class RedisHarness:
    # Redis keeps its own time: these leases really pass.
    short_lease_s = 0.3
    extend_lease_s = 3.0  # extended at 2.1 s: 0.9 s of slack for a busy machine

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.opened: list[RedisStreamQueue] = []

    def open(self, *, lease_s: float = 120.0) -> RedisStreamQueue:
        queue = RedisStreamQueue.from_url(
            REDIS_URL, prefix=self.prefix, lease_s=lease_s, max_block_s=1.0
        )
        self.opened.append(queue)
        return queue

    async def elapse(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def aclose(self) -> None:
        for queue in self.opened:
            await queue.aclose()


@pytest.fixture
async def rh() -> AsyncIterator[RedisHarness]:
    with scratch_prefix(REDIS_URL, "queue") as prefix:
        harness = RedisHarness(prefix)
        try:
            yield harness
        finally:
            await harness.aclose()


class TestRedisStreamQueue(QueueContract):
    @pytest.fixture
    def harness(self, rh: RedisHarness) -> RedisHarness:
        return rh


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def _pending(client: aioredis.Redis, stream: str, entry: Delivery) -> dict[str, Any]:
    [row] = await client.xpending_range(stream, "workers", entry.id, entry.id, 1)
    return dict(row)


async def test_extend_resets_idle_time_but_not_the_delivery_count(
    rh: RedisHarness, client: aioredis.Redis
) -> None:
    stream = f"{rh.prefix}batch:queue"
    holder, stranger = rh.open(), rh.open()
    await holder.put([b"x"])
    [taken] = await holder.take("holder", 1, 0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while (before := await _pending(client, stream, taken))["time_since_delivered"] < 300:
        assert loop.time() < deadline
        await asyncio.sleep(0.05)
    await stranger.extend("stranger", [taken])  # not its lease: must not take it over
    await holder.extend("holder", [taken])
    after = await _pending(client, stream, taken)
    assert after["consumer"] == b"holder"
    assert after["times_delivered"] == 1
    assert after["time_since_delivered"] < before["time_since_delivered"]


async def test_the_group_is_made_again_when_redis_lost_it(
    rh: RedisHarness, client: aioredis.Redis
) -> None:
    queue = rh.open()
    await queue.put([b"before"])
    [taken] = await queue.take("w", 1, 0)
    await queue.ack([taken])
    await client.delete(f"{rh.prefix}batch:queue")  # as a restart without persistence would
    await queue.put([b"after"])
    [again] = await queue.take("w", 1, DEADLINE_S)
    assert (again.payload, again.attempts) == (b"after", 1)
    await queue.ack([again])
    assert await queue.depth() == 0


async def test_an_entry_deleted_while_pending_is_skipped(
    rh: RedisHarness, client: aioredis.Redis
) -> None:
    stream = f"{rh.prefix}batch:queue"
    dying, alive = rh.open(lease_s=rh.short_lease_s), rh.open(lease_s=rh.short_lease_s)
    await dying.put([b"gone", b"kept"])
    gone, kept = await dying.take("dying", 2, 0)
    await client.xdel(stream, gone.id)  # e.g. trimmed by hand
    [again] = await take_eventually(alive, "alive", 2)
    assert (again.id, again.payload, again.attempts) == (kept.id, b"kept", 2)
    await alive.ack([again])
    assert (await client.xpending(stream, "workers"))["pending"] == 0


async def test_a_client_it_was_given_stays_open(rh: RedisHarness, client: aioredis.Redis) -> None:
    queue = RedisStreamQueue(client, stream=f"{rh.prefix}batch:queue")
    await queue.put([b"x"])
    await queue.aclose()
    assert await client.xlen(f"{rh.prefix}batch:queue") == 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_unreachable_redis_is_unavailable_at_once() -> None:
    queue = RedisStreamQueue.from_url(f"redis://127.0.0.1:{_free_port()}/0", prefix="t:")
    try:
        async with asyncio.timeout(DEADLINE_S):
            with pytest.raises(QueueUnavailable):
                await queue.put([b"x"])
            with pytest.raises(QueueUnavailable):
                await queue.take("w", 1, 1.0)
            with pytest.raises(QueueUnavailable):
                await queue.depth()
    finally:
        await queue.aclose()


class RedisServer:
    """A redis-server of the test's own that appends every write to disk."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            "--dir", str(self.directory),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEADLINE_S
        async with aioredis.Redis.from_url(self.url, socket_timeout=1.0) as probe:
            while True:
                try:
                    if await probe.ping():  # LOADING until the AOF is read back
                        return
                except (RedisError, OSError):
                    if loop.time() > deadline:
                        raise
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()  # SIGKILL: no shutdown, no last save
            await self.process.wait()


@pytest.fixture
def redis_binary() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is required on CI")
        pytest.skip("redis-server is not installed")
    yield binary


async def test_messages_outlive_a_redis_restart(redis_binary: str, tmp_path: Path) -> None:
    server = RedisServer(redis_binary, tmp_path)
    try:
        await server.start()
        queue = RedisStreamQueue.from_url(
            server.url, prefix="restart:", timeout_s=2.0, max_block_s=0.5
        )
        try:
            payloads = [f"m{i}".encode() for i in range(50)]
            await queue.put(payloads)
            first = await queue.take("a", 10, DEADLINE_S)
            await queue.ack(first)
            # Several pooled connections, every one of them dead after the kill.
            await asyncio.gather(*(queue.depth() for _ in range(4)))
            await server.kill()

            started = time.monotonic()
            async with asyncio.timeout(DEADLINE_S):
                with pytest.raises(QueueUnavailable):
                    await queue.take("a", 10, 0.5)
                with pytest.raises(QueueUnavailable):
                    await queue.depth()
            assert time.monotonic() - started < DEADLINE_S / 2

            await server.start()
            assert await queue.depth() == 40  # the first call after the restart works
            rest: list[bytes] = []
            loop = asyncio.get_running_loop()
            deadline = loop.time() + DEADLINE_S
            while len(rest) < 40 and loop.time() < deadline:
                taken = await queue.take("b", 10, 0.5)
                rest += [d.payload for d in taken]
                await queue.extend("b", taken)  # its Lua script is gone with the old server
                await queue.ack(taken)
            assert sorted(rest) == sorted(payloads[len(first) :])
            assert [d.payload for d in first] == payloads[:10]
            assert await queue.depth() == 0
        finally:
            await queue.aclose()
    finally:
        await server.kill()
