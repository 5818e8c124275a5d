"""A frozen or dead Redis costs a few timeouts, not one per call.

Real Redis behind ``RedisProxy``: frozen (connections accepted, nothing
answered, as under SIGSTOP), killed (refused), and back. The state store and
the limiter share one health latch: once it trips, calls are refused without
reaching Redis (the proxy counts what did) until a background PING answers.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import redis

from interlock.admission.limits import FailoverLimiter, KeyLimits, MemoryLimiter, RedisLimiter
from interlock.app import create_app
from interlock.config import parse_config
from interlock.state import RedisStateStore, StateStoreUnavailable, StoreHealth
from tests.conftest import TEST_KEY
from tests.state.harness import _redis_reachable
from tests.support.redis_proxy import RedisProxy
from tests.support.servers import InProcessGateway

DB = 15
TIMEOUT_S = 0.2  # each client's; the store's deadline per call is three of them


def _require_redis() -> None:
    if not asyncio.run(_redis_reachable()):
        if os.environ.get("CI") == "true":
            pytest.fail("Redis at 127.0.0.1:6379 is required on CI")
        pytest.skip("Redis at 127.0.0.1:6379 is not reachable")


@pytest.fixture
def proxy() -> Iterator[RedisProxy]:
    _require_redis()
    proxy = RedisProxy()
    yield proxy
    proxy.close()


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = f"test-frozen-{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(f"redis://127.0.0.1:6379/{DB}")
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


class Clients:
    """A state store and a limiter on one Redis, sharing one latch."""

    def __init__(self, url: str, prefix: str, *, trip_after: int = 3):
        self.health = StoreHealth(trip_after=trip_after, probe_after_s=0.05, probe_max_s=0.2)
        self.store = RedisStateStore(url, prefix, timeout_s=TIMEOUT_S, health=self.health)
        self.limiter = RedisLimiter.from_url(
            url, prefix=prefix, timeout_s=TIMEOUT_S, health=self.health
        )

    async def aclose(self) -> None:
        await self.store.aclose()
        await self.limiter.aclose()


@pytest.fixture
async def clients(proxy: RedisProxy, prefix: str) -> AsyncIterator[Clients]:
    clients = Clients(proxy.url(DB), prefix)
    yield clients
    await clients.aclose()


async def eventually(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_a_frozen_redis_is_asked_no_more_once_the_latch_trips(
    proxy: RedisProxy, clients: Clients
) -> None:
    store, limiter, health = clients.store, clients.limiter, clients.health
    await store.set("k", b"v")
    assert (await limiter.admit("k", KeyLimits(rpm=100))).allowed
    proxy.freeze()
    for _ in range(3):  # three timeouts in a row
        with pytest.raises(StateStoreUnavailable):
            await store.get("k")
    assert not health.available
    reached = len(proxy.commands_held())

    started = time.perf_counter()
    for _ in range(50):
        with pytest.raises(StateStoreUnavailable):
            await store.get("k")
        with pytest.raises(StateStoreUnavailable):
            await limiter.admit("k", KeyLimits(rpm=100))  # one latch for both
        assert not await store.ping()
    took = time.perf_counter() - started

    assert proxy.commands_held()[reached:] == []  # none reached Redis, probes aside
    assert took < 3 * TIMEOUT_S  # 150 calls in less than one call's deadline
    proxy.thaw()
    await eventually(lambda: health.available)  # the background probe answered
    assert await store.get("k") == b"v"
    assert (await limiter.admit("k", KeyLimits(rpm=100))).allowed


async def test_a_dead_redis_trips_the_latch_and_a_revived_one_lifts_it(
    proxy: RedisProxy, clients: Clients
) -> None:
    await clients.store.set("k", b"v")
    proxy.kill()
    for _ in range(3):
        with pytest.raises(StateStoreUnavailable):
            await clients.store.incr("n")
    assert not clients.health.available
    accepted = proxy.accepted
    proxy.revive()
    await eventually(lambda: clients.health.available)
    assert proxy.accepted == accepted + 1  # one probe connection
    assert await clients.store.get("k") == b"v"


async def test_probing_goes_on_when_the_guard_that_started_it_closes(
    proxy: RedisProxy, prefix: str
) -> None:
    clients = Clients(proxy.url(DB), prefix, trip_after=1)
    try:
        proxy.freeze()
        with pytest.raises(StateStoreUnavailable):
            await clients.store.get("k")  # trips; the store's guard probes
        await clients.store.aclose()
        proxy.thaw()
        with pytest.raises(StateStoreUnavailable):
            await clients.limiter.admit("k", KeyLimits(rpm=1))  # refused; takes over probing
        await eventually(lambda: clients.health.available)
        assert (await clients.limiter.admit("k", KeyLimits(rpm=1))).allowed
    finally:
        await clients.limiter.aclose()


async def test_the_failover_limiter_follows_the_latch(proxy: RedisProxy, clients: Clients) -> None:
    limiter = FailoverLimiter(clients.limiter, MemoryLimiter(), health=clients.health)
    limits = KeyLimits(rpm=100)
    assert (await limiter.admit("k", limits)).reservation.backend == "redis"  # type: ignore[union-attr]
    proxy.freeze()
    for _ in range(3):
        decision = await limiter.admit("k", limits)  # each waits one timeout, then local
        assert decision.allowed
    assert limiter.degraded
    reached = len(proxy.commands_held())
    started = time.perf_counter()
    decisions = [await limiter.admit("k", limits) for _ in range(50)]
    assert time.perf_counter() - started < TIMEOUT_S
    assert {d.reservation.backend for d in decisions} == {"memory"}  # type: ignore[union-attr]
    assert proxy.commands_held()[reached:] == []
    proxy.thaw()
    await eventually(lambda: not limiter.degraded)
    assert (await limiter.admit("k", limits)).reservation.backend == "redis"  # type: ignore[union-attr]


# -- through the gateway ---------------------------------------------------------


def _gateway_config(url: str, prefix: str) -> dict[str, object]:
    return {
        "models": [{"name": "sim", "deployments": [{"id": "s", "provider": "simulator"}]}],
        "keys": [{"name": "k", "key": TEST_KEY, "limits": {"rpm": 1_000_000}}],
        "server": {"access_log": False},
        "cache": {"enabled": True},
        "state": {
            "backend": "redis",
            "url": url,
            "prefix": prefix,
            "health": {"trip_after": 3, "probe_after_s": 0.05, "probe_max_s": 0.2},
        },
    }


def _ask(client: httpx.Client, text: str) -> httpx.Response:
    body = {"model": "sim", "messages": [{"role": "user", "content": text}], "temperature": 0}
    return client.post("/v1/chat/completions", json=body)


def _ready(client: httpx.Client, limits: str, within_s: float) -> dict[str, Any]:
    """Poll readiness until it reports ``limits`` and a state store to match."""
    deadline = time.monotonic() + within_s
    while True:
        response = client.get("/health/ready")
        body: dict[str, Any] = {"status_code": response.status_code, **response.json()}
        settled = body["checks"]["state_store"] is (limits == "shared")
        if (body["limits"] == limits and settled) or time.monotonic() > deadline:
            return body
        time.sleep(0.02)


def _degraded_gauge(client: httpx.Client) -> str:
    lines = client.get("/metrics").text.splitlines()
    return next(line for line in lines if line.startswith("interlock_limits_degraded "))


def test_cacheable_requests_stay_fast_while_redis_is_frozen(proxy: RedisProxy, prefix: str) -> None:
    gateway = InProcessGateway(create_app(parse_config(_gateway_config(proxy.url(DB), prefix))))
    headers = {"authorization": f"Bearer {TEST_KEY}"}
    try:
        with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=30) as client:
            assert _ask(client, "warm up").headers["x-interlock-cache"] == "miss"
            assert _ask(client, "warm up").headers["x-interlock-cache"] == "hit"
            proxy.freeze()
            # The first requests wait out the timeouts that trip the latch.
            first = [_ask(client, f"before the trip {i}") for i in range(3)]
            assert [r.status_code for r in first] == [200] * 3
            ready = _ready(client, "local", 5.0)
            assert ready["limits"] == "local" and ready["status_code"] == 200  # fail_open_local
            assert ready["checks"] == {"state_store": False, "durable_store": True}
            reached = len(proxy.commands_held())

            started = time.perf_counter()
            answers = [_ask(client, f"while frozen {i}") for i in range(50)]
            took = time.perf_counter() - started

            print(f"figure: 50 cacheable requests with Redis frozen: {took * 20:.1f} ms each")
            assert [r.status_code for r in answers] == [200] * 50
            assert {r.headers["x-interlock-cache"] for r in answers} == {"miss"}
            assert _ask(client, "while frozen 7").headers["x-interlock-cache"] == "hit"  # L1
            assert proxy.commands_held()[reached:] == []  # nothing reached Redis but probes
            # Without the latch each one waits out a limiter timeout and a store
            # deadline at least (1 s): 50 s in all. Bounded generously for busy CI.
            assert took < 10.0, took
            assert _degraded_gauge(client) == "interlock_limits_degraded 1.0"

            proxy.thaw()
            ready = _ready(client, "shared", 5.0)
            assert ready["limits"] == "shared" and ready["status_code"] == 200
            assert ready["checks"] == {"state_store": True, "durable_store": True}
            assert _degraded_gauge(client) == "interlock_limits_degraded 0.0"
            assert _ask(client, "after the thaw").status_code == 200
    finally:
        gateway.close()
    # The shared tier is written again: that answer is in Redis.
    direct = redis.Redis.from_url(f"redis://127.0.0.1:6379/{DB}")
    try:
        assert list(direct.scan_iter(match=f"{prefix}cache:*"))
    finally:
        direct.close()


def test_state_timeout_s_is_how_long_a_slow_redis_is_waited_for(
    proxy: RedisProxy, prefix: str
) -> None:
    """A gateway whose Redis answers slowly but surely (far away, or a starved
    machine) raises ``state.timeout_s``: admission then waits for Redis
    instead of deciding locally after the default 0.25 s."""
    config = _gateway_config(proxy.url(DB), prefix)
    config["cache"] = {"enabled": False}
    config["state"]["timeout_s"] = 30.0  # type: ignore[index]
    gateway = InProcessGateway(create_app(parse_config(config)))
    headers = {"authorization": f"Bearer {TEST_KEY}"}
    try:
        with (
            httpx.Client(base_url=gateway.base_url, headers=headers, timeout=60) as client,
            ThreadPoolExecutor(1) as pool,
        ):
            assert _ask(client, "warm up").status_code == 200
            proxy.freeze()
            asked = pool.submit(_ask, client, "while slow")
            deadline = time.monotonic() + 20
            while "EVALSHA" not in proxy.commands_held():
                assert time.monotonic() < deadline, proxy.commands_held()
                time.sleep(0.01)
            # Four default deadlines: under the default the request would
            # have been admitted locally by now.
            time.sleep(1.0)
            assert not asked.done()
            proxy.thaw()
            answer = asked.result(timeout=30)
            assert answer.status_code == 200
            assert _ready(client, "shared", 5.0)["limits"] == "shared"
    finally:
        gateway.close()
