"""Two gateway processes sharing a real Redis: a breaker tripped by one is
honoured by the other."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from aiohttp import web

from tests.conftest import TEST_KEY
from tests.support.redis_scratch import require_redis
from tests.support.servers import FakeUpstream, GatewayProcess

AUTH = {"authorization": f"Bearer {TEST_KEY}"}
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
REDIS_URL = "redis://127.0.0.1:6379/14"


class CountingUpstream:
    def __init__(self, status: int):
        self.status = status
        self.calls = 0
        self.lock = threading.Lock()
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        with self.lock:
            self.calls += 1
        if self.status >= 400:
            return web.json_response({"error": {"message": "down"}}, status=self.status)
        return web.json_response(
            {
                "id": "c",
                "object": "chat.completion",
                "created": 1,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )


@pytest.fixture
def redis_url() -> str:
    require_redis(REDIS_URL)
    return REDIS_URL


def test_breaker_tripped_on_one_instance_stops_the_other(
    start_gateway: Callable[..., GatewayProcess],
    fake_upstream: Callable[[web.Application], FakeUpstream],
    redis_url: str,
) -> None:
    bad, good = CountingUpstream(500), CountingUpstream(200)
    deployments = [
        {
            "id": "bad",
            "provider": "openai",
            "model": "m",
            "priority": 0,
            "base_url": fake_upstream(bad.app).url + "/v1",
        },
        {
            "id": "good",
            "provider": "openai",
            "model": "m",
            "priority": 1,
            "base_url": fake_upstream(good.app).url + "/v1",
        },
    ]
    config = {
        "models": [
            {
                "name": "chat",
                "deployments": deployments,
                "routing": {"strategy": "priority", "breaker": {"open_s": 30, "max_open_s": 60}},
            }
        ],
        "keys": [{"name": "test", "key": "os.environ/TEST_KEY"}],
        "state": {"backend": "redis", "url": redis_url, "prefix": f"test-{uuid.uuid4().hex}:"},
        "server": {"access_log": False},
    }
    first, second = start_gateway(config), start_gateway(config)
    with httpx.Client(headers=AUTH, timeout=10) as client:
        # Instance one: every request tries `bad` first until its breaker trips.
        for _ in range(8):
            assert (
                client.post(first.base_url + "/v1/chat/completions", json=CHAT).status_code == 200
            )
        tripped_at = bad.calls
        assert tripped_at == 5  # consecutive_failures
        time.sleep(0.6)  # the other instance refreshes shared breaker state every 0.5 s
        for _ in range(10):
            response = client.post(second.base_url + "/v1/chat/completions", json=CHAT)
            assert response.status_code == 200
            assert response.headers["x-interlock-deployment"] == "good"
    assert bad.calls == tripped_at  # instance two never sent to the open deployment
