"""Client disconnects cancel upstream work; SIGTERM drains, then exits 0."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from tests.conftest import TEST_KEY, simulator_config
from tests.support.servers import FakeUpstream, GatewayProcess

AUTH = {"authorization": f"Bearer {TEST_KEY}"}


class SlowStreamingUpstream:
    """An OpenAI-compatible upstream that streams forever, one chunk per
    ``gap_s``, and records when it notices its client went away."""

    def __init__(self, gap_s: float):
        self.gap_s = gap_s
        self.started = threading.Event()
        self.disconnected = threading.Event()
        self.disconnected_at = 0.0
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        self.started.set()
        chunk = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "tick"}, "finish_reason": None}],
        }
        try:
            while True:
                await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
                # Poll the connection while idle, so a close is seen at once
                # even between chunks.
                deadline = time.monotonic() + self.gap_s
                while time.monotonic() < deadline:
                    if request.transport is None or request.transport.is_closing():
                        raise ConnectionResetError
                    await asyncio.sleep(0.005)
        except (ConnectionResetError, asyncio.CancelledError):
            self.disconnected_at = time.monotonic()
            self.disconnected.set()
            raise


@pytest.mark.parametrize("gap_s", [0.02, 5.0])
def test_client_disconnect_cancels_upstream(
    start_gateway: Callable[..., GatewayProcess],
    fake_upstream: Callable[[web.Application], FakeUpstream],
    gap_s: float,
) -> None:
    slow = SlowStreamingUpstream(gap_s)
    upstream = fake_upstream(slow.app)
    config = {
        "models": [
            {
                "name": "remote",
                "deployments": [
                    {
                        "id": "up-1",
                        "provider": "openai",
                        "model": "m",
                        "base_url": upstream.url + "/v1",
                    }
                ],
            }
        ],
        "keys": [{"name": "test", "key": "os.environ/TEST_KEY"}],
    }
    gateway = start_gateway(config)
    body = {"model": "remote", "messages": [{"role": "user", "content": "go"}], "stream": True}
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST", gateway.base_url + "/v1/chat/completions", json=body, headers=AUTH
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        assert slow.started.is_set() and not slow.disconnected.is_set()
        closed_at = time.monotonic()
    # Leaving the block closed the client connection mid-stream.
    assert slow.disconnected.wait(2), "upstream never saw the disconnect"
    assert slow.disconnected_at - closed_at < 1.0
    assert gateway.proc.poll() is None


def _stream_in_thread(url: str, body: dict[str, Any], out: dict[str, Any]) -> threading.Thread:
    def run() -> None:
        try:
            with (
                httpx.Client(timeout=30) as client,
                client.stream("POST", url, json=body, headers=AUTH) as response,
            ):
                out["status"] = response.status_code
                out["lines"] = []
                for line in response.iter_lines():
                    if not line:
                        continue
                    out["lines"].append(line)
                    out.setdefault("first_at", time.monotonic())
        except httpx.HTTPError as exc:
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_for(predicate: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_sigterm_drains_in_flight_streams_then_exits_zero(
    start_gateway: Callable[..., GatewayProcess],
) -> None:
    config = simulator_config(tokens_per_s=25, max_tokens=30)  # a stream of about 1 s
    config["server"] = {"drain_timeout_s": 20}
    gateway = start_gateway(config)
    url = gateway.base_url + "/v1/chat/completions"
    body = {"model": "sim", "messages": [{"role": "user", "content": "x"}], "stream": True}
    out: dict[str, Any] = {}
    thread = _stream_in_thread(url, body, out)
    _wait_for(lambda: "first_at" in out)

    gateway.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    with pytest.raises(httpx.ConnectError):
        httpx.post(url, json={**body, "stream": False}, headers=AUTH, timeout=2)

    thread.join(15)
    assert out["status"] == 200 and "error" not in out
    assert out["lines"][-1] == "data: [DONE]"
    assert gateway.proc.wait(15) == 0


def test_drain_timeout_bounds_shutdown(start_gateway: Callable[..., GatewayProcess]) -> None:
    config = simulator_config(tokens_per_s=5, max_tokens=200)  # a stream of 20 s or more
    config["server"] = {"drain_timeout_s": 1}
    gateway = start_gateway(config)
    url = gateway.base_url + "/v1/chat/completions"
    body = {"model": "sim", "messages": [{"role": "user", "content": "x"}], "stream": True}
    out: dict[str, Any] = {}
    thread = _stream_in_thread(url, body, out)
    _wait_for(lambda: "first_at" in out)

    signalled = time.monotonic()
    gateway.proc.send_signal(signal.SIGTERM)
    assert gateway.proc.wait(10) == 0
    assert time.monotonic() - signalled < 5
    thread.join(5)
    assert "data: [DONE]" not in out.get("lines", [])
