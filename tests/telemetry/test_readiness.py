"""Readiness: whether this instance should get traffic. What every instance
shares (the durable store, Redis under fail_open_local) is reported, not
fatal; Redis under fail_closed is."""

from __future__ import annotations

import httpx
from sqlalchemy.engine import make_url

from interlock.app import create_app
from interlock.config import parse_config
from tests.conftest import TEST_KEY
from tests.support.pg_scratch import scratch_database
from tests.support.redis_proxy import RedisProxy
from tests.support.servers import InProcessGateway
from tests.support.waiting import wait_for


def _config(state: dict[str, str]) -> dict[str, object]:
    return {
        "models": [{"name": "sim", "deployments": [{"id": "s", "provider": "simulator"}]}],
        "keys": [{"name": "k", "key": TEST_KEY}],
        "server": {"access_log": False},
        "state": state,
    }


def test_ready_when_both_stores_answer() -> None:
    gateway = InProcessGateway(create_app(parse_config(_config({"backend": "memory"}), env={})))
    try:
        ready = httpx.get(gateway.base_url + "/health/ready")
    finally:
        gateway.close()
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"state_store": True, "durable_store": True}


def test_state_store_outage_is_reported_and_survivable() -> None:
    dead = {"backend": "redis", "url": "redis://127.0.0.1:1/0"}
    gateway = InProcessGateway(create_app(parse_config(_config(dead), env={})))
    try:
        ready = httpx.get(gateway.base_url + "/health/ready")
        served = httpx.post(
            gateway.base_url + "/v1/chat/completions",
            json={"model": "sim", "messages": [{"role": "user", "content": "hi"}]},
            headers={"authorization": f"Bearer {TEST_KEY}"},
        )
    finally:
        gateway.close()
    # fail_open_local (the default): reported, but still in rotation.
    assert ready.status_code == 200
    assert ready.json()["checks"]["state_store"] is False
    assert served.status_code == 200  # still serving: breakers and limits fall back to local


def test_state_store_outage_is_fatal_when_fail_closed() -> None:
    raw = _config({"backend": "redis", "url": "redis://127.0.0.1:1/0"})
    raw["admission"] = {"on_state_failure": "fail_closed"}
    gateway = InProcessGateway(create_app(parse_config(raw, env={})))
    try:
        ready = httpx.get(gateway.base_url + "/health/ready")
    finally:
        gateway.close()
    assert ready.status_code == 503


def test_durable_store_outage_is_reported_and_still_ready() -> None:
    """Every instance shares the durable store: readiness reports it and
    stays 200 (ADR 0019), and requests are still served, their ledger rows
    journaled until the store is back."""
    with scratch_database("readiness") as url:
        proxy = RedisProxy(target_port=make_url(url).port or 5432)  # a plain TCP relay here
        try:
            raw = _config({"backend": "memory"})
            raw["store"] = {"url": make_url(url).set(port=proxy.port).render_as_string(False)}
            gateway = InProcessGateway(create_app(parse_config(raw, env={})))
            try:
                before = httpx.get(gateway.base_url + "/health/ready")
                proxy.kill()
                during = httpx.get(gateway.base_url + "/health/ready", timeout=30)
                served = httpx.post(
                    gateway.base_url + "/v1/chat/completions",
                    json={"model": "sim", "messages": [{"role": "user", "content": "hi"}]},
                    headers={"authorization": f"Bearer {TEST_KEY}"},
                    timeout=30,
                )
                proxy.revive()
                after = wait_for(
                    lambda: (
                        (r := httpx.get(gateway.base_url + "/health/ready", timeout=30))
                        and r.json()["status"] == "ok"
                        and r
                    ),
                    timeout_s=60,
                    what="readiness ok again",
                )
            finally:
                gateway.close()
        finally:
            proxy.close()
    assert before.status_code == 200 and before.json()["status"] == "ok"
    assert during.status_code == 200
    assert during.json()["status"] == "degraded"
    assert during.json()["checks"]["durable_store"] is False
    assert served.status_code == 200
    assert after.json()["checks"] == {"state_store": True, "durable_store": True}
