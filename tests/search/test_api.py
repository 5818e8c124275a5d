"""The search API over HTTP, against a gateway with a local index built by
the test: 202 then status and the SSE stream, ``Last-Event-ID``, the errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from interlock.app import create_app
from interlock.config import parse_config
from interlock.search.index import IndexWriter
from interlock.search.sources import Document
from tests.conftest import TEST_KEY, simulator_config
from tests.support.servers import InProcessGateway

# One in-process gateway for the module's tests (conftest checks its SQLite connections).
pytestmark = pytest.mark.shared_gateway

AUTH = {"authorization": f"Bearer {TEST_KEY}"}
DOCS = [
    Document(
        "Speed of light",
        "https://interlock.invalid/corpus/light",
        "Light travels through a vacuum at about 299,792 kilometres per second.",
    ),
    Document(
        "Speed of sound",
        "https://interlock.invalid/corpus/sound",
        "Sound travels through dry air at about 343 metres per second.",
    ),
    Document(
        "Lightning <script>alert(1)</script>",
        "https://interlock.invalid/corpus/lightning",
        "Lightning is a sudden discharge of static electricity; its light arrives first.",
    ),
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    index = tmp_path_factory.mktemp("search") / "index.sqlite3"
    with IndexWriter(index) as writer:
        writer.add_all(DOCS)
    raw: dict[str, Any] = {
        **simulator_config(tokens_per_s=0, max_tokens=8),
        "search": {"backends": [{"type": "local", "path": str(index)}], "model": "sim"},
        "server": {"access_log": False},
        # Shared by the module's tests: no batch worker opening pool connections mid-test.
        "batch": {"enabled": False},
        "registry": {"enabled": False},
    }
    gateway = InProcessGateway(create_app(parse_config(raw, env={"TEST_KEY": TEST_KEY})))
    yield gateway
    gateway.close()


def _start(gateway: InProcessGateway, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(
        gateway.base_url + "/api/v1/search", json=body, headers={**AUTH, **headers}, timeout=30
    )


def _events(gateway: InProcessGateway, task_id: str, **headers: str) -> list[dict[str, Any]]:
    """Every event of the stream, read to its end."""
    url = f"{gateway.base_url}/api/v1/search/stream/{task_id}"
    events: list[dict[str, Any]] = []
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event: dict[str, Any] = {}
        for line in response.iter_lines():
            if not line:
                if event:
                    events.append(event)
                event = {}
            elif line.startswith("id: "):
                event["id"] = int(line[4:])
            elif line.startswith("event: "):
                event["event"] = line[7:]
            elif line.startswith("data: "):
                event["data"] = orjson.loads(line[6:])
    return events


def test_a_search_is_accepted_then_streamed_then_complete(gateway: InProcessGateway) -> None:
    accepted = _start(gateway, {"query": "how fast does light travel", "num_results": 3})
    assert accepted.status_code == 202
    task = accepted.json()
    assert task["status"] == "pending" and task["streaming"] is True
    assert task["query"] == "how fast does light travel"

    events = _events(gateway, task["task_id"])
    assert events[0]["event"] == "results"
    results = events[0]["data"]["results"]
    assert results[0]["url"] == "https://interlock.invalid/corpus/light"
    assert set(results[0]) == {"title", "url", "snippet", "source", "rank"}
    assert events[-1]["event"] == "complete"
    summary = events[-1]["data"]["summary"]
    assert "[1]" in summary and "<" not in summary

    status = httpx.get(f"{gateway.base_url}/api/v1/search/status/{task['task_id']}").json()
    assert status["status"] == "completed" and status["summary"] == summary
    assert status["backend"] == "local" and status["citations"][0]["n"] == 1

    resumed = _events(gateway, task["task_id"], **{"last-event-id": "2"})
    assert resumed == events[2:]


def test_markup_in_results_never_reaches_the_summary_unescaped(gateway: InProcessGateway) -> None:
    task = _start(gateway, {"query": "lightning discharge"}).json()
    events = _events(gateway, task["task_id"])
    text = "".join(e["data"]["text"] for e in events if e["event"] == "summary")
    final = events[-1]["data"]["summary"]
    for summary in (text, final):
        assert "<script" not in summary


@pytest.mark.parametrize(
    ("body", "headers", "status", "code"),
    [
        ({"query": "light"}, {"authorization": "Bearer sk-wrong"}, 401, "invalid_api_key"),
        ({"query": "x" * 600}, {}, 400, "query_too_long"),
        ({"query": "light", "num_results": 50}, {}, 400, None),
        ({"query": "light", "model": "no-such-model"}, {}, 404, "model_not_found"),
    ],
)
def test_errors_are_in_openai_shape(
    gateway: InProcessGateway, body: dict[str, Any], headers: dict[str, str], status: int, code: str
) -> None:
    response = _start(gateway, body, **headers)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if code is not None:
        assert error["code"] == code


def test_an_unknown_task_is_a_404_on_both_reads(gateway: InProcessGateway) -> None:
    for path in ("status", "stream"):
        response = httpx.get(f"{gateway.base_url}/api/v1/search/{path}/search_nope")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_a_bad_last_event_id_is_a_400(gateway: InProcessGateway) -> None:
    task = _start(gateway, {"query": "light"}).json()
    url = f"{gateway.base_url}/api/v1/search/stream/{task['task_id']}"
    response = httpx.get(url, headers={"last-event-id": "not-a-number"})
    assert response.status_code == 400


def test_search_can_be_turned_off(tmp_path: Path) -> None:
    raw = {**simulator_config(), "search": {"enabled": False}, "server": {"access_log": False}}
    gateway = InProcessGateway(create_app(parse_config(raw, env={"TEST_KEY": TEST_KEY})))
    try:
        response = httpx.post(
            gateway.base_url + "/api/v1/search", json={"query": "x"}, headers=AUTH
        )
    finally:
        gateway.close()
    assert response.status_code == 404


def test_anonymous_visitors_behind_a_trusted_proxy_are_told_apart(tmp_path: Path) -> None:
    index = tmp_path / "index.sqlite3"
    with IndexWriter(index) as writer:
        writer.add_all(DOCS)
    raw: dict[str, Any] = {
        **simulator_config(tokens_per_s=0, max_tokens=8),
        "search": {
            "backends": [{"type": "local", "path": str(index)}],
            "model": "sim",
            "anonymous": {"enabled": True, "rpm": 1, "trusted_proxies": ["127.0.0.1"]},
        },
        "server": {"access_log": False},
    }
    gateway = InProcessGateway(create_app(parse_config(raw, env={"TEST_KEY": TEST_KEY})))
    url = gateway.base_url + "/api/v1/search"

    def search(visitor: str) -> int:
        headers = {"x-forwarded-for": visitor}
        return httpx.post(url, json={"query": "light"}, headers=headers, timeout=30).status_code

    try:
        assert [search("203.0.113.9"), search("203.0.113.9"), search("198.51.100.7")] == [
            202,
            429,
            202,
        ]
    finally:
        gateway.close()
