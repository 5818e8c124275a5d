"""Readiness: the state store and the durable store must answer."""

from __future__ import annotations

import httpx

from interlock.app import create_app
from interlock.config import parse_config
from tests.conftest import TEST_KEY
from tests.support.servers import InProcessGateway


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
