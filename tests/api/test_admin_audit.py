"""Editing an API key through the admin API, and the one audit log of every
admin change, through a running gateway: a PATCHed limit or model list holds
from the key's next request; key and chaos changes are listed by
``GET /admin/audit`` with who made them, and never show a key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.admin_gateway import admin_gateway
from tests.support.servers import InProcessGateway

ADMIN_KEY = "sk-admin-audit"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
CHAT = {"model": "sim", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
ERROR_FIELDS = {"message", "type", "param", "code"}


def _start(tmp_path: Path, **sections: Any) -> InProcessGateway:
    return admin_gateway(tmp_path, ADMIN_KEY, **sections)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    gateway = _start(tmp_path)
    try:
        with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
            yield client
    finally:
        gateway.close()


def _as(actor: str) -> dict[str, str]:
    return {**ADMIN, "x-interlock-actor": actor}


def _create(client: httpx.Client, actor: str = "admin", **fields: Any) -> tuple[str, str]:
    body = {"name": "team-a", "tier": "standard", **fields}
    answer = client.post("/admin/keys", json=body, headers=_as(actor))
    assert answer.status_code == 201, answer.text
    return answer.json()["id"], answer.json()["key"]


def _chat(client: httpx.Client, key: str, model: str = "sim") -> int:
    body = {**CHAT, "model": model}
    return client.post("/v1/chat/completions", json=body, headers=_bearer(key)).status_code


def _bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _audit(client: httpx.Client, **query: str) -> list[dict[str, Any]]:
    answer = client.get("/admin/audit", params=query, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert page["object"] == "list"
    return list(page["data"])


def test_a_patched_key_answers_its_new_settings_and_keeps_the_rest(client: httpx.Client) -> None:
    key_id, _ = _create(client, allowed_models=["sim", "embed"], limits={"rpm": 100, "tpm": 9000})
    body = {"name": "team-b", "tier": "premium", "budget_usd_day": 2.5, "limits": {"rpm": 50}}
    answer = client.patch(f"/admin/keys/{key_id}", json=body, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    shown = answer.json()
    assert (shown["id"], shown["object"], shown["name"], shown["tier"]) == (
        key_id,
        "api_key",
        "team-b",
        "premium",
    )
    assert shown["limits"] == {
        "rpm": 50,
        "tpm": None,
        "tokens_per_day": None,
        "max_concurrent": None,
    }
    assert shown["budget_usd_day"] == 2.5 and shown["budget_usd_month"] is None
    assert shown["allowed_models"] == ["embed", "sim"]  # untouched
    assert "key" not in shown and "key_hash" not in shown
    cleared = client.patch(
        f"/admin/keys/{key_id}",
        json={"budget_usd_day": None, "allowed_models": None},
        headers=ADMIN,
    )
    assert cleared.status_code == 200
    assert cleared.json()["budget_usd_day"] is None and cleared.json()["allowed_models"] is None
    listed = client.get("/admin/keys", headers=ADMIN).json()["data"]
    assert [(k["id"], k["name"], k["tier"]) for k in listed] == [(key_id, "team-b", "premium")]


def test_a_lowered_rpm_holds_from_the_keys_next_request(client: httpx.Client) -> None:
    key_id, key = _create(client, limits={"rpm": 1000})
    assert [_chat(client, key) for _ in range(3)] == [200, 200, 200]
    answer = client.patch(f"/admin/keys/{key_id}", json={"limits": {"rpm": 1}}, headers=ADMIN)
    assert answer.status_code == 200 and answer.json()["limits"]["rpm"] == 1
    statuses = [_chat(client, key) for _ in range(3)]
    assert 429 in statuses[:2], statuses  # a burst of at most one, then refused


def test_a_removed_model_is_refused_from_the_keys_next_request(client: httpx.Client) -> None:
    key_id, key = _create(client, allowed_models=["sim", "embed"])
    assert _chat(client, key) == 200
    answer = client.patch(
        f"/admin/keys/{key_id}", json={"allowed_models": ["embed"]}, headers=ADMIN
    )
    assert answer.status_code == 200 and answer.json()["allowed_models"] == ["embed"]
    assert _chat(client, key) == 403
    embedded = client.post(
        "/v1/embeddings", json={"model": "embed", "input": "hi"}, headers=_bearer(key)
    )
    assert embedded.status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tier": "golden"}, "tier"),
        ({"permissions": ["admin"]}, "permissions"),
        ({"name": None}, "name"),
        ({"name": ""}, "name"),
        ({"limits": {"rpm": 0}}, "limits.rpm"),
        ({"limits": {"rpn": 5}}, "limits.rpn"),
        ({"allowed_models": []}, "allowed_models"),
        ({"budget_usd_month": -1}, "budget_usd_month"),
        ({"guardrails": {"no_such_guardrail": {}}}, "guardrails"),
    ],
)
def test_a_bad_change_is_a_400_in_openais_shape_and_changes_nothing(
    client: httpx.Client, body: dict[str, Any], param: str
) -> None:
    key_id, _ = _create(client)
    answer = client.patch(f"/admin/keys/{key_id}", json=body, headers=ADMIN)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert set(error) == ERROR_FIELDS and error["type"] == "invalid_request_error"
    assert error["param"] == param
    (shown,) = client.get("/admin/keys", headers=ADMIN).json()["data"]
    assert (shown["name"], shown["tier"]) == ("team-a", "standard")
    assert [e["action"] for e in _audit(client, area="keys")] == ["create"]


def test_patch_needs_the_admin_key_and_a_live_key(client: httpx.Client) -> None:
    key_id, key = _create(client)
    change = {"tier": "premium"}
    assert client.patch(f"/admin/keys/{key_id}", json=change).status_code == 401
    refused = client.patch(f"/admin/keys/{key_id}", json=change, headers=_bearer(key))
    assert refused.status_code == 401 and set(refused.json()["error"]) == ERROR_FIELDS
    unknown = client.patch("/admin/keys/key_nope", json=change, headers=ADMIN)
    assert unknown.status_code == 404 and set(unknown.json()["error"]) == ERROR_FIELDS
    assert (
        client.patch(f"/admin/keys/{key_id}/rotate", json=change, headers=ADMIN).status_code == 404
    )
    assert client.post(f"/admin/keys/{key_id}/revoke", headers=ADMIN).status_code == 200
    assert client.patch(f"/admin/keys/{key_id}", json=change, headers=ADMIN).status_code == 404


def test_the_audit_log_lists_key_changes_with_their_actor(client: httpx.Client) -> None:
    key_id, first = _create(client, actor="alice", limits={"rpm": 100})
    client.patch(f"/admin/keys/{key_id}", json={"limits": {"rpm": 10}}, headers=_as("bob"))
    rotated = client.post(f"/admin/keys/{key_id}/rotate", headers=_as("carol"))
    assert rotated.status_code == 201
    successor, second = rotated.json()["id"], rotated.json()["key"]
    assert client.post(f"/admin/keys/{successor}/revoke", headers=ADMIN).status_code == 200
    entries = _audit(client, area="keys")
    assert [(e["action"], e["actor"], e["target"], e["area"]) for e in entries] == [
        ("revoke", "admin", f"key:{successor}", "keys"),
        ("rotate", "carol", f"key:{key_id}", "keys"),
        ("update", "bob", f"key:{key_id}", "keys"),
        ("create", "alice", f"key:{key_id}", "keys"),
    ]
    assert set(entries[0]) == {"id", "ts", "actor", "area", "action", "target", "detail"}
    assert entries[2]["detail"]["before"]["limits"]["rpm"] == 100
    assert entries[2]["detail"]["after"]["limits"]["rpm"] == 10
    assert [e["action"] for e in _audit(client, target=f"key:{successor}")] == ["revoke"]
    assert _audit(client, area="chaos") == _audit(client, area="registry") == []
    assert len(_audit(client, area="keys", limit="2")) == 2
    text = client.get("/admin/audit", headers=ADMIN).text
    assert first not in text and second not in text
    bad = client.get("/admin/audit", params={"area": "models"}, headers=ADMIN)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "area"
    assert client.get("/admin/audit", params={"area": "keys"}).status_code == 401


def test_the_audit_log_lists_chaos_changes(client: httpx.Client) -> None:
    drill = {"enabled": True, "rules": [{"deployment": "sim-1", "error_rate": 0.5}]}
    assert client.put("/admin/chaos", json=drill, headers=_as("erin")).status_code == 200
    unknown = {"enabled": True, "rules": [{"deployment": "nope", "error_rate": 1.0}]}
    assert client.put("/admin/chaos", json=unknown, headers=ADMIN).status_code == 400
    (entry,) = _audit(client, area="chaos")
    assert (entry["action"], entry["actor"], entry["target"]) == ("set", "erin", "chaos")
    assert entry["detail"]["before"] == {"enabled": False, "rules": []}
    assert entry["detail"]["after"]["enabled"] is True
    assert entry["detail"]["after"]["rules"][0]["deployment"] == "sim-1"
    assert entry["detail"]["after"] == client.get("/admin/chaos", headers=ADMIN).json()


def test_the_audit_log_needs_no_registry(tmp_path: Path) -> None:
    gateway = _start(tmp_path, registry={"enabled": False})
    try:
        with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
            _create(client, actor="alice")
            assert [e["actor"] for e in _audit(client)] == ["alice"]
    finally:
        gateway.close()
