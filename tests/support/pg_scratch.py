"""A PostgreSQL database of a test's own on the server at ``PG_URL``,
dropped afterwards: required on CI (a failure), skipped elsewhere when the
server is not running."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from interlock.store import create_engine
from tests.store.conftest import PG_URL, _postgres_reachable

__all__ = ["scratch_database", "scratch_database_async"]


def _require_postgres() -> None:
    if not _postgres_reachable():
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL not reachable at {PG_URL} (CI=true: it must run)")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")


async def _admin(statement: str) -> None:
    # Creating or dropping a database checkpoints: on a busy machine that
    # took longer than the engine's 15 s default for a statement.
    engine = create_engine(PG_URL, command_timeout_s=120).execution_options(
        isolation_level="AUTOCOMMIT"
    )
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


@asynccontextmanager
async def scratch_database_async(prefix: str) -> AsyncIterator[str]:
    """The URL of a fresh database named ``<prefix>_<random>``."""
    _require_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(f'DROP DATABASE "{name}" WITH (FORCE)')


@contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """``scratch_database_async`` for synchronous tests (no running loop)."""
    _require_postgres()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE "{name}" WITH (FORCE)'))
