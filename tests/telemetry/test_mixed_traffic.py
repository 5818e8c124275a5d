"""Mixed traffic through an in-process gateway: metrics, traces and access
log agree with what happened, request by request."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from interlock.app import create_app
from interlock.config import parse_config
from tests.conftest import TEST_KEY
from tests.support.servers import FakeUpstream, InProcessGateway

AUTH = {"authorization": f"Bearer {TEST_KEY}"}
MESSAGES = [{"role": "user", "content": "hello"}]
CHAT_SIM = {"model": "sim", "messages": MESSAGES}
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"


class TraceRecordingUpstream:
    """OpenAI-compatible upstream that records the traceparent it receives."""

    def __init__(self) -> None:
        self.traceparents: list[str | None] = []
        self.lock = threading.Lock()
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        with self.lock:
            self.traceparents.append(request.headers.get("traceparent"))
        return web.json_response(
            {
                "id": "c",
                "object": "chat.completion",
                "created": 1,
                "model": "upstream-m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hi"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
            }
        )


@pytest.fixture
def stack(
    fake_upstream: Callable[[web.Application], FakeUpstream],
) -> Iterator[dict[str, Any]]:
    recorder = TraceRecordingUpstream()
    upstream = fake_upstream(recorder.app)
    raw = {
        "models": [
            {
                "name": "sim",
                "deployments": [
                    {"id": "sim-1", "provider": "simulator", "params": {"max_tokens": 6}}
                ],
            },
            {
                "name": "broken",
                "deployments": [
                    {"id": "broken-1", "provider": "simulator", "params": {"error_rate": 1.0}}
                ],
            },
            {
                "name": "remote",
                "deployments": [
                    {
                        "id": "remote-1",
                        "provider": "openai",
                        "model": "upstream-m",
                        "base_url": upstream.url + "/v1",
                        "price": {"input_per_million": 1000000, "output_per_million": 2000000},
                    }
                ],
            },
        ],
        "keys": [
            {"name": "alice", "key": TEST_KEY},
            {"name": "capped", "key": "sk-capped", "limits": {"rpm": 1}},
        ],
        "telemetry": {"stage_sample_rate": 1.0},
        "server": {"public_deployment_health": True},
        "cache": {"enabled": True},
    }
    exporter = InMemorySpanExporter()
    log = io.BytesIO()
    app = create_app(parse_config(raw, env={}), span_exporter=exporter, log_stream=log)
    gateway = InProcessGateway(app)
    yield {"url": gateway.base_url, "spans": exporter, "log": log, "upstream": recorder}
    gateway.close()


def _metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url + "/metrics").text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def _value(metrics: dict[Any, float], name: str, **labels: str) -> float:
    return sum(
        v
        for (n, ls), v in metrics.items()
        if n == name and all(dict(ls).get(k) == want for k, want in labels.items())
    )


def _log_lines(log: io.BytesIO) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in log.getvalue().splitlines()]


def _eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    """Telemetry is recorded just after the last byte reaches the client."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "telemetry never caught up"
        time.sleep(0.01)


ROOTS, SPANS = 8, 14  # requests driven; their server spans plus one per upstream attempt
DETERMINISTIC = {"model": "sim", "messages": MESSAGES, "temperature": 0}


def _drive(url: str) -> dict[str, str]:
    """One of each: unary, cache hit, stream, upstream failure, remote with a
    client traceparent, limiter rejection."""
    ids = {}
    with httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
        ok = client.post("/v1/chat/completions", json=CHAT_SIM)
        assert ok.status_code == 200
        ids["unary"] = ok.headers["x-request-id"]
        with client.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "sim", "messages": MESSAGES, "stream": True},
        ) as stream:
            body = b"".join(stream.iter_bytes())
            ids["stream"] = stream.headers["x-request-id"]
        # Usage was asked upstream for accounting, but not sent to this client.
        assert body.endswith(b"data: [DONE]\n\n") and b'"usage":{' not in body
        failed = client.post("/v1/chat/completions", json={"model": "broken", "messages": MESSAGES})
        assert failed.status_code == 503
        ids["failed"] = failed.headers["x-request-id"]
        traced = client.post(
            "/v1/chat/completions",
            json={"model": "remote", "messages": MESSAGES},
            headers={"traceparent": f"00-{CLIENT_TRACE}-b7ad6b7169203331-01"},
        )
        assert traced.status_code == 200
        ids["remote"] = traced.headers["x-request-id"]
        for name in ("fill", "hit"):
            cached = client.post("/v1/chat/completions", json=DETERMINISTIC)
            assert cached.headers["x-interlock-cache"] == ("miss" if name == "fill" else "hit")
            ids[name] = cached.headers["x-request-id"]
        capped = {"authorization": "Bearer sk-capped"}
        first = client.post("/v1/chat/completions", json=CHAT_SIM, headers=capped)
        assert first.is_success
        ids["capped"] = first.headers["x-request-id"]
        limited = client.post("/v1/chat/completions", json=CHAT_SIM, headers=capped)
        assert limited.status_code == 429 and limited.headers["retry-after"]
        assert limited.headers["x-ratelimit-remaining-requests"] == "0"
        ids["limited"] = limited.headers["x-request-id"]
    return ids


