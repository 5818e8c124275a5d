"""The HTTP edge with a raw client: ids, limits, malformed input, logs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import TEST_KEY, simulator_config
from tests.support.servers import GatewayProcess

AUTH = {"authorization": f"Bearer {TEST_KEY}"}
CHAT = {"model": "sim", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def gateway(start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    config = simulator_config()
    config["server"] = {"max_request_body_bytes": 2048}
    return start_gateway(config)


def _log_records(
    gateway: GatewayProcess, until: Callable[[dict[str, object]], bool]
) -> list[dict[str, object]]:
    records: list[dict[str, object]] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in gateway.drain_stderr():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        if any(until(r) for r in records):
            return records
        time.sleep(0.02)
    raise AssertionError(f"no matching log line in {records}")


def test_request_id_is_generated_and_logged(gateway: GatewayProcess) -> None:
    response = httpx.post(gateway.base_url + "/v1/chat/completions", json=CHAT, headers=AUTH)
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    assert request_id.startswith("req_")
    records = _log_records(gateway, lambda r: r.get("request_id") == request_id)
    access = [r for r in records if r.get("request_id") == request_id]
    assert access[0]["status"] == 200 and access[0]["logger"] == "interlock.access"


def test_client_request_id_is_kept(gateway: GatewayProcess) -> None:
    headers = {**AUTH, "x-request-id": "client-abc.123"}
    response = httpx.post(gateway.base_url + "/v1/chat/completions", json=CHAT, headers=headers)
    assert response.headers["x-request-id"] == "client-abc.123"
    _log_records(gateway, lambda r: r.get("request_id") == "client-abc.123")


def test_invalid_client_request_id_is_replaced(gateway: GatewayProcess) -> None:
    headers = {**AUTH, "x-request-id": "bad id with spaces"}
    response = httpx.post(gateway.base_url + "/v1/chat/completions", json=CHAT, headers=headers)
    assert response.headers["x-request-id"].startswith("req_")


def test_errors_carry_request_id_and_openai_shape(gateway: GatewayProcess) -> None:
    response = httpx.post(gateway.base_url + "/v1/chat/completions", json=CHAT)
    assert response.status_code == 401
    assert response.headers["x-request-id"]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}


def test_body_over_limit_is_413(gateway: GatewayProcess) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
    response = httpx.post(gateway.base_url + "/v1/chat/completions", json=big, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_chunked_body_over_limit_is_413(gateway: GatewayProcess) -> None:
    def chunks():  # no content-length: the limit is enforced while reading
        yield b'{"model": "sim", "messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"y" * 500
        yield b'"}]}'

    response = httpx.post(gateway.base_url + "/v1/chat/completions", content=chunks(), headers=AUTH)
    assert response.status_code == 413


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2]", b'"text"'])
def test_malformed_json_is_400(gateway: GatewayProcess, body: bytes) -> None:
    response = httpx.post(gateway.base_url + "/v1/chat/completions", content=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_route_and_method(gateway: GatewayProcess) -> None:
    assert httpx.get(gateway.base_url + "/v1/nothing", headers=AUTH).status_code == 404
    wrong = httpx.delete(gateway.base_url + "/v1/chat/completions", headers=AUTH)
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


def test_health_endpoints(gateway: GatewayProcess) -> None:
    assert httpx.get(gateway.base_url + "/health/live").json() == {"status": "ok"}
    assert httpx.get(gateway.base_url + "/health/ready").status_code == 200


def test_bad_input_never_crashes_the_process(gateway: GatewayProcess) -> None:
    url = gateway.base_url + "/v1/chat/completions"
    for body in (b"\xff\xfe", b"{" * 10000, b'{"model": 1}', b'{"model": "sim", "messages": "x"}'):
        assert httpx.post(url, content=body, headers=AUTH).status_code in {400, 413}
    assert httpx.post(url, json=CHAT, headers=AUTH).status_code == 200
    assert gateway.proc.poll() is None
