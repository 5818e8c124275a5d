"""Two gateways sharing one Redis serve one search: started on one, read
(status and stream, resumed with Last-Event-ID) on the other."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from interlock.app import create_app
from interlock.config import parse_config
from interlock.search.index import IndexWriter
from tests.conftest import TEST_KEY, simulator_config
from tests.search.test_api import DOCS, _events
from tests.support.redis_scratch import scratch_prefix
from tests.support.servers import InProcessGateway

REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture
def prefix() -> Iterator[str]:
    with scratch_prefix(REDIS_URL, "search") as prefix:
        yield prefix


def _gateway(index: Path, prefix: str) -> InProcessGateway:
    raw: dict[str, Any] = {
        **simulator_config(tokens_per_s=0, max_tokens=8),
        "search": {"backends": [{"type": "local", "path": str(index)}], "model": "sim"},
        "state": {"backend": "redis", "url": REDIS_URL, "prefix": prefix},
        "server": {"access_log": False},
    }
    return InProcessGateway(create_app(parse_config(raw, env={"TEST_KEY": TEST_KEY})))


def test_a_search_started_on_one_instance_is_read_on_the_other(tmp_path: Path, prefix: str) -> None:
    index = tmp_path / "index.sqlite3"
    with IndexWriter(index) as writer:
        writer.add_all(DOCS)
    one, other = _gateway(index, prefix), _gateway(index, prefix)
    try:
        accepted = httpx.post(
            one.base_url + "/api/v1/search",
            json={"query": "how fast does light travel"},
            headers={"authorization": f"Bearer {TEST_KEY}"},
            timeout=30,
        )
        assert accepted.status_code == 202
        task_id = accepted.json()["task_id"]

        events = _events(other, task_id)  # polled from Redis: not this instance's run
        assert events[0]["event"] == "results" and events[-1]["event"] == "complete"
        assert [e["id"] for e in events] == list(range(1, len(events) + 1))
        assert _events(one, task_id, **{"last-event-id": "3"}) == events[3:]
        status = httpx.get(f"{other.base_url}/api/v1/search/status/{task_id}").json()
        assert status["status"] == "completed"
        assert status["summary"] == events[-1]["data"]["summary"]
    finally:
        one.close()
        other.close()
