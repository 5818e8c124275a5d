"""Two gateway processes share one registry (PostgreSQL) and one Redis: a
version registered, promoted or rolled back through one is served by the
other within 2 s (the revision each publishes in Redis, read every 0.25 s)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_KEY, simulator_config
from tests.support.pg_scratch import scratch_database
from tests.support.redis_scratch import scratch_prefix
from tests.support.servers import GatewayProcess
from tests.support.waiting import wait_for

REDIS_URL = "redis://127.0.0.1:6379/0"
ADMIN_KEY = "sk-admin-processes"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}", "x-interlock-actor": "ops"}
CALLER = {"authorization": f"Bearer {TEST_KEY}"}
# The acceptance bound; the poll interval (registry.poll_s) is 0.25 s.
PROPAGATION_S = 2.0


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[tuple[GatewayProcess, GatewayProcess]]:
    with (
        scratch_database("interlock_registry") as pg_url,
        scratch_prefix(REDIS_URL, "registry-proc") as prefix,
    ):
        config: dict[str, Any] = {
            **simulator_config(),
            "state": {"backend": "redis", "url": REDIS_URL, "prefix": prefix},
            "store": {"url": pg_url},
            "server": {"admin_key": "os.environ/ADMIN_KEY", "access_log": False},
            "batch": {"enabled": False},
        }
        env = {"TEST_KEY": TEST_KEY, "ADMIN_KEY": ADMIN_KEY}
        first = GatewayProcess(config, tmp_path, env=env)
        try:
            second = GatewayProcess(config, tmp_path, env=env)
            try:
                yield first, second
            finally:
                second.close()
        finally:
            first.close()


def _served_version(gateway: GatewayProcess) -> str | None:
    body = {"model": "assistant", "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(gateway.base_url + "/v1/chat/completions", json=body, headers=CALLER)
    return answer.headers.get("x-interlock-version") if answer.status_code == 200 else None


def _propagation(change: Callable[[], httpx.Response], seen: Callable[[], bool]) -> float:
    """Seconds from the change's answer on one gateway to the other serving it."""
    answer = change()
    assert answer.status_code in (200, 201), answer.text
    done = time.monotonic()
    wait_for(seen, timeout_s=15, what="the other gateway to serve the change")
    return time.monotonic() - done


def test_a_change_through_one_gateway_reaches_the_other_within_2_s(
    gateways: tuple[GatewayProcess, GatewayProcess],
) -> None:
    first, second = gateways

    def admin(path: str, body: dict[str, Any] | None = None) -> Callable[[], httpx.Response]:
        return lambda: httpx.post(first.base_url + path, json=body, headers=ADMIN, timeout=30)

    spec = {"name": "assistant", "kind": "chat", "provider": "simulator"}
    took = {
        "register": _propagation(
            admin("/admin/models", {**spec, "version": "1", "status": "live"}),
            lambda: _served_version(second) == "1",
        )
    }
    assert admin("/admin/models", {**spec, "version": "2"})().status_code == 201
    took["promote"] = _propagation(
        admin("/admin/models/assistant/versions/2/promote"),
        lambda: _served_version(second) == "2",
    )
    took["rollback"] = _propagation(
        admin("/admin/models/assistant/rollback", {"reason": "drill"}),
        lambda: _served_version(second) == "1",
    )
    print("propagation (s):", {k: round(v, 3) for k, v in took.items()})
    assert max(took.values()) < PROPAGATION_S, took
    # The second gateway reads the same audit log.
    audit = httpx.get(second.base_url + "/admin/audit", headers=ADMIN).json()["data"]
    assert [e["action"] for e in audit[:2]] == ["rollback", "promote"]
    assert {e["actor"] for e in audit} == {"ops"}
