"""What an operator console reads, through a real gateway: an upstream that
answers 500 trips its breaker, ``/health/deployments`` shows it open with the
transition, the failed requests are listed and found by ``x-request-id``, and
the added-latency histogram counts each request a deployment answered."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from interlock.app import create_app
from interlock.config import parse_config
from tests.conftest import TEST_KEY
from tests.support.servers import FakeUpstream, InProcessGateway

AUTH = {"authorization": f"Bearer {TEST_KEY}"}
ADMIN = {"authorization": "Bearer sk-admin"}
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}


async def broken(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"error": {"message": "boom"}}, status=500)


@pytest.fixture
def gateway(
    fake_upstream: Callable[[web.Application], FakeUpstream], tmp_path: Path
) -> Iterator[InProcessGateway]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", broken)
    upstream = fake_upstream(app)
    raw = {
        "models": [
            {
                "name": "chat",
                "deployments": [
                    {
                        "id": "up-1",
                        "provider": "openai",
                        "model": "m",
                        "base_url": upstream.url + "/v1",
                    }
                ],
                "routing": {
                    "max_attempts": 1,
                    "breaker": {"consecutive_failures": 2, "open_s": 60, "max_open_s": 120},
                },
            }
        ],
        "keys": [{"name": "k", "key": TEST_KEY}],
        "server": {"admin_key": "sk-admin", "access_log": False},
        # Records of its own: no other test's registered versions among the deployments.
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"},
    }
    started = InProcessGateway(create_app(parse_config(raw, env={})))
    yield started
    started.close()


def _added_count(metrics_text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == "interlock_gateway_added_seconds_count"
    )


def test_a_tripped_breaker_and_its_failed_requests_are_visible(gateway: InProcessGateway) -> None:
    with httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        statuses = [
            client.post(
                "/v1/chat/completions", json=CHAT, headers={**AUTH, "x-request-id": f"fail-{i}"}
            ).status_code
            for i in range(3)
        ]
        health = client.get("/health/deployments", headers=ADMIN).json()["data"]
        failed = client.get("/admin/requests/failed?limit=10", headers=ADMIN)
        found = client.get("/admin/requests/fail-1", headers=ADMIN)
        missing = client.get("/admin/requests/never-seen", headers=ADMIN)
        unauthorised = client.get("/admin/requests/failed")
        bad_limit = client.get("/admin/requests/failed?limit=0", headers=ADMIN)
        scraped = client.get("/metrics").text

    assert statuses[0] >= 500 and statuses[1] >= 500
    assert statuses[2] == 503  # the breaker is open: a fast 503, upstream untouched
    (deployment,) = [d for d in health if d["deployment"] == "up-1"]
    assert deployment["breaker"] == "open"
    assert [(e["from"], e["to"]) for e in deployment["breaker_history"]] == [("closed", "open")]
    assert isinstance(deployment["breaker_history"][0]["at"], float)

    assert failed.status_code == 200 and failed.json()["object"] == "list"
    listed = [e["request_id"] for e in failed.json()["data"]]
    assert listed[:3] == ["fail-2", "fail-1", "fail-0"]  # newest first
    assert found.status_code == 200
    entry = found.json()
    assert entry["request_id"] == "fail-1" and entry["deployment"] == "up-1"
    assert entry["status"] >= 500 and "upstream" in entry["stages_ms"]
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"  # OpenAI's error shape
    assert unauthorised.status_code == 401
    assert bad_limit.status_code == 400

    # Two requests reached the deployment; the third met the open breaker.
    assert _added_count(scraped) == 2
