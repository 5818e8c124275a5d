"""Two gateways behind nginx behave as one (issue 19, "Many machines"):
breakers, rate limits, the cache and its coalescing, key revocation and
the usage ledger are shared through one Redis and one PostgreSQL, and a
batch submitted through nginx is run by a separate worker.

One fleet serves the whole module; each test uses its own key, model or
prompt, so none sees another's traffic. Requests go through nginx, except
where the point is which instance does what (breakers, cache, revocation).
"""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
import redis
import sqlalchemy as sa

from interlock.store import create_engine
from tests.scale.conftest import running_fleet
from tests.scale.load import chat_body, post_chat
from tests.support.fleet import (
    ADMIN_KEY,
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    Fleet,
    Node,
    PostgresCluster,
    answered_by,
)
from tests.support.waiting import wait_for

OPS, METERED, LEDGER, WARM = "sk-fleet-ops", "sk-fleet-metered", "sk-fleet-ledger", "sk-fleet-warm"
KEYS = [
    {"name": "ops", "key": OPS},
    {"name": "metered", "key": METERED, "tier": "metered"},  # rpm 10 (the fleet's tiers)
    {"name": "ledger", "key": LEDGER},
    {"name": "warm", "key": WARM},
]
METERED_RPM = 10
CHAT_PATH = "/v1/chat/completions"


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, postgres: PostgresCluster) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("shared"), postgres, KEYS) as running:
        yield running


