"""Two gateways behind nginx under a steady load while something fails
(issue 19, "Many machines"): a gateway killed with ``kill -9``, a rolling
restart, Redis restarted, PostgreSQL restarted.

The load (tests/scale/load.py) keeps unary requests and streams going
through nginx and records what every client saw. One fleet serves the
module: each test leaves it whole or the next one's fixture restores it
(a gateway restarted on its port, Redis or PostgreSQL started again).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from interlock.store import create_engine
from tests.scale.conftest import running_fleet
from tests.scale.load import Outcome, SteadyLoad, chat_body, post_chat
from tests.support.fleet import Fleet, Node, PostgresCluster

LOAD, METERED, PG = "sk-fleet-load", "sk-fleet-metered", "sk-fleet-pg"
KEYS: list[dict[str, Any]] = [
    # Limited (far above the load), so every request runs the shared limiter.
    {"name": "load", "key": LOAD, "limits": {"rpm": 1_000_000}},
    {"name": "metered", "key": METERED, "tier": "metered"},  # rpm 10
    {"name": "pg", "key": PG, "limits": {"rpm": 1_000_000}},
]
METERED_RPM = 10
# Enough requests in each phase of a test that the phase was really under load.
PER_PHASE = 30
# Each test restarts processes (about 2 s each here): room for a busy 2-core CI.
BOUND_S = 180


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresCluster) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("failures"), postgres, KEYS) as running:
        load = running.upstream.route("load")
        # Unary answers take 50 ms and streams ~1 s (10 chunks, 0.1 s apart):
        # there are always requests and streams in flight on both gateways.
        load.delay_s, load.chunks, load.chunk_delay_s = 0.05, 10, 0.1
        yield running


@pytest.fixture(autouse=True)
def whole_fleet(fleet: Fleet, postgres: PostgresCluster) -> Fleet:
    """Each test starts with every engine up and both gateways in rotation."""
    if not postgres.running():
        postgres.start()
    if not fleet.redis.answers():
        fleet.redis.start()
    fleet.ensure_running()
    return fleet


def _started_after(load: SteadyLoad, moment: float) -> list[Outcome]:
    return [o for o in load.outcomes if o.started >= moment]


def _ok_since(load: SteadyLoad, moment: float) -> int:
    return sum(1 for o in _started_after(load, moment) if o.ok)


def _both_serving(load: SteadyLoad, fleet: Fleet, at_least: int = 10) -> bool:
    served = load.served_by()
    return all(served[node.address] >= at_least for node in fleet.nodes)


# -- 6: kill -9 ----------------------------------------------------------------------


@pytest.mark.timeout(BOUND_S)
async def test_kill_9_cuts_only_the_killed_gateways_requests(fleet: Fleet) -> None:
    victim, survivor = fleet.nodes
    async with SteadyLoad(fleet.url, LOAD, unary=8, streams=4, prefix="kill") as load:
        await load.until(
            lambda: (
                _both_serving(load, fleet)
                and bool(load.streaming_on(victim.address))
                and bool(load.streaming_on(survivor.address))
            ),
            30,
            "streams under way on both gateways",
        )
        cut_streams = {o.request_id for o in load.streaming_on(victim.address)}
        on_survivor = {
            o.request_id for o in load.in_flight.values() if o.gateway == survivor.address
        }
        await asyncio.to_thread(fleet.kill, victim.index)
        killed_at = time.monotonic()
        await load.until(lambda: _ok_since(load, killed_at) >= PER_PHASE, 30, "load after the kill")
    by_id = {o.request_id: o for o in load.outcomes}
    failures = load.failures()
    after = _started_after(load, killed_at)
    print(
        f"figure: kill -9: {len(failures)} failed of {len(load.outcomes)} "
        f"({len(cut_streams)} streams cut); {len(after)} started after; {load.summary()}"
    )
    # Whatever failed was on the killed gateway: the survivor's clients saw no error.
    assert {o.gateway for o in failures} <= {victim.address}, load.summary()
    assert all(by_id[i].ok for i in on_survivor)
    # New requests go to the survivor, and succeed.
    assert after and all(o.ok and o.gateway == survivor.address for o in after), load.summary()
    # Streams cut mid-way end with a client-side error at once, never a hang.
    for request_id in cut_streams:
        stream = by_id[request_id]
        assert not stream.ok and stream.ended - killed_at < 5, stream


# -- 7: rolling restart ----------------------------------------------------------------


@pytest.mark.timeout(BOUND_S)
async def test_a_rolling_restart_under_load_fails_no_request(fleet: Fleet) -> None:
    async with SteadyLoad(fleet.url, LOAD, unary=8, streams=4, prefix="roll") as load:
        await load.until(lambda: _both_serving(load, fleet), 30, "load on both gateways")
        for node in fleet.nodes:
            await _restart(fleet, node, load)
        await load.until(lambda: _both_serving(load, fleet), 30, "load on both after the restart")
    print(f"figure: rolling restart: {load.summary()}")
    assert load.failures() == [], load.summary()


async def _restart(fleet: Fleet, node: Node, load: SteadyLoad) -> None:
    """SIGTERM (it drains and exits 0), start it on the same port, and wait
    until nginx sends it requests again."""
    assert await asyncio.to_thread(fleet.terminate, node.index) == 0
    await asyncio.to_thread(fleet.start_gateway, node.index)
    back = time.monotonic()
    await load.until(
        lambda: load.served_by(back)[node.address] >= 5, 30, f"nginx sends to {node.address}"
    )


# -- 8: Redis restarted -------------------------------------------------------------------


@pytest.mark.timeout(BOUND_S)
async def test_redis_restarted_mid_load_costs_no_5xx_and_sharing_resumes(fleet: Fleet) -> None:
    async with SteadyLoad(fleet.url, LOAD, unary=8, streams=2, prefix="redis") as load:
        await load.until(lambda: _both_serving(load, fleet), 30, "load on both gateways")
        await asyncio.to_thread(fleet.redis.stop)
        stopped_at = time.monotonic()
        degraded = [await _readiness(node, "local") for node in fleet.nodes]
        await load.until(lambda: _ok_since(load, stopped_at) >= PER_PHASE, 30, "load, Redis down")
        await asyncio.to_thread(fleet.redis.start)
        restarted_at = time.monotonic()
        healed = [await _readiness(node, "shared") for node in fleet.nodes]
        healed_at = time.monotonic()
        await load.until(lambda: _ok_since(load, healed_at) >= PER_PHASE, 30, "load, Redis back")
    took = healed_at - restarted_at
    print(f"figure: Redis restart: {load.summary()}; limits shared again {took:.2f} s after")
    assert load.failures() == [], load.summary()  # no 5xx, no error of any kind
    for status, body, limits_degraded in degraded:
        # Served on local limits meanwhile, and said so; still ready (fail_open_local).
        assert status == 200 and body["checks"]["state_store"] is False
        assert limits_degraded == 1
    assert all(status == 200 and flag == 0 for status, _, flag in healed)
    # Shared again: a fresh Redis counts the key's rpm once for the whole fleet.
    assert await _admitted_in_a_burst(fleet.url, METERED, 3 * METERED_RPM) == METERED_RPM


async def _readiness(node: Node, limits: str, within_s: float = 30) -> tuple[int, Any, float]:
    """Poll ``node``'s /health/ready until it reports ``limits``: its status,
    its body, and ``interlock_limits_degraded`` then."""
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            response = await client.get(node.url + "/health/ready")
            if response.json().get("limits") == limits:
                metrics = (await client.get(node.url + "/metrics")).text
                return response.status_code, response.json(), _gauge(metrics)
            assert time.monotonic() < deadline, f"{node.address} never said limits {limits}"
            await asyncio.sleep(0.05)


def _gauge(metrics: str, name: str = "interlock_limits_degraded") -> float:
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{name} not in /metrics")


async def _admitted_in_a_burst(url: str, key: str, count: int) -> int:
    body = chat_body("chat", "burst", False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        replies = await asyncio.gather(*(post_chat(session, url, key, body) for _ in range(count)))
    assert {status for status, _, _ in replies} <= {200, 429}
    return sum(1 for status, _, _ in replies if status == 200)


# -- 9: PostgreSQL restarted ------------------------------------------------------------------


@pytest.mark.timeout(BOUND_S)
async def test_postgres_restarted_mid_load_loses_no_ledger_row(
    fleet: Fleet, postgres: PostgresCluster
) -> None:
    prefix = f"pg-{uuid.uuid4().hex[:8]}"
    async with SteadyLoad(fleet.url, PG, unary=8, streams=2, prefix=prefix) as load:
        await load.until(lambda: _both_serving(load, fleet), 30, "load on both gateways")
        await asyncio.to_thread(postgres.stop)
        stopped_at = time.monotonic()
        during = [await _durable_store_down(node) for node in fleet.nodes]
        await load.until(lambda: _ok_since(load, stopped_at) >= PER_PHASE, 30, "load, PG down")
        await asyncio.to_thread(postgres.start)
        restarted_at = time.monotonic()
        await load.until(lambda: _ok_since(load, restarted_at) >= PER_PHASE, 30, "load, PG back")
    answered = sorted(o.request_id for o in load.outcomes if o.ok)
    down = sum(1 for o in load.outcomes if stopped_at <= o.ended < restarted_at and o.ok)
    # The rows of the requests answered while it was down could only be
    # written after it came back: kept (memory, journal) and retried.
    rows = await _ledger_rows_when(fleet.store_url, "pg", len(answered))
    caught_up = time.monotonic() - restarted_at
    print(
        f"figure: PostgreSQL restart: {load.summary()}, {down} answered while it was down; "
        f"ledger complete {caught_up:.1f} s after the restart; readiness while down: {during}"
    )
    assert load.failures() == [], load.summary()  # every request served
    assert down >= PER_PHASE
    for status, body in during:
        # Reported, and still in rotation: every instance shares the store (ADR 0019).
        assert status == 200 and body["status"] == "degraded", body
    assert sorted(rows) == answered  # each answered request once: nothing lost, none twice


async def _durable_store_down(node: Node, within_s: float = 30) -> tuple[int, Any]:
    """/health/ready once ``node`` has noticed the store is gone."""
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient(timeout=10) as client:
        while True:
            response = await client.get(node.url + "/health/ready")
            body = response.json()
            if body.get("checks", {}).get("durable_store") is False:
                return response.status_code, body
            assert time.monotonic() < deadline, f"{node.address} never saw the store down"
            await asyncio.sleep(0.05)


async def _ledger_rows_when(store_url: str, key_name: str, count: int) -> list[str]:
    """The key's ledger rows once there are ``count`` (written behind the
    responses, and retried after the outage)."""
    engine = create_engine(store_url)
    query = sa.text("SELECT request_id FROM usage_ledger WHERE key_name = :k")
    deadline = time.monotonic() + 60
    try:
        while True:
            async with engine.connect() as conn:
                rows = [str(r) for r in (await conn.execute(query, {"k": key_name})).scalars()]
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()
