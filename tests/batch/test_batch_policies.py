"""What a batch does when it cannot simply run: cancelled, out of time,
paced by the key's limits, failing upstream; and what it shows in metrics.
Each test runs a gateway of its own (the embedded default: SQLite, the SQL
queue, the gateway's worker) on loopback."""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from interlock.app import create_app
from interlock.batch.webhooks import verify
from interlock.config import parse_config
from tests.conftest import TEST_KEY, simulator_config
from tests.support.servers import FakeUpstream, InProcessGateway
from tests.support.waiting import wait_for

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}
ADMIN_KEY = "sk-admin-batch-policies"
FINAL = ("completed", "failed", "expired", "cancelled")


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., InProcessGateway]]:
    started: list[InProcessGateway] = []

    def start(
        params: dict[str, Any] | None = None,
        batch: dict[str, Any] | None = None,
        key: dict[str, Any] | None = None,
        routing: dict[str, Any] | None = None,
        admin: bool = False,
    ) -> InProcessGateway:
        raw: dict[str, Any] = {
            **simulator_config(**{"tokens_per_s": 100_000, "max_tokens": 8, **(params or {})}),
            "files": {"dir": str(tmp_path / "blobs")},
            "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"},
            "batch": {"chunk_size": 2, **(batch or {})},
            "server": {"access_log": False, **({"admin_key": ADMIN_KEY} if admin else {})},
        }
        raw["keys"] = [{**raw["keys"][0], **(key or {})}]
        if routing:
            raw["models"][0]["routing"] = routing
        gateway = InProcessGateway(create_app(parse_config(raw, env={"TEST_KEY": TEST_KEY})))
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.close()