# -- 1: breakers ---------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """A request to model ``flaky`` (deployment ``flaky-bad`` first, then
    ``flaky-good``): when it was sent and where it was answered."""

    at: float
    deployment: str
    attempts: int

    @property
    def met_the_failure(self) -> bool:
        return self.attempts == 2  # flaky-bad failed, flaky-good answered


async def _ask_flaky(client: httpx.AsyncClient, node: Node) -> Sent:
    sent = time.monotonic()
    response = await client.post(node.url + CHAT_PATH, json=chat_body("flaky", "b", False))
    assert response.status_code == 200, response.text
    headers = response.headers
    return Sent(sent, headers["x-interlock-deployment"], int(headers["x-interlock-attempts"]))


async def _trip(client: httpx.AsyncClient, node: Node) -> tuple[int, float]:
    """Requests to ``node`` until it routes around flaky-bad: how many met
    the failure, and when the last of them (the one that tripped it) ended."""
    failed, tripped_at = 0, 0.0
    for _ in range(10):
        sent = await _ask_flaky(client, node)
        if not sent.met_the_failure:
            assert sent.deployment == "flaky-good"
            return failed, tripped_at
        failed, tripped_at = failed + 1, time.monotonic()
    raise AssertionError(f"{node.address} kept sending to the failing deployment")


async def test_a_breaker_opened_on_one_gateway_stops_the_other_within_a_second(
    fleet: Fleet,
) -> None:
    a, b = fleet.nodes
    on_b: list[Sent] = []
    turn, stop = asyncio.Lock(), asyncio.Event()
    async with httpx.AsyncClient(headers=bearer(OPS), timeout=10) as client:

        async def pace_b() -> None:
            # B's steady traffic keeps its view of the breaker fresh (read
            # from Redis at most every refresh_s, 0.5 s, on a request). Paced
            # so that B alone never meets the 3 failures in a row that would
            # trip its own breaker: what stops B is A's decision.
            while not stop.is_set():
                async with turn:
                    on_b.append(await _ask_flaky(client, b))
                await asyncio.sleep(0.4)

        pacer = asyncio.create_task(pace_b())
        try:
            await _until(lambda: len(on_b) >= 2, "B sends to the healthy deployment")
            async with turn:  # B waits while the deployment breaks and A trips it
                fleet.upstream.route("flaky-bad").status = 500
                failed_on_a, tripped_at = await _trip(client, a)
            await _until(lambda: on_b[-1].at > tripped_at + 1.5, "B's traffic after the trip")
        finally:
            stop.set()
            await pacer
    healthy = [s for s in on_b if s.at < tripped_at]
    after = [s for s in on_b if s.at > tripped_at]
    to_bad = [s.at - tripped_at for s in after if s.met_the_failure]
    # B's last request to the open deployment, counted from A's trip.
    propagation = max(to_bad, default=0.0)
    print(
        f"figure: after A tripped the breaker, B sent {len(to_bad)} request(s) to the open "
        f"deployment, the last {propagation:.2f} s after the trip; B's first request came "
        f"{after[0].at - tripped_at:.2f} s after it ({len(after)} sent in all)"
    )
    assert failed_on_a == 3  # consecutive_failures: A tripped it
    assert {(s.deployment, s.attempts) for s in healthy} == {("flaky-bad", 1)}
    assert len(to_bad) < 3, to_bad  # never enough for B to trip it by itself
    assert propagation <= 1.0
    later = {(s.deployment, s.attempts) for s in after if s.at > tripped_at + 1.0}
    assert later == {("flaky-good", 1)}  # straight to the healthy deployment
    # The fake saw B's requests while it was healthy, A's 3 and B's few failures: no more.
    assert fleet.upstream.calls("flaky-bad") == len(healthy) + failed_on_a + len(to_bad)


# -- 2: rate limits ------------------------------------------------------------------


async def test_a_key_gets_exactly_its_rpm_across_both_gateways(fleet: Fleet) -> None:
    body = chat_body("chat", "limits", False)
    timeout = aiohttp.ClientTimeout(total=30)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Open nginx's connections (and theirs to the gateways) with another
        # key first, so the burst below is over long before GCRA refills.
        await asyncio.gather(*(post_chat(session, fleet.url, WARM, body) for _ in range(30)))
        started = time.monotonic()
        burst = await asyncio.gather(
            *(post_chat(session, fleet.url, METERED, body) for _ in range(3 * METERED_RPM))
        )
        after = await post_chat(session, fleet.url, METERED, body)
        elapsed = time.monotonic() - started
    admitted = [headers for status, headers, _ in burst if status == 200]
    refused = [(headers, payload) for status, headers, payload in burst if status == 429]
    print(f"figure: {len(admitted)} admitted of {len(burst)} in {elapsed:.2f} s")
    # rpm 10 refills one request every 6 s: within the burst (and the one
    # request after it), none came back.
    assert elapsed < 60 / METERED_RPM
    assert len(admitted) == METERED_RPM and len(refused) == 2 * METERED_RPM
    assert after[0] == 429
    by_gateway = Counter(answered_by(headers) for _, headers, _ in burst)
    assert set(by_gateway) == {node.address for node in fleet.nodes}, by_gateway
    # One fleet-wide count: the admitted saw 9, 8, ... 0 remaining, each once.
    remaining = sorted(int(h["x-ratelimit-remaining-requests"]) for h in admitted)
    assert remaining == list(range(METERED_RPM))
    for headers, payload in refused:
        assert payload["error"]["code"] == "rate_limit_exceeded"
        assert int(headers["retry-after"]) >= 1


# -- 3: the cache ------------------------------------------------------------------


def _cached(prompt: str) -> dict[str, Any]:
    """Deterministic (temperature 0): cacheable."""
    return {"model": "cached", "messages": [{"role": "user", "content": prompt}], "temperature": 0}


def test_an_answer_cached_through_one_gateway_is_a_hit_on_the_other(fleet: Fleet) -> None:
    a, b = fleet.nodes
    before = fleet.upstream.calls("cached")
    with httpx.Client(headers=bearer(OPS), timeout=10) as client:
        first = client.post(a.url + CHAT_PATH, json=_cached("shared tier"))
        second = client.post(b.url + CHAT_PATH, json=_cached("shared tier"))
    assert first.status_code == second.status_code == 200
    assert first.headers["x-interlock-cache"] == "miss"
    assert second.headers["x-interlock-cache"] == "hit"
    assert _content(second) == _content(first)
    assert fleet.upstream.calls("cached") == before + 1


def _content(response: httpx.Response) -> str:
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


class LockWatch:
    """Counts the cache-lock claims (``SET <prefix>lock:<key> ... NX``) Redis
    receives, through MONITOR: a claim that found the lock taken is an
    instance now waiting for the holder's answer."""

    def __init__(self, fleet: Fleet, claims: int):
        self.claims = claims
        self.seen: list[str] = []
        self.done = threading.Event()
        self._client = redis.Redis(port=fleet.redis.port, socket_timeout=30)
        self._monitor = self._client.monitor()  # type: ignore[no-untyped-call]
        self._monitor.__enter__()  # MONITOR is on before the test sends anything
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        try:
            for event in self._monitor.listen():
                command = str(event.get("command", ""))
                if command.upper().startswith("SET ") and ":lock:" in command:
                    self.seen.append(command)
                    if len(self.seen) >= self.claims:
                        self.done.set()
                        return
        except redis.RedisError:
            return  # closed, or its 30 s bound passed: the test's wait reports it

    def close(self) -> None:
        self._thread.join(35)
        self._monitor.__exit__(None, None, None)
        self._client.close()


