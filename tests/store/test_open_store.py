from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from interlock.store import UsageRecord, create_engine, default_url, hash_key, open_store
from tests.store.conftest import Backend


def test_default_url_is_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "data" / "nested"
    url = default_url({"INTERLOCK_DATA_DIR": str(data_dir)})
    assert url == f"sqlite+aiosqlite:///{data_dir / 'interlock.db'}"
    assert data_dir.is_dir() and (data_dir.stat().st_mode & 0o777) == 0o700


def test_default_data_dir_is_dot_interlock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_url({}) == f"sqlite+aiosqlite:///{tmp_path / '.interlock' / 'interlock.db'}"
    assert (tmp_path / ".interlock").is_dir()


@pytest.mark.parametrize(
    "url", ["sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:", "mysql+aiomysql://x/y"]
)
def test_unsupported_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        create_engine(url)


async def test_open_store_with_no_url_uses_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTERLOCK_DATA_DIR", str(tmp_path / "d"))
    async with await open_store() as store:
        await store.keys.create("a", "free")
    assert (tmp_path / "d" / "interlock.db").is_file()


async def test_what_was_recorded_survives_a_restart(backend: Backend) -> None:
    store = await open_store(backend.url, pg_schema=backend.pg_schema)
    record, plain = await store.keys.create("a", "free")
    ts = datetime(2025, 3, 1, tzinfo=UTC)
    for i in range(100):
        store.ledger.add(UsageRecord(ts, f"r{i}", "a", "m", key_id=record.id, cost_usd=0.5))
    await store.aclose()  # what the lifespan shutdown does on SIGTERM

    async with await open_store(backend.url, pg_schema=backend.pg_schema) as again:
        assert await again.keys.get_by_hash(hash_key(plain)) == record
        assert await again.ledger.spend("a", ts) == 50.0
