"""Issue 13, defects 1, 2 and 8: what one request may ask of the gateway.

Every size a request controls is bounded at validation, and the work a
request causes in the gateway's own process (the simulator's vectors and
token counts) never holds the event loop for long: ``/health/live`` keeps
answering while the largest allowed request is served. Against a gateway
process started with the bundled simulator models, as a new user runs it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.support.servers import GatewayProcess

DEV_KEY = "sk-dev-bounds"
AUTH = {"authorization": f"Bearer {DEV_KEY}"}
# Far above a healthy answer (~1 ms) and far below the stalls these tests
# guard against (5-80 s before the fixes): generous for a busy CI machine.
LIVE_WITHIN_S = 2.0


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(
        None, tmp_path_factory.mktemp("bounds"), env={"INTERLOCK_DEV_KEY": DEV_KEY}
    )
    yield gateway
    gateway.close()


def _post(gateway: GatewayProcess, path: str, body: Any, timeout: float = 60) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {**AUTH, "content-type": "application/json"}
    return httpx.post(gateway.base_url + path, content=content, headers=headers, timeout=timeout)


def _error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


class LivenessWatch:
    """Pings /health/live in a thread while the test works; the slowest answer."""

    def __init__(self, gateway: GatewayProcess):
        self._url = gateway.base_url + "/health/live"
        self._stop = threading.Event()
        self.slowest = 0.0
        self.pings = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LivenessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                began = time.perf_counter()
                assert client.get(self._url).status_code == 200
                self.slowest = max(self.slowest, time.perf_counter() - began)
                self.pings += 1
                self._stop.wait(0.02)


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"input": "hello", "dimensions": 2147483648}, "dimensions", "less than or equal"),
        ({"input": "hello", "dimensions": 10_000}, "dimensions", "at most 8192 dimensions"),
        ({"input": ["x"] * 100_000}, "input", "at most 2048 inputs"),
        ({"input": ["x"] * 2048, "dimensions": 8192}, "input", "numbers a request"),
    ],
)
def test_embedding_sizes_are_bounded_at_validation(
    gateway: GatewayProcess, body: dict[str, Any], param: str, words: str
) -> None:
    with LivenessWatch(gateway) as watch:
        response = _post(gateway, "/v1/embeddings", {"model": "embed-small", **body})
    assert response.status_code == 400
    error = _error(response)
    assert error["param"] == param and words in error["message"]
    assert watch.slowest < LIVE_WITHIN_S


def test_the_largest_allowed_embeddings_request_leaves_the_gateway_live(
    gateway: GatewayProcess,
) -> None:
    body = {"model": "embed-small", "input": [f"text {i}" for i in range(2048)]}
    with LivenessWatch(gateway) as watch:
        response = _post(gateway, "/v1/embeddings", body)
    assert response.status_code == 200
    assert len(response.json()["data"]) == 2048
    print(f"figure: 2,048 embeddings inputs, slowest /health/live {watch.slowest * 1000:.1f} ms")
    assert watch.pings > 0 and watch.slowest < LIVE_WITHIN_S


def test_a_prompt_of_millions_of_characters_leaves_the_gateway_live(
    gateway: GatewayProcess,
) -> None:
    """An 8,000,000-character prompt once held the loop ~5 s while tokenized."""
    prompt = "hello world, this is a very long prompt. " * 190_000
    body = {"model": "chat-small", "messages": [{"role": "user", "content": prompt}]}
    with LivenessWatch(gateway) as watch:
        response = _post(gateway, "/v1/chat/completions", body)
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] > 1_000_000
    print(f"figure: 7.8M-character prompt, slowest /health/live {watch.slowest * 1000:.1f} ms")
    assert watch.pings > 0 and watch.slowest < LIVE_WITHIN_S


def _nested(depth: int) -> Any:
    node: Any = 1
    for _ in range(depth - 1):
        node = [node]
    return node


@pytest.mark.parametrize("depth", [255, 600, 1000])
def test_json_nested_past_what_the_gateway_can_forward_is_a_400(
    gateway: GatewayProcess, depth: int
) -> None:
    body = b'{"model": "chat-small", "messages": [], "metadata": ' + b"[" * depth
    body += b"1" + b"]" * depth + b"}"
    response = _post(gateway, "/v1/chat/completions", body)
    assert response.status_code == 400
    error = _error(response)
    assert error["code"] == "invalid_json" and "nested more than 254 levels" in error["message"]


def test_json_nested_as_deep_as_allowed_is_served(gateway: GatewayProcess) -> None:
    """254 levels in all (the body is one): forwarded and hashed like any body."""
    body = {"model": "chat-small", "messages": [{"role": "user", "content": "hi"}]}
    body["extra"] = _nested(253)
    response = _post(gateway, "/v1/chat/completions", body)
    assert response.status_code == 200, response.text


def test_the_admin_key_is_accepted_as_a_bearer_token_only(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    config = {
        "models": [{"name": "m", "deployments": [{"id": "m-1", "provider": "simulator"}]}],
        "keys": [{"name": "k", "key": "os.environ/TEST_KEY"}],
        "server": {"admin_key": "sk-admin-secret"},
    }
    gateway = start_gateway(config)
    url = gateway.base_url
    for scheme in ("Basic", "Token", "bearer-ish"):
        refused = httpx.get(
            url + "/admin/keys", headers={"authorization": f"{scheme} sk-admin-secret"}
        )
        assert refused.status_code == 401, scheme
    accepted = httpx.get(url + "/admin/keys", headers={"authorization": "Bearer sk-admin-secret"})
    assert accepted.status_code == 200
    # Deployment health names every deployment: the admin's, by default.
    assert httpx.get(url + "/health/deployments").status_code == 401
    admin = httpx.get(
        url + "/health/deployments", headers={"authorization": "Bearer sk-admin-secret"}
    )
    assert admin.status_code == 200 and admin.json()["data"][0]["deployment"] == "m-1"


def test_deployment_health_can_be_opened_by_config(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    config = {
        "models": [{"name": "m", "deployments": [{"id": "m-1", "provider": "simulator"}]}],
        "keys": [{"name": "k", "key": "os.environ/TEST_KEY"}],
        "server": {"public_deployment_health": True},
    }
    gateway = start_gateway(config)
    assert httpx.get(gateway.base_url + "/health/deployments").status_code == 200
