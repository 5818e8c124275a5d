"""The app's lifespan shutdown leaves nothing running that would keep the
process alive after a drain."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from pathlib import Path
from typing import Any

from interlock.app import create_app
from interlock.config import parse_config
from tests.conftest import TEST_KEY, sqlite_workers


async def _run_lifespan(app: Any, up_for_s: float) -> None:
    """Start the app, keep it up for ``up_for_s``, shut it down (ASGI lifespan)."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: list[str] = []

    async def send(message: dict[str, str]) -> None:
        outbox.append(message["type"])

    await inbox.put({"type": "lifespan.startup"})
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, inbox.get, send)
    )
    while "lifespan.startup.complete" not in outbox:
        assert "lifespan.startup.failed" not in outbox
        await asyncio.sleep(0.001)
    await asyncio.sleep(up_for_s)
    await inbox.put({"type": "lifespan.shutdown"})
    await task
    assert outbox[-1] == "lifespan.shutdown.complete"


def test_shutdown_during_a_key_refresh_closes_every_sqlite_connection(tmp_path: Path) -> None:
    # The refresher polls every millisecond, so shutdown often lands mid-query.
    # A refresher only cancelled (not awaited) left that query's connection
    # open, and its worker thread kept `interlock serve` from exiting.
    raw = {
        "models": [{"name": "sim", "deployments": [{"id": "s", "provider": "simulator"}]}],
        "keys": [{"name": "k", "key": TEST_KEY}],
        "server": {"access_log": False},
        "admission": {"key_refresh_s": 0.001},
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"},
    }
    assert sqlite_workers() == [], "another test left a SQLite connection open"
    gc.disable()  # a collection would stop leaked workers and hide the leak
    try:
        for attempt in range(20):
            app = create_app(parse_config(raw, env={}))
            # The loop closes with shutdown, as uvicorn's does.
            asyncio.run(_run_lifespan(app, up_for_s=0.005 + attempt * 0.0005))
            deadline = time.monotonic() + 5
            while sqlite_workers() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert sqlite_workers() == [], f"a connection outlived shutdown (run {attempt})"
    finally:
        gc.enable()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()  # a failed run's leaked connections, stopped here
