"""kill -9 and SIGTERM lose no usage record of an answered request, on
SQLite and PostgreSQL.

A real gateway serves chat completions (some streamed); the test keeps the
request id of every 200 it read to the end. Part of the load is committed
before the kill; for the rest the test holds the ledger table's write lock,
so those records are only in the gateway's memory and its journal when
``kill -9`` comes. A second gateway on the same store replays the journal:
every answered request is in the ledger exactly once.

SIGTERM comes while streams are half-sent and more requests keep coming: the
gateway drains (what it had begun completes, what comes after is refused)
and exits 0 with every answered request in the ledger exactly once, and none
of the refused ones, without a second start.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from interlock.store import create_engine
from interlock.store.engine import write_engine
from tests.conftest import TEST_KEY, simulator_config
from tests.support.pg_scratch import scratch_database_async
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
    async with scratch_database_async("interlock_kill") as url:
        yield url


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


# -- SIGTERM --------------------------------------------------------------------

TERM_WORKERS = 24
ANSWERED_BEFORE_TERM = 40  # a second or more: the ledger's writer (every 0.5 s) has run
STREAMS_AT_TERM = 4  # streams that have their first chunk and not their end
LATE_PROBES = 4


@dataclass
class Load:
    """What the clients saw, by request id, and the moment of the signal."""

    gateway: GatewayProcess
    answered: list[str] = field(default_factory=list)  # 200, read to its end
    refused: dict[str, str] = field(default_factory=dict)  # how: a 503, or no connection
    unexpected: list[str] = field(default_factory=list)  # anything else
    mid_stream: set[str] = field(default_factory=set)
    at_signal: set[str] = field(default_factory=set)  # mid_stream when signalled
    signalled: asyncio.Event = field(default_factory=asyncio.Event)

    def first_chunk(self, request_id: str) -> None:
        self.mid_stream.add(request_id)
        if (
            not self.signalled.is_set()
            and len(self.answered) >= ANSWERED_BEFORE_TERM
            and len(self.mid_stream) >= STREAMS_AT_TERM
        ):
            # Sent from here, not from a task woken later: at this instant
            # these streams have begun and not ended.
            self.at_signal = set(self.mid_stream)
            self.signalled.set()
            self.gateway.proc.send_signal(signal.SIGTERM)

    def count(self, request_id: str, outcome: str) -> bool:
        """Keep ``outcome``; whether the client goes on."""
        if outcome == "answered":
            self.answered.append(request_id)
            return True
        if outcome.startswith("refused"):
            self.refused[request_id] = outcome
        else:
            self.unexpected.append(f"{request_id}: {outcome}")
        return False


async def _request(client: httpx.AsyncClient, load: Load, request_id: str, stream: bool) -> str:
    """One chat completion: ``answered``, ``refused`` or what else happened."""
    body: dict[str, Any] = {
        "model": "sim",
        "messages": [{"role": "user", "content": request_id}],
        "stream": stream,
    }
    headers = {**AUTH, "x-request-id": request_id}
    url, began = "/v1/chat/completions", False
    try:
        if not stream:
            response = await client.post(url, json=body, headers=headers)
            if response.status_code == 200 and response.json()["choices"]:
                return "answered"
            return _refusal(response)
        async with client.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
                return _refusal(response)
            last, began = "", True
            async for line in response.aiter_lines():
                if line and not last:
                    load.first_chunk(request_id)
                last = line or last
            return "answered" if last == "data: [DONE]" else f"stream ended with {last!r}"
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError) as exc:
        if began or not load.signalled.is_set():
            return f"cut: {exc!r}"
        # Refused at the door: the listener is closed, or the drain closed an
        # idle kept-alive connection as this request went out on it.
        return f"refused: {type(exc).__name__}"
    finally:
        load.mid_stream.discard(request_id)


def _refusal(response: httpx.Response) -> str:
    error = response.json()["error"]
    if response.status_code == 503 and error["code"] == "service_unavailable":
        return "refused: 503"
    return f"{response.status_code} {error}"


async def _worker(client: httpx.AsyncClient, load: Load, worker: int) -> None:
    """Requests one after another (every other one streamed) until one is
    refused after the signal."""
    for n in itertools.count():
        request_id = f"term-{worker}-{n}"
        stream = bool((worker + n) % 2)
        if not load.count(request_id, await _request(client, load, request_id, stream)):
            return


async def _late(client: httpx.AsyncClient, load: Load, probe: int) -> None:
    """A request on a kept-alive connection right after the signal: served
    (``Connection: close``) if it comes before the drain closes idle
    connections, refused after."""
    request_id = f"term-late-{probe}"
    if load.count(request_id + "-warm", await _request(client, load, request_id + "-warm", False)):
        await load.signalled.wait()
        load.count(request_id, await _request(client, load, request_id, False))


async def test_sigterm_drains_and_loses_no_answered_request(
    start_gateway: Callable[..., GatewayProcess], store_url: str, tmp_path: Path
) -> None:
    # Streams take ~0.5 to 1 s after their first chunk (10 to 20 tokens at 20
    # a second): well after the signal on any machine.
    config = simulator_config(ttft_ms=50, tokens_per_s=20, max_tokens=20)
    config["store"] = {"url": store_url}
    config["server"] = {"drain_timeout_s": 30, "access_log": False}
    gateway = start_gateway(config, env={"INTERLOCK_DATA_DIR": str(tmp_path / "data")})
    load = Load(gateway)
    limits = httpx.Limits(max_connections=TERM_WORKERS, max_keepalive_connections=TERM_WORKERS)
    async with (
        asyncio.timeout(60),
        httpx.AsyncClient(base_url=gateway.base_url, timeout=30, limits=limits) as client,
        httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as late,
    ):
        await asyncio.gather(
            *(_worker(client, load, w) for w in range(TERM_WORKERS)),
            *(_late(late, load, p) for p in range(LATE_PROBES)),
        )
    exit_code = await asyncio.to_thread(gateway.proc.wait, 30)
    store = Store(create_engine(store_url))
    try:
        in_ledger = await store.request_ids()
    finally:
        await store.engine.dispose()
    print(
        f"figure: {len(load.answered)} answered, {len(load.at_signal)} streams under way at "
        f"the signal, refusals {sorted(Counter(load.refused.values()).items())}"
    )
    assert load.signalled.is_set() and not load.unexpected, load.unexpected
    assert exit_code == 0  # drained, not killed
    assert len(load.at_signal) >= STREAMS_AT_TERM
    assert load.at_signal <= set(load.answered)  # streams under way when it came: finished
    assert len(load.refused) >= TERM_WORKERS  # each worker's last request, and late ones
    assert len(set(in_ledger)) == len(in_ledger)  # none twice
    assert sorted(in_ledger) == sorted(load.answered)  # every answer; no refusal
