"""The Redis users' shared rule: a command whose pooled connection was dead
runs once more on a fresh one, a timeout never does, and a busy pool is not
an outage. Real Redis behind a loopback proxy that can
break the connections it holds."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeoutError

from interlock.admission.limits import RedisLimiter
from interlock.admission.limits.base import KeyLimits
from interlock.state import RedisStateStore, StateStoreUnavailable
from interlock.state.health import StoreHealth
from interlock.state.redis_guard import RedisGuard
from interlock.state.redis_pool import bounded_pool, retry_dropped
from tests.state.harness import _redis_reachable

REDIS_PORT = 6379


class BreakingProxy:
    """Relays to Redis. ``poison`` makes every connection open now close as
    soon as the client sends on it (what a restarted Redis looks like to a
    pooled connection); ``blackhole`` makes new connections swallow commands."""

    def __init__(self) -> None:
        self.accepted = 0
        self.blackhole = False
        self._open: set[asyncio.StreamWriter] = set()
        self._poisoned: set[asyncio.StreamWriter] = set()
        self._sockets: set[asyncio.StreamWriter] = set()  # both sides, to abort on close
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def poison(self) -> None:
        self._poisoned |= self._open

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._sockets:
            writer.transport.abort()  # each relay sees it and ends
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        self._open.add(writer)
        self._sockets.add(writer)
        try:
            if self.blackhole:
                await reader.read()  # until the client gives up
                return
            redis_r, redis_w = await asyncio.open_connection("127.0.0.1", REDIS_PORT)
            self._sockets.add(redis_w)
            try:
                await asyncio.gather(self._forward(reader, redis_w, writer), _pipe(redis_r, writer))
            finally:
                redis_w.transport.abort()
        except OSError:
            pass
        finally:
            writer.transport.abort()
            self._open.discard(writer)
            self._tasks.discard(task)

    async def _forward(
        self, reader: asyncio.StreamReader, redis_w: asyncio.StreamWriter, client_w: object
    ) -> None:
        while data := await reader.read(65536):
            if client_w in self._poisoned:
                break
            redis_w.write(data)
            await redis_w.drain()
        redis_w.transport.abort()  # ends the other direction too


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.transport.abort()


@pytest.fixture
async def proxy() -> AsyncIterator[BreakingProxy]:
    if not await _redis_reachable():
        if os.environ.get("CI") == "true":
            pytest.fail("Redis at 127.0.0.1:6379 is required on CI")
        pytest.skip("Redis at 127.0.0.1:6379 is not reachable")
    proxy = BreakingProxy()
    await proxy.start()
    yield proxy
    await proxy.close()


async def test_the_limiter_replaces_each_stale_pooled_connection_without_an_error(
    proxy: BreakingProxy,
) -> None:
    limiter = RedisLimiter.from_url(
        f"redis://127.0.0.1:{proxy.port}/15", prefix=f"test-pool-{uuid.uuid4().hex}:"
    )
    limits = KeyLimits(rpm=1_000_000)
    try:
        # Eight calls at once: the pool opens and keeps eight connections.
        await asyncio.gather(*(limiter.admit("k", limits) for _ in range(8)))
        assert proxy.accepted == 8
        proxy.poison()  # every pooled connection now dies on its next command
        decisions = await asyncio.gather(*(limiter.admit("k", limits) for _ in range(8)))
    finally:
        await limiter.aclose()
    assert all(d.allowed for d in decisions)  # no StateStoreUnavailable
    assert proxy.accepted == 16  # each stale connection replaced once


async def test_the_state_store_replaces_a_stale_pooled_connection(proxy: BreakingProxy) -> None:
    store = RedisStateStore(
        f"redis://127.0.0.1:{proxy.port}/15", prefix=f"test-pool-{uuid.uuid4().hex}:"
    )
    try:
        assert await store.get("missing") is None
        proxy.poison()
        assert await store.get("missing") is None
    finally:
        await store.aclose()
    assert proxy.accepted == 2


async def test_a_timeout_is_not_retried(proxy: BreakingProxy) -> None:
    proxy.blackhole = True
    client = aioredis.Redis(
        connection_pool=bounded_pool(
            f"redis://127.0.0.1:{proxy.port}/15", max_connections=2, timeout_s=0.1
        )
    )
    try:
        with pytest.raises(RedisTimeoutError):
            await retry_dropped(client.ping)
    finally:
        await client.aclose()
    assert proxy.accepted == 1


async def test_a_busy_pool_refuses_the_call_but_does_not_trip_the_latch(
    proxy: BreakingProxy,
) -> None:
    """Every pooled connection in use is a busy process, not a Redis outage:
    the call that found none free within the wait is refused (the caller
    degrades that one call), but the health latch does not count it, so a
    burst does not send every request to per-instance limits."""
    pool = bounded_pool(f"redis://127.0.0.1:{proxy.port}/15", max_connections=1, timeout_s=0.05)
    client = aioredis.Redis(connection_pool=pool)
    health = StoreHealth(trip_after=2)
    guard = RedisGuard(client, health, deadline_s=1.0, probe_timeout_s=0.05)
    try:
        assert await guard.call(client.ping)
        held = await pool.get_connection()  # the only connection, taken
        for _ in range(health.trip_after + 2):
            with pytest.raises(StateStoreUnavailable, match="pool busy"):
                await guard.call(client.ping)
        assert health.available
        await pool.release(held)
        assert await guard.call(client.ping)
    finally:
        await guard.aclose()
        await client.aclose(close_connection_pool=True)
    assert proxy.accepted == 1  # one connection, never a second attempt to open one
