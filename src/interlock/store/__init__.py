"""Durable records: API keys and the usage ledger, on SQLite or PostgreSQL.

One code path for both backends (SQLAlchemy Core, async): SQLite in a file
under the data directory is the embedded default; PostgreSQL is for many
gateway instances sharing records. ``open_store`` is what the composition
root calls at start-up: it connects, migrates and starts the ledger's writer;
``Store.aclose`` writes what the ledger still holds and closes the pool.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.store.engine import create_engine
from interlock.store.keys import (
    KeyLimits,
    KeyNotFound,
    KeyRecord,
    KeyRevoked,
    KeyStore,
    hash_key,
)
from interlock.store.ledger import GroupBy, UsageLedger, UsageRecord
from interlock.store.migrations import migrate

__all__ = [
    "GroupBy",
    "KeyLimits",
    "KeyNotFound",
    "KeyRecord",
    "KeyRevoked",
    "KeyStore",
    "Store",
    "UsageLedger",
    "UsageRecord",
    "create_engine",
    "default_url",
    "hash_key",
    "migrate",
    "open_store",
]

DATA_DIR_ENV = "INTERLOCK_DATA_DIR"
DEFAULT_DATA_DIR = ".interlock"


def default_url(environ: Mapping[str, str] = os.environ) -> str:
    """The embedded store: ``interlock.db`` in ``$INTERLOCK_DATA_DIR`` or ``./.interlock/``.

    The directory is created, readable by its owner only (it holds key digests).
    """
    data_dir = Path(environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser().resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return f"sqlite+aiosqlite:///{data_dir / 'interlock.db'}"


@dataclass(frozen=True, slots=True)
class Store:
    """The records store's services over one engine."""

    engine: AsyncEngine
    keys: KeyStore
    ledger: UsageLedger

    async def ping(self, timeout_s: float = 1.0) -> bool:
        """Reachable within ``timeout_s``? Never raises (for readiness)."""
        try:
            async with asyncio.timeout(timeout_s), self.engine.connect() as connection:
                await connection.execute(sa.text("SELECT 1"))
        except Exception:
            return False
        return True

    async def aclose(self) -> None:
        """Flush the ledger (within its deadline), then close the pool."""
        try:
            await self.ledger.aclose()
        finally:
            await self.engine.dispose()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


async def open_store(
    url: str | None = None,
    *,
    pg_schema: str | None = None,
    ledger_flush_interval_s: float = 0.5,
    ledger_max_pending: int = 100_000,
) -> Store:
    """Connect to ``url`` (default: ``default_url()``), migrate, start the ledger's writer."""
    engine = create_engine(url or default_url(), pg_schema=pg_schema)
    try:
        await migrate(engine)
    except BaseException:
        await engine.dispose()
        raise
    ledger = UsageLedger(
        engine, flush_interval_s=ledger_flush_interval_s, max_pending=ledger_max_pending
    )
    ledger.start()
    return Store(engine=engine, keys=KeyStore(engine), ledger=ledger)