def test_metrics_count_what_happened(stack: dict[str, Any]) -> None:
    _drive(stack["url"])
    _eventually(lambda: len(stack["spans"].get_finished_spans()) == SPANS)
    m = _metrics(stack["url"])
    route = "/v1/chat/completions"
    assert _value(m, "interlock_requests_total", route=route, model="sim", status="200") == 5
    assert _value(m, "interlock_requests_total", route=route, status="429") == 1
    assert _value(m, "interlock_cache_requests_total", result="hit") == 1
    assert _value(m, "interlock_cache_requests_total", result="miss") == 1
    assert _value(m, "interlock_limiter_rejections_total", reason="rpm") == 1
    assert _value(m, "interlock_requests_total", route=route, model="broken", status="503") == 1
    assert (
        _value(m, "interlock_upstream_errors_total", deployment="broken-1", kind="server_error")
        == 1
    )
    assert _value(m, "interlock_tokens_total", key="alice", model="remote", type="input") == 11
    assert _value(m, "interlock_tokens_total", key="alice", model="remote", type="output") == 7
    assert _value(m, "interlock_cost_usd_total", key="alice", model="remote") == pytest.approx(25)
    # The stream was accounted although the client did not ask for usage.
    assert _value(m, "interlock_tokens_total", key="alice", model="sim", type="output") > 0
    assert (
        _value(m, "gen_ai_server_time_to_first_token_seconds_count", gen_ai_request_model="sim")
        == 1
    )
    assert _value(m, "gen_ai_server_time_per_output_token_seconds_count") >= 1
    assert _value(m, "gen_ai_client_token_usage_count", gen_ai_token_type="input") == 5
    assert _value(m, "interlock_stage_duration_seconds_count", stage="admission") == ROOTS
    assert _value(m, "interlock_in_flight_requests") == 1  # the /metrics request itself


def test_one_complete_trace_per_request(stack: dict[str, Any]) -> None:
    ids = _drive(stack["url"])
    _eventually(lambda: len(stack["spans"].get_finished_spans()) == SPANS)
    spans: list[ReadableSpan] = list(stack["spans"].get_finished_spans())
    roots = [s for s in spans if s.kind.name == "SERVER"]
    assert len(roots) == ROOTS
    by_request = {s.attributes["interlock.request_id"]: s for s in roots}
    assert set(by_request) == set(ids.values())
    for root in roots:
        children = [s for s in spans if s.parent and s.parent.span_id == root.context.span_id]
        served_upstream = root.attributes["interlock.request_id"] not in {
            ids["hit"],
            ids["limited"],
        }
        assert [c.kind.name for c in children] == (["CLIENT"] if served_upstream else [])
        assert all(c.context.trace_id == root.context.trace_id for c in children)
    unary = by_request[ids["unary"]]
    assert unary.name == "chat sim"
    assert unary.attributes["gen_ai.request.model"] == "sim"
    assert unary.attributes["gen_ai.provider.name"] == "interlock.simulator"
    assert unary.attributes["gen_ai.usage.output_tokens"] > 0
    assert unary.attributes["gen_ai.response.finish_reasons"] in (("stop",), ("length",))
    failed = by_request[ids["failed"]]
    assert failed.status.status_code.name == "ERROR"
    assert failed.attributes["error.type"] == "server_error"
    remote = by_request[ids["remote"]]
    assert format(remote.context.trace_id, "032x") == CLIENT_TRACE
    assert stack["upstream"].traceparents[0].split("-")[1] == CLIENT_TRACE


