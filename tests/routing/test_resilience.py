"""The router against real failing upstreams: failover, breakers, fast 503s,
load shedding."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from interlock.app import create_app
from interlock.config import parse_config
from tests.conftest import TEST_KEY
from tests.search.fakes import FakeSearchService
from tests.support.servers import FakeUpstream, InProcessGateway

AUTH = {"authorization": f"Bearer {TEST_KEY}"}
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = {
    "id": "c",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


class Upstream:
    """An OpenAI-compatible upstream failing ``failure_rate`` of its calls
    with a mix of 500s, hangs (timeouts) and connection resets."""

    def __init__(
        self, failure_rate: float, seed: int, faults: tuple[str, ...] = ("500", "hang", "reset")
    ):
        self.failure_rate = failure_rate
        self.faults = faults
        self.rng = random.Random(seed)
        self.calls = 0
        self.lock = threading.Lock()
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        with self.lock:
            self.calls += 1
            draw = self.rng.random()
        if draw >= self.failure_rate:
            return web.json_response(COMPLETION)
        fault = self.faults[int(draw / self.failure_rate * len(self.faults))]
        if fault == "500":
            return web.json_response({"error": {"message": "boom"}}, status=500)
        if fault == "hang":
            # Far past the gateway's timeout; over once the gateway gives up on
            # it, so no handler outlives the test.
            for _ in range(300):
                await asyncio.sleep(0.1)
                if request.transport is None or request.transport.is_closing():
                    break
            return web.json_response(COMPLETION)
        assert request.transport is not None
        request.transport.abort()  # connection reset
        return web.Response()


def _config(urls: list[str], **extra: Any) -> dict[str, Any]:
    deployments = [
        {
            "id": f"up-{i}",
            "provider": "openai",
            "model": "m",
            "base_url": url + "/v1",
            # Wide enough that a healthy upstream never times out on a starved
            # CI machine (the gateway, the upstreams and the load share one
            # process there); a hang (30 s) is still far beyond it.
            "timeouts": {"total_s": 2, "ttft_s": 2, "connect_s": 1},
        }
        for i, url in enumerate(urls)
    ]
    return {
        "models": [{"name": "chat", "deployments": deployments}],
        "keys": [{"name": "k", "key": TEST_KEY}],
        "server": {"access_log": False},
        **extra,
    }


@pytest.fixture
def gateway_for() -> Iterator[Callable[[dict[str, Any]], InProcessGateway]]:
    started: list[InProcessGateway] = []

    def start(raw: dict[str, Any]) -> InProcessGateway:
        app = create_app(parse_config(raw, env={}), rng=random.Random(7))
        gateway = InProcessGateway(app)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.close()


async def _load(url: str, total: int, concurrency: int) -> tuple[list[int], float]:
    statuses: list[int] = []
    slowest = 0.0
    counter = itertools.count()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(headers=AUTH, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal slowest
            while next(counter) < total:
                began = time.monotonic()
                async with session.post(url + "/v1/chat/completions", json=CHAT) as response:
                    await response.read()
                    statuses.append(response.status)
                slowest = max(slowest, time.monotonic() - began)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses, slowest


def test_one_flaky_upstream_of_two_is_invisible_to_clients(
    fake_upstream: Callable[[web.Application], FakeUpstream],
    gateway_for: Callable[[dict[str, Any]], InProcessGateway],
) -> None:
    good, flaky = Upstream(0.0, 1), Upstream(0.5, 2)
    urls = [fake_upstream(good.app).url, fake_upstream(flaky.app).url]
    gateway = gateway_for(_config(urls))
    statuses, slowest = asyncio.run(_load(gateway.base_url, 2000, 20))
    assert len(statuses) == 2000  # nothing hung: every request came back
    assert statuses.count(200) / len(statuses) >= 0.999, {
        s: statuses.count(s) for s in set(statuses)
    }
    assert slowest < 8  # a hang upstream became a timeout and a failover, not a hang
    assert flaky.calls > 0 and good.calls > flaky.calls  # the breaker kept traffic away


def test_every_deployment_down_fails_fast_with_503(
    fake_upstream: Callable[[web.Application], FakeUpstream],
    gateway_for: Callable[[dict[str, Any]], InProcessGateway],
) -> None:
    # Errors and resets, not hangs, so "fast" is the gateway's doing.
    down = [Upstream(1.0, 3, ("500", "reset")), Upstream(1.0, 4, ("500", "reset"))]
    urls = [fake_upstream(u.app).url for u in down]
    gateway = gateway_for(_config(urls))
    statuses, _ = asyncio.run(_load(gateway.base_url, 200, 10))
    assert set(statuses) == {503}
    calls = sum(u.calls for u in down)
    began = time.monotonic()
    statuses, _ = asyncio.run(_load(gateway.base_url, 50, 10))
    assert set(statuses) == {503}
    # Breakers open: the upstreams are not called at all (at most a probe
    # each, should a cooldown end), so no request waits on one or on a
    # backoff. Counted, not timed: a busy CI machine stretches any time bound.
    assert sum(u.calls for u in down) - calls <= len(down)
    assert time.monotonic() - began < 15.0  # and nothing hangs


def test_load_shedding_at_five_times_the_cap(
    gateway_for: Callable[[dict[str, Any]], InProcessGateway],
) -> None:
    raw = {
        "models": [
            {
                "name": "chat",
                "deployments": [
                    {
                        "id": "sim",
                        "provider": "simulator",
                        # Long enough that the whole burst arrives while the
                        # first 20 are still in flight, even on a loaded machine
                        # (client and gateway share this process's GIL).
                        "params": {"ttft_ms": 1000, "max_tokens": 2},
                    }
                ],
            }
        ],
        "keys": [{"name": "k", "key": TEST_KEY}],
        "server": {"access_log": False},
        "limits": {"max_in_flight": 20, "max_queue": 10, "queue_timeout_s": 0.05},
    }
    gateway = gateway_for(raw)

    async def burst() -> list[tuple[int, str | None]]:
        async with aiohttp.ClientSession(headers=AUTH) as session:

            async def one() -> tuple[int, str | None]:
                async with session.post(
                    gateway.base_url + "/v1/chat/completions", json=CHAT
                ) as response:
                    await response.read()
                    return response.status, response.headers.get("retry-after")

            return await asyncio.gather(*(one() for _ in range(100)))

    results = asyncio.run(burst())
    admitted = [r for r in results if r[0] == 200]
    shed = [r for r in results if r[0] == 503]
    assert len(admitted) + len(shed) == 100  # nothing else: no errors, no hangs
    assert 20 <= len(admitted) <= 30  # the cap, plus what the short queue absorbed
    assert all(retry_after == "1" for _, retry_after in shed)


def test_a_keys_concurrency_cap_counts_its_streams(
    gateway_for: Callable[[dict[str, Any]], InProcessGateway],
) -> None:
    raw = {
        "models": [
            {
                "name": "chat",
                "deployments": [
                    {
                        "id": "sim",
                        "provider": "simulator",
                        "params": {"tokens_per_s": 20, "max_tokens": 10},
                    }
                ],
            }
        ],
        "keys": [{"name": "k", "key": TEST_KEY, "limits": {"max_concurrent": 2}}],
        "server": {"access_log": False},
    }
    gateway = gateway_for(raw)

    async def streams() -> list[int]:
        async with aiohttp.ClientSession(headers=AUTH) as session:

            async def one() -> int:
                body = {**CHAT, "stream": True}
                async with session.post(gateway.base_url + "/v1/chat/completions", json=body) as r:
                    await r.read()
                    return r.status

            return await asyncio.gather(*(one() for _ in range(4)))

    statuses = asyncio.run(streams())
    assert sorted(statuses) == [200, 200, 429, 429]


def test_routing_headers_say_how_it_was_routed(
    fake_upstream: Callable[[web.Application], FakeUpstream],
    gateway_for: Callable[[dict[str, Any]], InProcessGateway],
) -> None:
    always_down, fine = Upstream(1.0, 5, ("500",)), Upstream(0.0, 6)
    urls = [fake_upstream(always_down.app).url, fake_upstream(fine.app).url]
    raw = _config(urls)
    raw["models"][0]["routing"] = {"strategy": "priority"}
    raw["models"][0]["deployments"][1]["priority"] = 1
    gateway = gateway_for(raw)

    async def one() -> aiohttp.ClientResponse:
        async with (
            aiohttp.ClientSession(headers=AUTH) as session,
            session.post(gateway.base_url + "/v1/chat/completions", json=CHAT) as response,
        ):
            await response.read()
            return response

    response = asyncio.run(one())
    assert response.status == 200
    assert response.headers["x-interlock-deployment"] == "up-1"
    assert response.headers["x-interlock-attempts"] == "2"
    assert response.headers["x-interlock-route"].startswith("priority:")


async def _raw_stream(url: str, **extra: Any) -> tuple[int, list[bytes]]:
    body = {**CHAT, "stream": True, **extra}
    async with (
        aiohttp.ClientSession(headers=AUTH) as session,
        session.post(url + "/v1/chat/completions", json=body) as response,
    ):
        return response.status, (await response.read()).split(b"\n\n")


def test_heartbeats_while_waiting_for_the_first_token(
    gateway_for: Callable[[dict[str, Any]], InProcessGateway],
) -> None:
    raw = {
        "models": [
            {
                "name": "chat",
                "deployments": [
                    {
                        "id": "slow",
                        "provider": "simulator",
                        "params": {"ttft_ms": 500, "max_tokens": 2},
                    }
                ],
                "routing": {"heartbeat_after_s": 0.05, "heartbeat_interval_s": 0.1},
            }
        ],
        "keys": [{"name": "k", "key": TEST_KEY}],
        "server": {"access_log": False},
    }
    status, events = asyncio.run(_raw_stream(gateway_for(raw).base_url))
    assert status == 200
    first_data = next(i for i, e in enumerate(events) if e.startswith(b"data: {"))
    assert events[:first_data] and all(e == b": heartbeat" for e in events[:first_data])
    assert events[-2] == b"data: [DONE]"


def test_stalled_stream_ends_with_an_error_event(
    gateway_for: Callable[[dict[str, Any]], InProcessGateway],
) -> None:
    raw = {
        "models": [
            {
                "name": "chat",
                "deployments": [
                    {
                        "id": "stall",
                        "provider": "simulator",
                        "params": {"tokens_per_s": 2, "max_tokens": 10},
                        "timeouts": {"idle_s": 0.1},
                    }
                ],
            }
        ],
        "keys": [{"name": "k", "key": TEST_KEY}],
        "server": {"access_log": False},
    }
    began = time.monotonic()
    status, events = asyncio.run(_raw_stream(gateway_for(raw).base_url))
    # Without the idle limit the stream would take 5 s: 4 s leaves a busy machine room.
    assert status == 200 and time.monotonic() - began < 4
    error = next(e for e in events if b'"error"' in e)
    assert b"no next chunk within 0.1 s" in error
    assert events[-2] == b"data: [DONE]"  # a proper end of stream, not a hang


def test_forcing_a_deployment_needs_the_permission(
    gateway_for: Callable[[dict[str, Any]], InProcessGateway],
) -> None:
    raw = {
        "models": [
            {
                "name": "chat",
                "deployments": [
                    {"id": "a", "provider": "simulator"},
                    {"id": "b", "provider": "simulator"},
                ],
            }
        ],
        "keys": [
            {"name": "k", "key": TEST_KEY},
            {"name": "oncall", "key": "sk-oncall", "permissions": ["force_deployment"]},
        ],
        "server": {"access_log": False},
    }
    url = gateway_for(raw).base_url + "/v1/chat/completions"

    async def post(key: str, deployment: str) -> aiohttp.ClientResponse:
        headers = {"authorization": f"Bearer {key}", "x-interlock-force-deployment": deployment}
        async with (
            aiohttp.ClientSession(headers=headers) as session,
            session.post(url, json=CHAT) as response,
        ):
            await response.read()
            return response

    assert asyncio.run(post(TEST_KEY, "b")).status == 403
    for _ in range(3):
        forced = asyncio.run(post("sk-oncall", "b"))
        assert forced.status == 200 and forced.headers["x-interlock-deployment"] == "b"
        assert forced.headers["x-interlock-route"] == "forced:header"
    assert asyncio.run(post("sk-oncall", "zzz")).status == 400


@pytest.mark.parametrize("searched", [False, True])
def test_mid_stream_failover_continues_the_same_answer(
    gateway_for: Callable[[dict[str, Any]], InProcessGateway],
    fake_upstream: Callable[[web.Application], FakeUpstream],
    searched: bool,
) -> None:
    # Searched: a web search the gateway runs (ADR 0029) for a model that has
    # none; each of its rounds fails over as a plain stream does.
    searxng = fake_upstream(FakeSearchService(kind="searxng").app())
    search = {"backends": [{"type": "searxng", "url": searxng.url}]}
    raw = {
        "search": search,
        "models": [
            {
                "name": "chat",
                "routing": {"strategy": "priority", "mid_stream_failover": True},
                "deployments": [
                    {
                        "id": "dies",
                        "provider": "simulator",
                        "priority": 0,
                        "params": {"cut_after_tokens": 3, "max_tokens": 20},
                    },
                    {
                        "id": "steady",
                        "provider": "simulator",
                        "priority": 1,
                        "params": {"max_tokens": 8},
                    },
                ],
            }
        ],
        "keys": [{"name": "k", "key": TEST_KEY}],
        "server": {"access_log": False},
    }
    extra = {"web_search_options": {}} if searched else {}
    status, events = asyncio.run(_raw_stream(gateway_for(raw).base_url, **extra))
    assert status == 200
    chunks = [orjson.loads(e[len(b"data: ") :]) for e in events if e.startswith(b"data: {")]
    assert not any("error" in c for c in chunks)
    assert len({c["id"] for c in chunks}) == 1  # one stream, as far as the client can tell
    roles = [c for c in chunks if c["choices"] and "role" in c["choices"][0]["delta"]]
    assert len(roles) == 1
    text = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert len([t for t in text if t]) > 3  # the 3 tokens from `dies`, then `steady`'s
    assert chunks[-1]["choices"][0]["finish_reason"] in {"stop", "length"}
    assert events[-2] == b"data: [DONE]"


def test_without_mid_stream_failover_a_cut_is_an_error_event(
    gateway_for: Callable[[dict[str, Any]], InProcessGateway],
) -> None:
    raw = {
        "models": [
            {
                "name": "chat",
                "routing": {"strategy": "priority"},
                "deployments": [
                    {
                        "id": "dies",
                        "provider": "simulator",
                        "priority": 0,
                        "params": {"cut_after_tokens": 3, "max_tokens": 20},
                    },
                    {"id": "steady", "provider": "simulator", "priority": 1},
                ],
            }
        ],
        "keys": [{"name": "k", "key": TEST_KEY}],
        "server": {"access_log": False},
    }
    _, events = asyncio.run(_raw_stream(gateway_for(raw).base_url))
    assert any(b'"error"' in e for e in events)
    assert events[-2] == b"data: [DONE]"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_memory_stays_flat_under_repeated_overload(
    gateway_for: Callable[[dict[str, Any]], InProcessGateway],
) -> None:
    raw = {
        "models": [
            {
                "name": "chat",
                "deployments": [
                    {
                        "id": "sim",
                        "provider": "simulator",
                        "params": {"ttft_ms": 20, "max_tokens": 2},
                    }
                ],
            }
        ],
        "keys": [{"name": "k", "key": TEST_KEY}],
        "server": {"access_log": False},
        "limits": {"max_in_flight": 10, "max_queue": 10, "queue_timeout_s": 0.01},
    }
    url = gateway_for(raw).base_url + "/v1/chat/completions"

    async def bursts(rounds: int) -> None:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(headers=AUTH, connector=connector) as session:

            async def one() -> int:
                async with session.post(url, json=CHAT) as response:
                    await response.read()
                    return response.status

            for _ in range(rounds):
                statuses = await asyncio.gather(*(one() for _ in range(250)))
                assert set(statuses) <= {200, 503}

    asyncio.run(bursts(3))  # warm up: pools, caches, allocator arenas
    before = _rss_bytes()
    asyncio.run(bursts(10))  # 2,500 more requests at 25x the cap
    assert _rss_bytes() - before < 32 * 1024 * 1024


@pytest.mark.parametrize("through", ["http", "chaos latency"])
def test_a_unary_call_is_bounded_by_total_s(
    through: str,
    gateway_for: Callable[[dict[str, Any]], InProcessGateway],
    fake_upstream: Callable[[web.Application], FakeUpstream],
) -> None:
    """Over HTTP the upstream client's own deadline ends the call; for an
    adapter without one (here the simulator slowed by chaos) the pipeline's."""
    if through == "http":

        async def hang(request: web.Request) -> web.StreamResponse:
            await asyncio.sleep(5)
            return web.json_response({})

        app = web.Application()
        app.router.add_post("/v1/chat/completions", hang)
        upstream = fake_upstream(app)
        deployment = {
            "id": "d",
            "provider": "openai",
            "model": "m",
            "base_url": upstream.url + "/v1",
        }
        chaos: dict[str, Any] = {}
    else:
        deployment = {"id": "d", "provider": "simulator"}
        chaos = {"chaos": {"enabled": True, "rules": [{"deployment": "d", "latency_ms": 5000}]}}
    deployment["timeouts"] = {"total_s": 0.2}
    raw = {
        "models": [{"name": "chat", "deployments": [deployment], "routing": {"max_attempts": 1}}],
        "keys": [{"name": "k", "key": TEST_KEY}],
        "server": {"access_log": False},
        **chaos,
    }
    gateway = gateway_for(raw)
    began = time.monotonic()
    status, body = asyncio.run(_post_once(gateway.base_url))
    # The upstream would take 5 s: 4 s leaves a busy machine room.
    assert time.monotonic() - began < 4
    assert status in (503, 504), body
    assert b"within 0.2 s" in body


