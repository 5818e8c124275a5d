"""What only the Redis store promises: namespacing, bounded waits, one error type."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from interlock.state import RedisStateStore, StateStoreUnavailable, build_state_store
from tests.state.harness import REDIS_URL, open_harness


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    async with open_harness("redis") as harness:
        yield harness.prefix


async def test_prefixes_keep_tenants_apart(redis_prefix: str) -> None:
    ours = RedisStateStore(REDIS_URL, prefix=redis_prefix + "a:")
    theirs = RedisStateStore(REDIS_URL, prefix=redis_prefix + "b:")
    try:
        await ours.set("k", b"ours")
        assert await theirs.get("k") is None
        assert await theirs.set_if_absent("k", b"theirs")
        assert await ours.get("k") == b"ours"
    finally:
        await ours.aclose()
        await theirs.aclose()


async def test_chooser_builds_a_redis_store(redis_prefix: str) -> None:
    store = build_state_store("redis", REDIS_URL, prefix=redis_prefix)
    try:
        assert isinstance(store, RedisStateStore)
        assert await store.ping()
    finally:
        await store.aclose()


def test_repr_hides_the_url() -> None:
    store = RedisStateStore("redis://:hunter2@127.0.0.1:6379/15")
    assert "hunter2" not in repr(store)


async def _unused_port() -> int:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


async def test_refused_connection_is_unavailable_at_once() -> None:
    store = RedisStateStore(f"redis://127.0.0.1:{await _unused_port()}/0", timeout_s=0.5)
    try:
        started = time.perf_counter()
        with pytest.raises(StateStoreUnavailable):
            await store.incr("k")
        assert time.perf_counter() - started < 0.4  # no client-side retries with backoff
        assert not await store.ping()
    finally:
        await store.aclose()


async def test_a_server_that_never_answers_times_out() -> None:
    # Accepts the connection, then says nothing: only the read timeout ends the wait.
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = RedisStateStore(f"redis://127.0.0.1:{port}/0", timeout_s=0.05)
    try:
        started = time.perf_counter()
        with pytest.raises(StateStoreUnavailable):
            await store.get("k")
        assert time.perf_counter() - started < 0.5
    finally:
        await store.aclose()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
