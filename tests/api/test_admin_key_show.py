"""``GET /admin/keys/{id}`` through a running gateway: one key, its limits
as admission applies them (its tier's where it sets none), and its requests
in flight, counted while a stream holds a slot and freed when it ends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import simulator_config
from tests.support.admin_gateway import admin_gateway
from tests.support.waiting import wait_for

ADMIN_KEY = "sk-admin-show"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    config = simulator_config()
    # 4 tokens a second: a 200-token stream stays open for as long as the test needs.
    slow = {"id": "slow-1", "provider": "simulator", "params": {"tokens_per_s": 4}}
    config["models"].append({"name": "slow", "deployments": [slow]})
    gateway = admin_gateway(tmp_path, ADMIN_KEY, config)
    try:
        with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
            yield client
    finally:
        gateway.close()


def _create(client: httpx.Client, **fields: Any) -> tuple[str, str]:
    answer = client.post("/admin/keys", json=fields, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return answer.json()["id"], answer.json()["key"]


def _show(client: httpx.Client, key_id: str) -> dict[str, Any]:
    answer = client.get(f"/admin/keys/{key_id}", headers=ADMIN)
    assert answer.status_code == 200, answer.text
    shown: dict[str, Any] = answer.json()
    return shown


def test_a_key_shows_its_effective_limits_and_requests_in_flight(client: httpx.Client) -> None:
    # Its own rpm; the standard tier's tpm and max_concurrent (64) where it sets none.
    key_id, secret = _create(client, name="team-a", tier="standard", limits={"rpm": 30})
    shown = _show(client, key_id)
    assert shown["id"] == key_id and shown["name"] == "team-a"
    assert "key" not in shown and "key_hash" not in shown
    assert shown["limits"]["max_concurrent"] is None  # as stored
    assert shown["effective_limits"] == {
        "rpm": 30,
        "tpm": 1_000_000,
        "tokens_per_day": None,
        "max_concurrent": 64,
    }
    assert shown["in_flight"] == 0

    body = {"model": "slow", "stream": True, "max_tokens": 200,
            "messages": [{"role": "user", "content": "a long story"}]}  # fmt: skip
    auth = {"authorization": f"Bearer {secret}"}
    with client.stream("POST", "/v1/chat/completions", json=body, headers=auth) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()  # kept: a dropped iterator closes the stream
        assert next(lines).startswith("data: ")  # admitted, and streaming
        assert _show(client, key_id)["in_flight"] == 1
    # The client left: the gateway ends the stream and frees the slot.
    wait_for(
        lambda: _show(client, key_id)["in_flight"] == 0,
        timeout_s=15,
        what="the stream's concurrency slot to be freed",
    )


def test_nothing_counts_a_key_without_a_concurrency_limit_nor_a_revoked_one(
    client: httpx.Client,
) -> None:
    free_id, _ = _create(client, name="ops", tier="unlimited")
    free = _show(client, free_id)
    assert free["effective_limits"]["max_concurrent"] is None
    assert free["in_flight"] is None

    old_id, _ = _create(client, name="rotated", tier="standard")
    assert client.post(f"/admin/keys/{old_id}/rotate", headers=ADMIN).status_code == 201
    old = _show(client, old_id)  # a revoked record is still shown
    assert old["revoked_at"] is not None
    assert old["in_flight"] is None  # the new key shares its name: its slots are not this one's


def test_an_unknown_key_is_404_and_the_admin_key_is_needed(client: httpx.Client) -> None:
    missing = client.get("/admin/keys/key_nope", headers=ADMIN)
    assert missing.status_code == 404
    assert "key_nope" in missing.json()["error"]["message"]
    key_id, secret = _create(client, name="team-b", tier="standard")
    assert client.get(f"/admin/keys/{key_id}").status_code == 401
    as_user = client.get(f"/admin/keys/{key_id}", headers={"authorization": f"Bearer {secret}"})
    assert as_user.status_code in {401, 403}
    assert client.get(f"/admin/keys/{key_id}/extra", headers=ADMIN).status_code == 404