def test_access_log_lines_carry_the_fields_and_trace_ids(stack: dict[str, Any]) -> None:
    ids = _drive(stack["url"])
    _eventually(lambda: len(stack["spans"].get_finished_spans()) == SPANS)
    _eventually(lambda: len(_log_lines(stack["log"])) == ROOTS)
    spans = {
        s.attributes["interlock.request_id"]: s
        for s in stack["spans"].get_finished_spans()
        if s.kind.name == "SERVER"
    }
    lines = {line["request_id"]: line for line in _log_lines(stack["log"])}
    for request_id in ids.values():
        line = lines[request_id]
        assert line["trace_id"] == format(spans[request_id].context.trace_id, "032x")
        assert line["key"] == (
            "capped" if request_id in {ids["capped"], ids["limited"]} else "alice"
        )
        assert {"model", "deployment", "attempts", "status", "duration_ms"} <= set(line)
        assert "stages_ms" in line  # sample rate 1.0 in this config
    remote = lines[ids["remote"]]
    assert (remote["input_tokens"], remote["output_tokens"]) == (11, 7)
    assert remote["cost_usd"] == pytest.approx(25)
    assert lines[ids["stream"]]["ttft_ms"] > 0
    assert lines[ids["failed"]]["error_type"] == "server_error"
    # What each client was answered with, told apart by its code.
    assert lines[ids["limited"]]["error_code"] == "rate_limit_exceeded"
    assert lines[ids["failed"]]["error_code"] == "all_deployments_failed"
    assert "error_code" not in lines[ids["unary"]]
    raw = stack["log"].getvalue()
    assert b"hello" not in raw and TEST_KEY.encode() not in raw  # no prompts, no keys


def test_health_and_slow_requests(stack: dict[str, Any]) -> None:
    url = stack["url"]
    with httpx.Client(base_url=url, headers=AUTH, timeout=10) as client:
        for _ in range(5):
            client.post("/v1/chat/completions", json={"model": "broken", "messages": MESSAGES})
        ready = client.get("/health/ready")
        # Reported, and still ready: the other models answer (ADR 0019).
        assert ready.status_code == 200
        assert ready.json()["status"] == "degraded"
        assert ready.json()["degraded_models"] == ["broken"]
        deployments = {d["deployment"]: d for d in client.get("/health/deployments").json()["data"]}
        assert deployments["broken-1"]["healthy"] is False
        assert deployments["broken-1"]["error_rate"] == 1.0
        assert deployments["sim-1"]["healthy"] is True
        # The admin API is off without an admin key.
        assert client.get("/admin/requests/slow").status_code == 403


def test_admin_slow_requests_lists_the_slowest_with_stages(
    fake_upstream: Callable[[web.Application], FakeUpstream],
) -> None:
    raw = {
        "models": [
            {
                "name": "sim",
                "deployments": [
                    {"id": "sim-1", "provider": "simulator", "params": {"max_tokens": 4}}
                ],
            },
            {
                "name": "slow",
                "deployments": [
                    {"id": "slow-1", "provider": "simulator", "params": {"ttft_ms": 150}}
                ],
            },
        ],
        "keys": [{"name": "alice", "key": TEST_KEY}],
        "server": {"admin_key": "sk-admin", "access_log": False},
    }
    gateway = InProcessGateway(create_app(parse_config(raw, env={})))
    try:
        with httpx.Client(base_url=gateway.base_url, headers=AUTH, timeout=10) as client:
            for model in ("sim", "slow", "sim"):
                client.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES})
            assert client.get("/admin/requests/slow").status_code == 401
            slow = client.get(
                "/admin/requests/slow?limit=2", headers={"authorization": "Bearer sk-admin"}
            )
            assert (
                client.get(
                    "/admin/requests/slow?limit=x", headers={"authorization": "Bearer sk-admin"}
                ).status_code
                == 400
            )
    finally:
        gateway.close()
    entries = slow.json()["data"]
    assert len(entries) == 2 and entries[0]["model"] == "slow"
    assert entries[0]["duration_ms"] >= 150
    assert {"admission", "validation", "routing", "upstream"} <= set(entries[0]["stages_ms"])


def test_a_streamed_cache_hit_is_traced_like_the_answer_it_replays(
    stack: dict[str, Any],
) -> None:
    streamed = {**DETERMINISTIC, "stream": True}
    ids = {}
    with httpx.Client(base_url=stack["url"], headers=AUTH, timeout=10) as client:
        for name in ("fill", "hit"):
            with client.stream("POST", "/v1/chat/completions", json=streamed) as stream:
                assert b"".join(stream.iter_bytes()).endswith(b"data: [DONE]\n\n")
                assert stream.headers["x-interlock-cache"] == ("miss" if name == "fill" else "hit")
                ids[name] = stream.headers["x-request-id"]
    _eventually(lambda: len(stack["spans"].get_finished_spans()) == 3)  # 2 requests, 1 attempt
    roots = {
        s.attributes["interlock.request_id"]: s
        for s in stack["spans"].get_finished_spans()
        if s.parent is None
    }
    fill, hit = roots[ids["fill"]].attributes, roots[ids["hit"]].attributes
    assert hit["gen_ai.response.finish_reasons"] == fill["gen_ai.response.finish_reasons"]
    assert hit["gen_ai.response.model"] == fill["gen_ai.response.model"]
    assert hit["gen_ai.usage.output_tokens"] == fill["gen_ai.usage.output_tokens"] > 0