async def _post_once(base_url: str) -> tuple[int, bytes]:
    headers = {"authorization": f"Bearer {TEST_KEY}"}
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.post(base_url + "/v1/chat/completions", json=body) as response,
    ):
        return response.status, await response.read()


class RateLimitedUpstream:
    """Answers 429 with a Retry-After header (as OpenAI-compatible servers
    send it), counting its calls."""

    def __init__(self, headers: dict[str, str]):
        self.headers = headers
        self.calls = 0
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.calls += 1
        body = {"error": {"message": "Rate limit reached", "type": "requests"}}
        return web.json_response(body, status=429, headers=self.headers)


@pytest.mark.parametrize("form", ["seconds", "milliseconds", "http-date"])
def test_an_upstreams_retry_after_keeps_requests_away_from_it(
    form: str,
    fake_upstream: Callable[[web.Application], FakeUpstream],
    gateway_for: Callable[[dict[str, Any]], InProcessGateway],
) -> None:
    """The first request learns the hint and fails over; the next ones go
    straight to the other deployment instead of collecting another 429."""
    headers = {
        "seconds": {"retry-after": "30"},
        # OpenAI's finer hint wins over its whole seconds.
        "milliseconds": {"retry-after-ms": "30000", "retry-after": "0"},
        "http-date": {"retry-after": formatdate(time.time() + 60, usegmt=True)},
    }[form]
    limited, fine = RateLimitedUpstream(headers), Upstream(0.0, 8)
    raw = _config([fake_upstream(limited.app).url, fake_upstream(fine.app).url])
    raw["models"][0]["routing"] = {"strategy": "priority"}
    raw["models"][0]["deployments"][1]["priority"] = 1
    gateway = gateway_for(raw)

    async def send(n: int) -> list[tuple[int, str, str]]:
        async with aiohttp.ClientSession(headers=AUTH) as session:
            answers = []
            for _ in range(n):
                url = gateway.base_url + "/v1/chat/completions"
                async with session.post(url, json=CHAT) as response:
                    await response.read()
                    answers.append(
                        (
                            response.status,
                            response.headers["x-interlock-deployment"],
                            response.headers["x-interlock-attempts"],
                        )
                    )
            return answers

    answers = asyncio.run(send(5))
    assert answers[0] == (200, "up-1", "2")
    assert answers[1:] == [(200, "up-1", "1")] * 4
    assert limited.calls == 1