def _submit(gateway: InProcessGateway, items: int) -> str:
    lines = [
        {
            "custom_id": f"r{n}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "sim", "messages": [{"role": "user", "content": f"q{n}"}]},
        }
        for n in range(items)
    ]
    uploaded = httpx.post(
        gateway.base_url + "/v1/files",
        headers=AUTH,
        files={"file": ("in.jsonl", io.BytesIO(b"\n".join(map(orjson.dumps, lines))))},
        data={"purpose": "batch"},
    )
    assert uploaded.status_code == 200, uploaded.text
    created = httpx.post(
        gateway.base_url + "/v1/batches",
        headers=AUTH,
        json={
            "input_file_id": uploaded.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    assert created.status_code == 200, created.text
    return str(created.json()["id"])


def _get(gateway: InProcessGateway, batch_id: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(
        f"{gateway.base_url}/v1/batches/{batch_id}", headers=AUTH
    ).json()
    return found


def _final(gateway: InProcessGateway, batch_id: str) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(
        lambda: (b := _get(gateway, batch_id))["status"] in FINAL and b
    )
    return found


def _lines(gateway: InProcessGateway, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    content = httpx.get(f"{gateway.base_url}/v1/files/{file_id}/content", headers=AUTH)
    return [orjson.loads(line) for line in content.text.splitlines()]


def test_a_cancelled_batch_keeps_what_ran_and_lists_the_rest_as_cancelled(
    start: Callable[..., InProcessGateway],
) -> None:
    gateway = start({"ttft_ms": 100}, {"worker": {"concurrency": 1, "sweep_s": 0.1}})
    batch_id = _submit(gateway, 30)
    wait_for(lambda: _get(gateway, batch_id)["request_counts"]["completed"] >= 2)
    cancelled = httpx.post(f"{gateway.base_url}/v1/batches/{batch_id}/cancel", headers=AUTH)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelling"
    batch = _final(gateway, batch_id)
    assert batch["status"] == "cancelled" and batch["cancelled_at"] and batch["cancelling_at"]
    output, errors = (
        _lines(gateway, batch["output_file_id"]),
        _lines(gateway, batch["error_file_id"]),
    )
    assert len(output) >= 2 and len(output) + len(errors) == 30
    assert {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert batch["request_counts"] == {"total": 30, "completed": len(output), "failed": len(errors)}
    again = httpx.post(f"{gateway.base_url}/v1/batches/{batch_id}/cancel", headers=AUTH)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def _sweeps(gateway: InProcessGateway) -> float:
    metrics = httpx.get(gateway.base_url + "/metrics").text
    found = re.search(r"^interlock_batch_sweeps_total (\S+)$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_an_idle_sweeper_wakes_with_the_first_message_so_a_cancel_still_lands_at_once(
    start: Callable[..., InProcessGateway],
) -> None:
    # Idle, the sweeper would next look in an hour; the batch's first message
    # wakes it, or the cancel below would only stop the items when all had run.
    worker = {"concurrency": 1, "sweep_s": 0.1, "idle_sweep_s": 3600}
    gateway = start({"ttft_ms": 100}, {"worker": worker})
    wait_for(lambda: _sweeps(gateway) >= 1, what="the first (idle) sweep")
    batch_id = _submit(gateway, 60)
    wait_for(lambda: _get(gateway, batch_id)["request_counts"]["completed"] >= 2)
    cancelled = httpx.post(f"{gateway.base_url}/v1/batches/{batch_id}/cancel", headers=AUTH)
    assert cancelled.status_code == 200, cancelled.text
    batch = _final(gateway, batch_id)
    assert batch["status"] == "cancelled"
    errors = _lines(gateway, batch["error_file_id"])
    assert errors and {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert batch["request_counts"]["completed"] < 60
    assert _sweeps(gateway) > 2


def test_a_finished_batch_cannot_be_cancelled(start: Callable[..., InProcessGateway]) -> None:
    gateway = start(batch={"worker": {"sweep_s": 0.1}})
    batch_id = _submit(gateway, 2)
    assert _final(gateway, batch_id)["status"] == "completed"
    refused = httpx.post(f"{gateway.base_url}/v1/batches/{batch_id}/cancel", headers=AUTH)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "batch_not_cancellable"


def test_a_batch_out_of_time_ends_expired_with_partial_results(
    start: Callable[..., InProcessGateway],
) -> None:
    # "24h" lasts 5 s here; one item at a time, 200 ms each: the 50 items need
    # 10 s however fast the machine, and the first is done within 5 s however
    # busy it is (a 1.5 s window was not, beside two CPU hogs).
    gateway = start({"ttft_ms": 200}, {"window_s": 5, "worker": {"concurrency": 1, "sweep_s": 0.1}})
    batch_id = _submit(gateway, 50)
    batch = _final(gateway, batch_id)
    assert batch["status"] == "expired" and batch["expired_at"]
    output, errors = (
        _lines(gateway, batch["output_file_id"]),
        _lines(gateway, batch["error_file_id"]),
    )
    assert output and errors and len(output) + len(errors) == 50
    assert {e["error"]["code"] for e in errors} == {"batch_expired"}
    assert all(e["response"] is None for e in errors)


def test_the_keys_limits_pace_a_batch_and_fail_none_of_its_items(
    start: Callable[..., InProcessGateway],
) -> None:
    # One request at a time for this key, four items at a time in the worker:
    # admission answers 429 to three of every four tries; each waits and runs.
    gateway = start(
        {"ttft_ms": 20},
        {"worker": {"concurrency": 4, "sweep_s": 0.1, "max_delay_s": 0.2}},
        key={"limits": {"max_concurrent": 1}},
    )
    batch_id = _submit(gateway, 12)
    batch = _final(gateway, batch_id)
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 12, "completed": 12, "failed": 0}
    metrics = httpx.get(gateway.base_url + "/metrics").text
    paced = re.search(r'interlock_batch_item_retries_total\{reason="rate_limited"\} (\S+)', metrics)
    assert paced is not None and float(paced.group(1)) > 0


def test_an_item_that_keeps_failing_lands_in_the_error_file_with_its_error(
    start: Callable[..., InProcessGateway],
) -> None:
    gateway = start(
        {"error_rate": 1.0, "error_kind": "bad_request"},
        {"worker": {"sweep_s": 0.1, "max_item_attempts": 2}},
    )
    batch_id = _submit(gateway, 3)
    batch = _final(gateway, batch_id)
    assert batch["status"] == "completed" and batch["output_file_id"] is None
    errors = _lines(gateway, batch["error_file_id"])
    assert sorted(e["custom_id"] for e in errors) == ["r0", "r1", "r2"]
    assert {e["response"]["status_code"] for e in errors} == {400}
    assert all(e["response"]["body"]["error"]["message"] for e in errors)


def test_upstream_failures_are_retried_then_reported(
    start: Callable[..., InProcessGateway],
) -> None:
    gateway = start(
        {"error_rate": 1.0, "error_kind": "server_error"},
        {"worker": {"sweep_s": 0.1, "max_item_attempts": 2}},
        routing={
            "max_attempts": 1,
            "breaker": {"consecutive_failures": 1000, "min_requests": 1000},
        },
    )
    batch_id = _submit(gateway, 2)
    batch = _final(gateway, batch_id)
    errors = _lines(gateway, batch["error_file_id"])
    assert len(errors) == 2 and all(e["response"]["status_code"] >= 500 for e in errors)
    metrics = httpx.get(gateway.base_url + "/metrics").text
    assert 'interlock_batch_item_retries_total{reason="upstream_error"} 2.0' in metrics
    assert 'interlock_batch_items_total{endpoint="/v1/chat/completions",outcome="failed"} 2.0' in (
        metrics
    )
    assert "interlock_batch_queue_depth" in metrics


def test_items_wait_while_the_breaker_is_open_and_run_once_it_closes(
    start: Callable[..., InProcessGateway], tmp_path: Path
) -> None:
    # Every call fails (chaos) until the breaker opens; items then wait on it
    # rather than fail, and run once the chaos is off and the breaker closes.
    gateway = start(
        {"ttft_ms": 5},
        {"worker": {"concurrency": 2, "sweep_s": 0.1, "max_item_attempts": 20, "max_delay_s": 0.2}},
        routing={"max_attempts": 1, "breaker": {"consecutive_failures": 1, "open_s": 0.2}},
        admin=True,
    )
    chaos = {"enabled": True, "rules": [{"deployment": "sim-1", "error_rate": 1.0}]}
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert httpx.put(gateway.base_url + "/admin/chaos", json=chaos, headers=admin).is_success
    batch_id = _submit(gateway, 6)

    def waited_on_the_breaker() -> bool:
        metrics = httpx.get(gateway.base_url + "/metrics").text
        found = re.search(
            r'interlock_batch_item_retries_total\{reason="breaker_open"\} (\S+)', metrics
        )
        return found is not None and float(found.group(1)) >= 2

    wait_for(waited_on_the_breaker)
    off = {"enabled": False, "rules": []}
    assert httpx.put(gateway.base_url + "/admin/chaos", json=off, headers=admin).is_success
    batch = _final(gateway, batch_id)
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 6, "completed": 6, "failed": 0}


def test_a_finished_job_posts_a_signed_webhook_to_an_allowed_host_only(
    start: Callable[..., InProcessGateway],
    fake_upstream: Callable[[web.Application], FakeUpstream],
) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    receiver = fake_upstream(app)
    secret = "whsec-test-0123456789"
    gateway = start(
        batch={
            "worker": {"sweep_s": 0.1},
            "webhooks": {"allowed_hosts": ["127.0.0.1"], "secret": secret},
        }
    )
    body = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}
    refused = httpx.post(
        gateway.base_url + "/v1/batch",
        json={"requests": [body], "webhook_url": "http://169.254.169.254/latest"},
        headers=AUTH,
    )
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "webhook"
    accepted = httpx.post(
        gateway.base_url + "/v1/batch",
        json={"requests": [body], "webhook_url": receiver.url + "/hook"},
        headers=AUTH,
    )
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    wait_for(lambda: received)
    headers, payload = received[0]
    headers = {name.lower(): value for name, value in headers.items()}
    assert verify(secret.encode(), headers["interlock-signature"], payload, time.time())
    assert headers["interlock-webhook-id"] == f"{job_id}.completed"
    event = orjson.loads(payload)
    assert event["type"] == "job.completed" and event["data"]["id"] == job_id
    assert event["data"]["progress"]["completed"] == 1

    def delivered() -> bool:
        job = httpx.get(f"{gateway.base_url}/v1/jobs/{job_id}", headers=AUTH).json()
        return bool(job["webhook"]["state"] == "delivered")

    wait_for(delivered)
