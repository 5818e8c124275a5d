"""kill -9 loses no usage record of an answered request, on SQLite and PostgreSQL.

A real gateway serves chat completions (some streamed); the test keeps the
request id of every 200 it read to the end. Part of the load is committed
before the kill; for the rest the test holds the ledger table's write lock,
so those records are only in the gateway's memory and its journal when
``kill -9`` comes. A second gateway on the same store replays the journal:
every answered request is in the ledger exactly once.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from interlock.store import create_engine
from interlock.store.engine import write_engine
from tests.conftest import TEST_KEY, simulator_config
from tests.store.conftest import PG_URL, _postgres_reachable
from tests.support.servers import GatewayProcess

AUTH = {"authorization": f"Bearer {TEST_KEY}"}
COMMITTED, JOURNALED = 100, 200  # requests before the table is locked, and after
CONCURRENCY = 16


@dataclass
class Store:
    """The gateway's store as the test reaches it."""

    engine: AsyncEngine

    def locked(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A transaction that keeps the gateway's ledger writes waiting."""
        return _locked(self.engine)

    async def request_ids(self, conn: AsyncConnection | None = None) -> list[str]:
        query = sa.text("SELECT request_id FROM usage_ledger")
        if conn is not None:
            return list((await conn.execute(query)).scalars())
        async with self.engine.connect() as fresh:
            return list((await fresh.execute(query)).scalars())


@asynccontextmanager
async def _locked(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    if engine.dialect.name == "sqlite":
        async with write_engine(engine).begin() as conn:  # BEGIN IMMEDIATE: the write lock
            yield conn
        return
    async with engine.begin() as conn:  # reads go on; inserts wait
        await conn.execute(sa.text("LOCK TABLE usage_ledger IN EXCLUSIVE MODE"))
        yield conn


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The gateway's store: SQLite in its data directory, or a database of its own."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'interlock.db'}"
        return
    if not _postgres_reachable():
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL not reachable at {PG_URL} (CI=true: it must run)")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    name = f"interlock_kill_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(f'DROP DATABASE "{name}" WITH (FORCE)')


async def _admin(statement: str) -> None:
    engine = create_engine(PG_URL).execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


async def _serve(base_url: str, count: int) -> list[str]:
    """``count`` chat completions, every third streamed; the ids of the
    answers read to their end with a 200."""
    answered: list[str] = []
    slots = asyncio.Semaphore(CONCURRENCY)
    url = base_url + "/v1/chat/completions"

    async def one(client: httpx.AsyncClient, i: int) -> None:
        body: dict[str, Any] = {"model": "sim", "messages": [{"role": "user", "content": f"{i}"}]}
        async with slots:
            if i % 3:
                response = await client.post(url, json=body, headers=AUTH)
                if response.status_code == 200 and response.json()["choices"]:
                    answered.append(response.headers["x-request-id"])
                return
            body["stream"] = True
            async with client.stream("POST", url, json=body, headers=AUTH) as response:
                lines = [line async for line in response.aiter_lines() if line]
                if response.status_code == 200 and lines[-1] == "data: [DONE]":
                    answered.append(response.headers["x-request-id"])

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(one(client, i) for i in range(count)))
        # Every answer above was sent before this one: their records were
        # added, and the event loop has turned since (the journal's write).
        assert (await client.get(base_url + "/health/live")).status_code == 200
    return answered


async def _until(predicate: Callable[[], Awaitable[bool]], bound_s: float = 30.0) -> None:
    """Poll: the condition is another process's commit, no event of ours."""
    async with asyncio.timeout(bound_s):
        while not await predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_kill_9_loses_no_answered_request(
    start_gateway: Callable[..., GatewayProcess], store_url: str, tmp_path: Path
) -> None:
    config = simulator_config()
    config["store"] = {"url": store_url}
    env = {"INTERLOCK_DATA_DIR": str(tmp_path / "data")}
    gateway = start_gateway(config, env=env)
    store = Store(create_engine(store_url))
    try:
        answered = await _serve(gateway.base_url, COMMITTED)

        async def all_committed() -> bool:
            return len(await store.request_ids()) == COMMITTED

        await _until(all_committed)
        async with store.locked() as conn:
            answered += await _serve(gateway.base_url, JOURNALED)
            assert len(await store.request_ids(conn)) == COMMITTED  # the rest: memory only
            gateway.proc.kill()
            assert gateway.proc.wait(10) == -9
        start_gateway(config, env=env)  # replays the journal before it listens
        in_ledger = await store.request_ids()
    finally:
        await store.engine.dispose()
    assert len(answered) == COMMITTED + JOURNALED
    assert sorted(in_ledger) == sorted(answered)  # each exactly once
    assert len(set(in_ledger)) == len(in_ledger)
