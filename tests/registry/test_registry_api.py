"""The model registry through a running gateway: versions registered with
the admin API are served next to the config file's models; canaries take
their share (sticky when asked) and are rolled back when they misbehave;
tensor models answer /v1/infer through the in-process ONNX engine and a
KServe v2 server alike, with failover between the two."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import TEST_KEY, simulator_config
from tests.support.admin_gateway import admin_gateway
from tests.support.fake_kserve import FakeKServe
from tests.support.servers import InProcessGateway
from tests.support.tiny_onnx import BIAS, WEIGHTS
from tests.support.waiting import wait_for

ADMIN_KEY = "sk-admin-registry"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}", "x-interlock-actor": "alice"}
CALLER = {"authorization": f"Bearer {TEST_KEY}"}
ROWS = [[1.0, 2.0, 3.0, 4.0], [0.0, -1.0, 0.5, 2.0]]


def _expected(row: list[float]) -> list[float]:
    logits = [sum(x * w for x, w in zip(row, column, strict=True)) + b
              for column, b in zip(zip(*WEIGHTS, strict=True), BIAS, strict=True)]  # fmt: skip
    top = max(logits)
    exp = [math.exp(v - top) for v in logits]
    return [v / sum(exp) for v in exp]


def _start(tmp_path: Path, **sections: Any) -> InProcessGateway:
    """A gateway with records of its own: registered versions outlive it."""
    return admin_gateway(tmp_path, ADMIN_KEY, **sections)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[InProcessGateway]:
    gateway = _start(tmp_path, registry={"canary": {"min_requests": 5, "latency_floor_ms": 20}})
    yield gateway
    gateway.close()


@pytest.fixture
def client(gateway: InProcessGateway) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
        yield client


def _register(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"kind": "chat", "provider": "simulator", **fields}
    answer = client.post("/admin/models", json=body, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def _chat(client: httpx.Client, model: str, user: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if user is not None:
        body["user"] = user
    return client.post("/v1/chat/completions", json=body, headers=CALLER)


def _infer(client: httpx.Client, model: str, **extra: Any) -> httpx.Response:
    tensor = {"name": "features", "shape": [2, 4], "datatype": "FP32", "data": ROWS}
    return client.post(
        "/v1/infer", json={"model": model, "inputs": [tensor], **extra}, headers=CALLER
    )


def _versions(client: httpx.Client, name: str) -> dict[str, str]:
    answer = client.get(f"/admin/models/{name}", headers=ADMIN)
    return {v["version"]: v["status"] for v in answer.json()["data"]}


def test_a_registered_version_serves_the_official_sdk_and_leaves_with_its_deletion(
    gateway: InProcessGateway, client: httpx.Client
) -> None:
    created = _register(client, name="team/assistant", version="v1", status="live")
    assert (created["status"], created["updated_by"]) == ("live", "alice")
    with openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=TEST_KEY, max_retries=0) as sdk:
        answer = sdk.chat.completions.with_raw_response.create(
            model="team/assistant", messages=[{"role": "user", "content": "hello"}]
        )
        assert answer.headers["x-interlock-deployment"] == "team/assistant@v1"
        assert answer.parse().choices[0].message.content
        assert "team/assistant" in [m.id for m in sdk.models.list()]
        assert "sim" in [m.id for m in sdk.models.list()]  # the config file's models stay

    _register(client, name="team/assistant", version="v2", status="live")
    assert _versions(client, "team/assistant") == {"v1": "retired", "v2": "live"}
    deleted = client.delete("/admin/models/team/assistant/versions/v1", headers=ADMIN)
    assert deleted.status_code == 200
    refused = client.delete("/admin/models/team/assistant/versions/v2", headers=ADMIN)
    assert refused.status_code == 409 and "is live" in refused.json()["error"]["message"]


def test_a_canary_takes_its_share_and_sticky_callers_stay_on_their_side(
    client: httpx.Client,
) -> None:
    _register(client, name="assistant", version="1", status="live")
    _register(client, name="assistant", version="2")
    staged = Counter(_chat(client, "assistant").headers["x-interlock-version"] for _ in range(10))
    assert staged == {"1": 10}  # staging serves nobody who did not ask for it

    canary = client.post(
        "/admin/models/assistant/versions/2/canary", json={"share": 0.5}, headers=ADMIN
    )
    assert canary.status_code == 200 and canary.json()["traffic_share"] == 0.5
    seen = Counter(_chat(client, "assistant").headers["x-interlock-version"] for _ in range(80))
    assert seen["1"] > 0 and seen["2"] > 0 and seen.total() == 80

    client.post(
        "/admin/models/assistant/versions/2/canary",
        json={"share": 0.5, "sticky": True},
        headers=ADMIN,
    )
    sides = {}
    for user in (f"user-{n}" for n in range(40)):
        versions = {
            _chat(client, "assistant", user).headers["x-interlock-version"] for _ in range(3)
        }
        assert len(versions) == 1, f"{user} flipped between versions"
        sides[user] = versions.pop()
    assert set(sides.values()) == {"1", "2"}

    promoted = client.post("/admin/models/assistant/versions/2/promote", headers=ADMIN)
    assert promoted.json()["status"] == "live"
    assert {_chat(client, "assistant").headers["x-interlock-version"] for _ in range(10)} == {"2"}
    rolled = client.post(
        "/admin/models/assistant/rollback", json={"reason": "drill"}, headers=ADMIN
    )
    assert rolled.json()["serving"]["version"] == "1"
    assert {_chat(client, "assistant").headers["x-interlock-version"] for _ in range(10)} == {"1"}
    audit = client.get("/admin/audit", params={"target": "assistant"}, headers=ADMIN).json()
    assert [e["action"] for e in audit["data"]][:3] == ["rollback", "promote", "canary"]
    assert audit["data"][0]["detail"]["reason"] == "drill"
    assert {e["actor"] for e in audit["data"]} == {"alice"}
    assert {e["area"] for e in audit["data"]} == {"registry"}


def test_a_canary_whose_breaker_opens_is_rolled_back_and_no_caller_sees_its_errors(
    client: httpx.Client,
) -> None:
    _register(client, name="assistant", version="stable", status="live")
    _register(client, name="assistant", version="broken", params={"error_rate": 1.0})
    client.post(
        "/admin/models/assistant/versions/broken/canary", json={"share": 0.5}, headers=ADMIN
    )
    statuses = Counter(_chat(client, "assistant").status_code for _ in range(30))
    assert statuses == {200: 30}  # the canary's failures failed over to the live version

    def rolled_back() -> bool:
        return _versions(client, "assistant")["broken"] == "staging"

    wait_for(rolled_back, timeout_s=15, what="the broken canary to be rolled back")
    entry = client.get("/admin/audit", params={"target": "assistant@broken"}, headers=ADMIN)
    latest = entry.json()["data"][0]
    assert (latest["action"], latest["actor"]) == ("rollback", "interlock:auto-rollback")
    assert latest["detail"]["reason"] == "its circuit breaker opened"
    metrics = client.get("/metrics").text
    assert 'interlock_registry_rollbacks_total{model="assistant",trigger="auto"} 1.0' in metrics


@pytest.mark.parametrize(
    ("routing", "all_served"),
    [
        # One attempt: the broken canary's share of the callers get its errors.
        ({"max_attempts": 1}, False),
        # Retries with room for all of them: every caller is served by the live version.
        ({"max_attempts": 3, "retry_budget_ratio": 1.0}, True),
    ],
)
def test_registered_models_follow_registry_routing(
    tmp_path: Path, routing: dict[str, Any], all_served: bool
) -> None:
    # A breaker that never trips keeps the canary failing throughout (the
    # shipped one would stop its traffic after five failures in a row).
    never_trips = {"consecutive_failures": 1000, "min_requests": 1000}
    gateway = _start(
        tmp_path,
        registry={
            "canary": {"auto_rollback": False},
            "routing": {**routing, "breaker": never_trips},
        },
    )
    try:
        with httpx.Client(base_url=gateway.base_url, timeout=30) as client:
            _register(client, name="assistant", version="stable", status="live")
            _register(client, name="assistant", version="broken", params={"error_rate": 1.0})
            promoted = client.post(
                "/admin/models/assistant/versions/broken/canary",
                json={"share": 0.5},
                headers=ADMIN,
            )
            assert promoted.status_code == 200, promoted.text
            statuses = Counter(_chat(client, "assistant").status_code for _ in range(60))
    finally:
        gateway.close()
    if all_served:
        assert statuses == {200: 60}
    else:
        # About 30 of 60 reach the canary; fewer than 8 would be a one-in-10^10 draw.
        assert sum(statuses.values()) - statuses[200] >= 8, statuses
        assert statuses[200] >= 8, statuses


def test_a_slow_canary_is_rolled_back_on_latency(client: httpx.Client) -> None:
    _register(client, name="assistant", version="fast", status="live")
    _register(client, name="assistant", version="slow", params={"ttft_ms": 80})
    client.post("/admin/models/assistant/versions/slow/canary", json={"share": 0.5}, headers=ADMIN)

    def rolled_back() -> bool:
        for _ in range(5):
            assert _chat(client, "assistant").status_code == 200
        return _versions(client, "assistant")["slow"] == "staging"

    wait_for(rolled_back, timeout_s=30, what="the slow canary to be rolled back")
    reason = client.get("/admin/audit", params={"target": "assistant@slow"}, headers=ADMIN)
    assert "mean latency" in reason.json()["data"][0]["detail"]["reason"]


def test_tensor_inference_on_a_registered_onnx_version(client: httpx.Client) -> None:
    _register(
        client,
        name="classifier",
        version="1",
        kind="tensor",
        provider="onnx",
        upstream_model="tiny-classifier",
        status="live",
    )
    answer = _infer(client, "classifier", id="req-7")
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert (result["model_name"], result["model_version"], result["id"]) == (
        "classifier",
        "1",
        "req-7",
    )
    (output,) = result["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == (
        "probabilities",
        "FP32",
        [2, 3],
    )
    expected = [p for row in ROWS for p in _expected(row)]
    assert output["data"] == pytest.approx(expected, abs=1e-6)

    metadata = client.get("/v1/models/classifier/versions/1", headers=CALLER).json()
    assert metadata["ready"] is True and metadata["platform"] == "onnxruntime_onnx"
    assert metadata["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
    assert metadata["versions"] == ["1"] and metadata["stage"] == "live"

    bad = {"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}
    refused = client.post(
        "/v1/infer", json={"model": "classifier", "inputs": [bad]}, headers=CALLER
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "inputs[0].shape"
    assert "features" in refused.json()["error"]["message"]
    missing = _infer(client, "classifier", version="9")
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "version"
    assert client.get("/v1/models/classifier/versions/9", headers=CALLER).status_code == 404

    # A staging version answers only requests that name it.
    _register(client, name="classifier", version="2", kind="tensor", provider="onnx",
              upstream_model="tiny-classifier", params={"max_wait_ms": 0})  # fmt: skip
    assert _infer(client, "classifier").json()["model_version"] == "1"
    assert _infer(client, "classifier", version="2").json()["model_version"] == "2"

    def units() -> int:
        usage = client.get("/admin/usage", params={"group_by": "model"}, headers=ADMIN).json()
        rows = {row["model"]: row for row in usage["data"]}
        return int(rows["classifier"]["units"]) if "classifier" in rows else -1

    # Three answered requests of two rows each; refused ones count none.
    wait_for(lambda: units() == 6, timeout_s=15, what="the ledger to count 6 units")
    metrics = client.get("/metrics").text
    assert 'interlock_infer_units_total{key="test",model="classifier"} 6.0' in metrics
    assert 'interlock_infer_batch_size_count{deployment="classifier@1"}' in metrics


def test_the_admin_api_refuses_what_cannot_serve(client: httpx.Client) -> None:
    def post(**fields: Any) -> httpx.Response:
        body = {"name": "x", "version": "1", "kind": "chat", "provider": "simulator", **fields}
        return client.post("/admin/models", json=body, headers=ADMIN)

    assert client.get("/admin/models", headers=CALLER).status_code == 401
    clash = post(name="sim")
    assert clash.status_code == 409 and clash.json()["error"]["param"] == "name"
    no_file = post(kind="tensor", provider="onnx", upstream_model="/nonexistent/model.onnx")
    assert no_file.status_code == 400 and "no ONNX model file" in no_file.json()["error"]["message"]
    bad_param = post(kind="tensor", provider="onnx", upstream_model="tiny-classifier",
                     params={"max_batch_size": 0})  # fmt: skip
    assert bad_param.status_code == 400 and "max_batch_size" in bad_param.json()["error"]["message"]
    no_url = post(provider="kserve", upstream_model="m")
    assert no_url.status_code == 400 and "base_url" in no_url.json()["error"]["message"]
    bad_name = post(name="has space")
    assert bad_name.status_code == 400 and bad_name.json()["error"]["param"] == "name"
    unreachable = post(name="org/versions/x")
    assert unreachable.status_code == 400 and unreachable.json()["error"]["param"] == "name"
    assert post().status_code == 201
    assert post().status_code == 409
    version = "/admin/models/x/versions/1"
    broken = client.patch(version, json={"params": {"bogus": 1}}, headers=ADMIN)
    assert broken.status_code == 400 and "bogus" in broken.json()["error"]["message"]
    nulled = client.patch(version, json={"inputs": None}, headers=ADMIN)
    assert (
        nulled.status_code == 400 and "inputs cannot be null" in nulled.json()["error"]["message"]
    )
    edited = client.patch(version, json={"tags": ["a"], "params": {"ttft_ms": 1}}, headers=ADMIN)
    assert edited.json()["tags"] == ["a"] and edited.json()["params"] == {"ttft_ms": 1}
    canary = client.post("/admin/models/x/versions/1/canary", json={"share": 2}, headers=ADMIN)
    assert canary.status_code == 400 and canary.json()["error"]["param"] == "share"
    lonely = client.post("/admin/models/x/versions/1/canary", json={"share": 0.2}, headers=ADMIN)
    assert lonely.status_code == 409
    assert client.get("/admin/models/x/versions/7", headers=ADMIN).status_code == 404
    assert client.post("/admin/models/x/rollback", json={}, headers=ADMIN).status_code == 409
    assert client.get("/admin/audit", headers=ADMIN).json()["data"][0]["action"] == "update"


def test_with_the_registry_off_the_admin_api_says_so(tmp_path: Path) -> None:
    gateway = _start(tmp_path, registry={"enabled": False})
    try:
        answer = httpx.get(gateway.base_url + "/admin/models", headers=ADMIN)
        assert answer.status_code == 503 and "registry" in answer.json()["error"]["message"]
    finally:
        gateway.close()


async def test_failover_between_a_kserve_server_and_the_onnx_engine(tmp_path: Path) -> None:
    async with FakeKServe() as fake:
        models = [
            {
                "name": "classifier",
                "routing": {"strategy": "priority"},
                "deployments": [
                    {"id": "triton", "provider": "kserve", "base_url": fake.url,
                     "model": "tiny-classifier", "priority": 0},
                    {"id": "local", "provider": "onnx", "model": "tiny-classifier", "priority": 1},
                ],
            },
        ]  # fmt: skip
        gateway = _start(tmp_path, models=[*simulator_config()["models"], *models])
        try:
            async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
                tensor = {"name": "features", "shape": [2, 4], "datatype": "FP32", "data": ROWS}
                body = {"model": "classifier", "inputs": [tensor]}
                first = await client.post("/v1/infer", json=body, headers=CALLER)
                assert first.headers["x-interlock-deployment"] == "triton"
                fake.fail_always(503)
                second = await client.post("/v1/infer", json=body, headers=CALLER)
                assert second.status_code == 200, second.text
                assert second.headers["x-interlock-deployment"] == "local"
                assert second.headers["x-interlock-attempts"] == "2"
                assert second.json()["outputs"][0]["data"] == pytest.approx(
                    first.json()["outputs"][0]["data"], abs=1e-6
                )
                upstream_400 = {**tensor, "datatype": "FP64"}
                fake.heal()
                refused = await client.post(
                    "/v1/infer", json={"model": "classifier", "inputs": [upstream_400]},
                    headers=CALLER,
                )  # fmt: skip
                assert refused.status_code == 400
                meta = await client.get("/v1/models/classifier/versions/x", headers=CALLER)
                assert meta.status_code == 404
        finally:
            gateway.close()


def test_a_chaos_drill_can_target_a_registered_version(client: httpx.Client) -> None:
    _register(client, name="assistant", version="1", status="live")
    _register(client, name="assistant", version="2")
    client.post("/admin/models/assistant/versions/2/canary", json={"share": 0.5}, headers=ADMIN)
    drill = {"enabled": True, "rules": [{"deployment": "assistant@2", "error_rate": 1.0}]}
    armed = client.put("/admin/chaos", json=drill, headers=ADMIN)
    assert armed.status_code == 200, armed.text
    served = Counter(
        _chat(client, "assistant").headers["x-interlock-deployment"] for _ in range(20)
    )
    assert served == {"assistant@1": 20}  # the drilled canary's failures fail over
    unknown = {"enabled": True, "rules": [{"deployment": "assistant@9", "error_rate": 1.0}]}
    assert client.put("/admin/chaos", json=unknown, headers=ADMIN).status_code == 400
