"""Runs one test suite against every ``StateStore`` implementation.

A ``StoreHarness`` hands out stores that share state (two handles model two
gateway instances) and lets time pass: the memory store's clock is fake, so
``elapse`` just advances it; Redis keeps its own time, so ``elapse`` really
waits, and tests keep those TTLs at tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio as aioredis

from interlock.state import MemoryStateStore, RedisStateStore, StateStore
from tests.support.clock import FakeClock

REDIS_URL = "redis://127.0.0.1:6379/15"
BACKENDS = ["memory", "redis"]


class StoreHarness:
    def __init__(self, backend: str, clock: FakeClock, prefix: str):
        self.backend = backend
        self.clock = clock
        self.prefix = prefix
        self._memory = MemoryStateStore(clock)
        self._opened: list[StateStore] = []
        self.store = self.new_store()

    def new_store(self) -> StateStore:
        """Another handle on the same shared state (another 'instance')."""
        if self.backend == "memory":
            return self._memory
        store = RedisStateStore(REDIS_URL, prefix=self.prefix, timeout_s=1.0)
        self._opened.append(store)
        return store

    async def elapse(self, seconds: float) -> None:
        if self.backend == "memory":
            self.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)

    async def aclose(self) -> None:
        for store in self._opened:
            await store.aclose()


async def _redis_reachable() -> bool:
    probe = RedisStateStore(REDIS_URL, timeout_s=0.5)
    try:
        return await probe.ping()
    finally:
        await probe.aclose()


async def _drop_keys(prefix: str) -> None:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@asynccontextmanager
async def open_harness(backend: str) -> AsyncIterator[StoreHarness]:
    """A harness for ``backend``; Redis is skipped when absent, except in CI."""
    prefix = f"test:{uuid.uuid4().hex}:"
    if backend == "redis" and not await _redis_reachable():
        message = f"Redis not reachable at {REDIS_URL}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: the Redis suite must run)")
        pytest.skip(message)
    harness = StoreHarness(backend, FakeClock(), prefix)
    try:
        yield harness
    finally:
        await harness.aclose()
        if backend == "redis":
            await _drop_keys(prefix)