def test_identical_requests_on_both_gateways_make_one_upstream_call(fleet: Fleet) -> None:
    a, b = fleet.nodes
    before = fleet.upstream.calls("cached")
    body = _cached(f"coalesced {uuid.uuid4().hex}")
    watch = LockWatch(fleet, claims=2)
    fleet.upstream.hold("cached")
    results: dict[str, httpx.Response] = {}
    try:
        with httpx.Client(headers=bearer(OPS), timeout=30) as client:

            def ask(node: Node) -> threading.Thread:
                def run() -> None:
                    results[node.address] = client.post(node.url + CHAT_PATH, json=body)

                thread = threading.Thread(target=run, daemon=True)
                thread.start()
                return thread

            leader = ask(a)
            wait_for(lambda: fleet.upstream.calls("cached") == before + 1, 30, "A calls upstream")
            follower = ask(b)
            # B claimed the lock A holds: B is waiting on A's answer.
            wait_for(watch.done.is_set, 30, "B's claim of the lock")
            fleet.upstream.release("cached")
            leader.join(30)
            follower.join(30)
    finally:
        fleet.upstream.release("cached")
        watch.close()
    led, followed = results[a.address], results[b.address]
    assert led.status_code == followed.status_code == 200
    assert led.headers["x-interlock-cache"] == "miss"
    assert followed.headers["x-interlock-cache"] == "coalesced"
    assert _content(followed) == _content(led)
    assert fleet.upstream.calls("cached") == before + 1


# -- 4: revocation -------------------------------------------------------------------


def test_a_key_revoked_on_one_gateway_is_refused_by_both_within_two_seconds(
    fleet: Fleet,
) -> None:
    a, b = fleet.nodes
    admin = bearer(ADMIN_KEY)
    body = chat_body("chat", "revocation", False)
    with httpx.Client(timeout=10) as client:
        created = client.post(
            fleet.url + "/admin/keys", json={"name": "short-lived"}, headers=admin
        )
        assert created.status_code == 201, created.text
        key, key_id = created.json()["key"], created.json()["id"]

        def status_on(node: Node) -> int:
            response = client.post(node.url + CHAT_PATH, json=body, headers=bearer(key))
            return response.status_code

        def works_on(node: Node) -> bool:
            return status_on(node) == 200

        for node in (a, b):  # both learn the new key (every key_refresh_s)
            wait_for(partial(works_on, node), 10, f"the new key works on {node.address}")
        revoked = client.post(f"{a.url}/admin/keys/{key_id}/revoke", headers=admin)
        assert revoked.status_code == 200, revoked.text
        revoked_at = time.monotonic()
        refused_after: dict[str, float] = {}
        while len(refused_after) < 2 and time.monotonic() - revoked_at < 10:
            for node in (a, b):
                if node.address not in refused_after and status_on(node) == 403:
                    refused_after[node.address] = time.monotonic() - revoked_at
        still = [status_on(node) for node in (a, b)]
    print(f"figure: revocation refused after {sorted(refused_after.values())} s")
    assert set(refused_after) == {a.address, b.address}
    assert max(refused_after.values()) <= 2.0
    assert still == [403, 403]  # and stays refused


