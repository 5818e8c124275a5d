"""Every records-store test runs against SQLite (a file in tmp_path) and PostgreSQL.

PostgreSQL tests each get a fresh schema (through the engine's ``search_path``)
and drop it afterwards. Without a server they skip, except in CI (``CI=true``),
where a skipped backend would hide a failure.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.store import KeyStore, UsageLedger, create_engine, migrate

PG_URL = os.environ.get(
    "INTERLOCK_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ["sqlite", "postgresql"]


@dataclass
class Backend:
    """Where one test's store lives; ``engine()`` opens another pool on it (another process)."""

    name: str
    url: str
    pg_schema: str | None = None
    _engines: list[AsyncEngine] = field(default_factory=list)

    def engine(self) -> AsyncEngine:
        engine = create_engine(self.url, pg_schema=self.pg_schema, command_timeout_s=5.0)
        self._engines.append(engine)
        return engine

    async def sql(self, statement: str) -> None:
        """Run raw SQL outside the code under test (e.g. to break a table)."""
        engine = self.engine()
        async with engine.begin() as conn:
            await conn.execute(sa.text(statement))

    async def dispose(self) -> None:
        for engine in self._engines:
            await engine.dispose()


def _postgres_reachable() -> bool:
    url = make_url(PG_URL)
    try:
        with socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "sqlite":
        found = Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'db' / 'interlock.db'}")
        yield found
        await found.dispose()
        return
    if not _postgres_reachable():
        message = f"PostgreSQL not reachable at {PG_URL}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: the PostgreSQL suite must run)")
        pytest.skip(message)
    schema = f"test_{uuid.uuid4().hex}"
    admin = Backend("postgresql", PG_URL)
    await admin.sql(f'CREATE SCHEMA "{schema}"')
    found = Backend("postgresql", PG_URL, pg_schema=schema)
    try:
        yield found
    finally:
        await found.dispose()
        await admin.sql(f'DROP SCHEMA "{schema}" CASCADE')
        await admin.dispose()


@pytest.fixture
async def engine(backend: Backend) -> AsyncEngine:
    """A migrated engine (disposed by ``backend``)."""
    engine = backend.engine()
    await migrate(engine)
    return engine


class FakeClock:
    """A wall clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def keys(engine: AsyncEngine, clock: FakeClock) -> KeyStore:
    return KeyStore(engine, clock=clock)


@pytest.fixture
async def make_ledger(engine: AsyncEngine) -> AsyncIterator[Callable[..., UsageLedger]]:
    """Ledgers on the test's engine, closed (flushed) before the engine goes."""
    made: list[UsageLedger] = []

    def make(**options: Any) -> UsageLedger:
        ledger = UsageLedger(engine, **options)
        made.append(ledger)
        return ledger

    yield make
    for ledger in made:
        await ledger.aclose()