def test_a_key_made_by_the_admin_cli_from_the_same_config_works_on_both(fleet: Fleet) -> None:
    """``interlock keys`` reads the file the gateways and the worker run on
    (its store.url: the fleet's PostgreSQL), and both gateways take the key."""
    command = ["keys", "create", "--name", "from-cli", "--config", str(fleet.config_path)]
    made = subprocess.run(
        [sys.executable, "-m", "interlock", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    body = chat_body("chat", "cli key", False)
    with httpx.Client(timeout=10) as client:
        for node in fleet.nodes:
            wait_for(
                lambda node=node: (
                    client.post(node.url + CHAT_PATH, json=body, headers=bearer(key)).status_code
                    == 200
                ),
                10,
                f"the CLI's key works on {node.address}",
            )


# -- 5: the usage ledger -------------------------------------------------------------

LEDGER_REQUESTS = 60


async def test_the_ledger_holds_every_request_served_by_either_gateway(fleet: Fleet) -> None:
    timeout = aiohttp.ClientTimeout(total=30)
    slots = asyncio.Semaphore(8)
    served: Counter[str] = Counter()
    ids: list[str] = []

    async def one(session: aiohttp.ClientSession, n: int) -> None:
        request_id = f"ledger-{uuid.uuid4().hex[:8]}-{n}"
        stream = n % 3 == 0
        headers = {**bearer(LEDGER), "x-request-id": request_id}
        async with (
            slots,
            session.post(
                fleet.url + CHAT_PATH, json=chat_body("chat", request_id, stream), headers=headers
            ) as response,
        ):
            raw = await response.read()
            assert response.status == 200, raw
            if stream:
                assert raw.rstrip().endswith(b"data: [DONE]")
            served[answered_by(response.headers)] += 1
            ids.append(request_id)

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(one(session, n) for n in range(LEDGER_REQUESTS)))
    assert set(served) == {node.address for node in fleet.nodes}, served
    expected = {
        "requests": LEDGER_REQUESTS,
        "prompt_tokens": LEDGER_REQUESTS * PROMPT_TOKENS,
        "completion_tokens": LEDGER_REQUESTS * COMPLETION_TOKENS,
    }

    def totals() -> dict[str, int]:
        response = httpx.get(
            fleet.url + "/admin/usage?key=ledger", headers=bearer(ADMIN_KEY), timeout=10
        )
        rows = response.json()["data"]
        return {name: rows[0][name] for name in expected} if rows else {}

    # Rows are written behind the responses, in batches (every 0.5 s).
    wait_for(lambda: totals() == expected, 30, f"the usage API reports {expected}")
    rows = await _ledger_rows(fleet.store_url, "ledger")
    assert sorted(rows) == sorted(ids)  # each request once, from both gateways


async def _ledger_rows(store_url: str, key_name: str) -> list[str]:
    engine = create_engine(store_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                sa.text("SELECT request_id FROM usage_ledger WHERE key_name = :k"), {"k": key_name}
            )
            return [str(row) for row in result.scalars()]
    finally:
        await engine.dispose()


# -- 10: batches -----------------------------------------------------------------------


def test_a_batch_submitted_through_nginx_is_run_by_the_worker(fleet: Fleet) -> None:
    custom_ids = [f"item-{n}" for n in range(4)]
    lines = [
        {
            "custom_id": custom_id,
            "method": "POST",
            "url": CHAT_PATH,
            "body": chat_body("chat", custom_id, False),
        }
        for custom_id in custom_ids
    ]
    data = b"\n".join(orjson.dumps(line) for line in lines)
    with httpx.Client(base_url=fleet.url, headers=bearer(OPS), timeout=30) as client:
        uploaded = client.post(
            "/v1/files", files={"file": ("in.jsonl", io.BytesIO(data))}, data={"purpose": "batch"}
        )
        assert uploaded.status_code == 200, uploaded.text
        created = client.post(
            "/v1/batches",
            json={
                "input_file_id": uploaded.json()["id"],
                "endpoint": CHAT_PATH,
                "completion_window": "24h",
            },
        )
        assert created.status_code == 200, created.text

        def finished() -> dict[str, Any] | None:
            batch: dict[str, Any] = client.get(f"/v1/batches/{created.json()['id']}").json()
            return batch if batch["status"] in ("completed", "failed", "expired") else None

        batch = wait_for(finished, 45, "the batch finished")
        assert batch is not None and batch["status"] == "completed", batch
        output = client.get(f"/v1/files/{batch['output_file_id']}/content")
    assert output.status_code == 200
    results = [orjson.loads(line) for line in output.text.splitlines()]
    assert sorted(r["custom_id"] for r in results) == custom_ids
    assert {r["response"]["status_code"] for r in results} == {200}
    assert batch["request_counts"] == {"total": 4, "completed": 4, "failed": 0}


async def _until(check: Any, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.02)
