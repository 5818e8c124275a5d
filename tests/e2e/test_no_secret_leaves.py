"""No secret leaves the gateway: upstreams that echo the gateway's keys in
every way they can fail, a live ``interlock serve``, and every byte that
comes back to clients or goes to its logs (stderr: JSON logs and the access
log) searched for the keys and for runs of them."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import socket
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from interlock.redaction import REDACTED
from tests.support.servers import FakeUpstream, GatewayProcess

_ALPHABET = string.ascii_letters + string.digits


def _random(n: int) -> str:
    # Letters and digits only: each secret's every run of 10 reads as random.
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


@dataclass(frozen=True)
class Keys:
    """Fresh secrets per test. The OpenAI-compatible key has no well-known
    shape: only configuration can tell it is a secret."""

    corp: str = field(default_factory=lambda: "corp-" + _random(40))
    openai: str = field(default_factory=lambda: "sk-proj-" + _random(64))
    anthropic: str = field(default_factory=lambda: "sk-ant-api03-" + _random(80))
    gemini: str = field(default_factory=lambda: "AIza" + _random(35))
    gateway: str = field(default_factory=lambda: "gw-" + _random(32))
    admin: str = field(default_factory=lambda: "adm-" + _random(32))
    proxy_password: str = field(default_factory=lambda: _random(20))
    query: str = field(default_factory=lambda: _random(24))

    def env(self) -> dict[str, str]:
        return {
            "CORP_KEY": self.corp,
            "OPENAI_KEY": self.openai,
            "ANTHROPIC_KEY": self.anthropic,
            "GEMINI_KEY": self.gemini,
            "GATEWAY_KEY": self.gateway,
            "ADMIN_KEY": self.admin,
        }

    def all(self) -> list[str]:
        basic = base64.b64encode(f"squid:{self.proxy_password}".encode()).decode()
        return [*self.env().values(), self.proxy_password, self.query, basic]


def assert_no_secret(text: str, keys: Keys, where: str) -> None:
    """Neither a key nor any run of 10 of its characters (what the gateway
    may show of a key is what an upstream's own masking leaves: a public
    prefix such as ``sk-proj-`` and the last 4)."""
    for secret in keys.all():
        for start in range(len(secret) - 9):
            run = secret[start : start + 10]
            if "-" in run:  # the public prefixes: corp-, sk-proj-, sk-ant-api03- ...
                continue
            assert run not in text, f"{where}: a run of a secret leaked: {run!r} in {text[:500]!r}"


# -- the fake upstreams ----------------------------------------------------------


def _sse(*events: bytes) -> Callable[[web.Request], Any]:
    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(event)
        await response.write_eof()
        return response

    return answer


def _chunk(text: str) -> bytes:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _openai_scenario(scenario: str, key: str, stream: bool) -> web.StreamResponse | Any:
    def error(status: int, message: str, **headers: str) -> web.Response:
        body = {"error": {"message": message, "type": "x", "code": "y"}}
        return web.json_response(body, status=status, headers=headers)

    if scenario == "unauthorized":
        return error(401, f"Incorrect API key provided: {key}. You can find your API key at ...")
    if scenario == "masked":  # shows more than a prefix: the first 16 characters
        return error(401, f"Incorrect API key provided: {key[:16]}{'*' * 30}{key[-4:]}.")
    if scenario == "rate":
        return error(429, f"Rate limit reached for key {key}", **{"retry-after": "1"})
    if scenario == "badreq":
        return error(400, f"Invalid 'temperature' in a request authorized by {key}")
    if scenario == "plain500":
        return web.Response(text=f"internal error, key in use: {key}\nagain: {key}", status=500)
    if scenario == "garbage":
        raw = (
            b"\x1b[31m\x00"
            + key[:10].encode()
            + b"\x00"
            + "\u200b".encode()
            + key[10:].encode()
            + b'\r\n{"level": "info", "msg": "forged"}\x07'
            + bytes(range(256))
        )
        return web.Response(body=raw, status=502)
    if scenario == "huge":
        return web.Response(text=f"{key} {'A' * 2 * 1024 * 1024} {key}", status=500)
    if scenario == "stream" and stream:
        failure = orjson.dumps({"error": {"message": f"engine died holding {key}"}})
        return _sse(_chunk("partial"), b"data: " + failure + b"\n\n")
    if scenario == "slow":
        return asyncio.sleep(3)
    raise AssertionError(f"unknown scenario {scenario}")


async def _openai(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    key = request.headers["authorization"].removeprefix("Bearer ")
    result = _openai_scenario(request.match_info["scenario"], key, bool(body.get("stream")))
    if asyncio.iscoroutine(result):
        await result
        return web.json_response({})
    if callable(result):
        response: web.StreamResponse = await result(request)
        return response
    assert isinstance(result, web.StreamResponse)
    return result


async def _anthropic(request: web.Request) -> web.StreamResponse:
    body = await request.json()
    key = request.headers["x-api-key"]
    if not body.get("stream"):
        error = {"type": "authentication_error", "message": f"invalid x-api-key: {key}"}
        return web.json_response({"type": "error", "error": error}, status=401)
    start = {
        "type": "message_start",
        "message": {"id": "msg_1", "model": "claude", "usage": {"input_tokens": 1}},
    }
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "hi"},
    }
    failure = {
        "type": "error",
        "error": {"type": "overloaded_error", "message": f"Overloaded while serving {key}"},
    }
    return await _sse(
        *(
            b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
            for kind, data in (("message_start", start), ("content_block_delta", delta))
        ),
        b"event: error\ndata: " + orjson.dumps(failure) + b"\n\n",
    )(request)


async def _gemini(request: web.Request) -> web.StreamResponse:
    key = request.headers["x-goog-api-key"]
    if "streamGenerateContent" not in request.path:
        message = f"API key not valid. Please pass a valid API key. ({key})"
        error = {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}
        return web.json_response({"error": error}, status=400)
    first = {
        "candidates": [{"content": {"parts": [{"text": "Hel"}], "role": "model"}, "index": 0}],
        "responseId": "r1",
    }
    failure = {"error": {"code": 500, "message": f"internal error for {key}", "status": "INTERNAL"}}
    return await _sse(
        b"data: " + orjson.dumps(first) + b"\r\n\r\n",
        b"data: " + orjson.dumps(failure) + b"\r\n\r\n",
    )(request)


async def _echo_url(request: web.Request) -> web.Response:
    return web.Response(text=f"no route for {request.url}", status=404)


async def _proxy(request: web.Request) -> web.Response:
    """A forward proxy that fails and quotes the credentials it was given."""
    sent = request.headers.get("proxy-authorization", "")
    decoded = base64.b64decode(sent.removeprefix("Basic ")).decode()
    return web.Response(text=f"upstream unreachable; you sent {sent} ({decoded})", status=502)


def _upstream_app() -> web.Application:
    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post("/openai/{scenario}/v1/chat/completions", _openai)
    app.router.add_post("/anthropic/v1/messages", _anthropic)
    app.router.add_post("/gemini/v1beta/models/{action}", _gemini)
    app.router.add_post("/query/{tail:.*}", _echo_url)
    return app


def _proxy_app() -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _proxy)
    return app


# -- the gateway -----------------------------------------------------------------

_SCENARIOS = ["unauthorized", "masked", "rate", "badreq", "garbage", "huge", "stream", "slow"]


def _group(name: str, deployments: list[dict[str, Any]]) -> dict[str, Any]:
    # One attempt: the first failure reaches the client as it is (with a
    # second deployment left, the router gives up early and raises it).
    routing = {"max_attempts": 1, "breaker": {"consecutive_failures": 100, "min_requests": 100}}
    return {"name": name, "deployments": deployments, "routing": routing}


# Wide bounds, so a busy machine's slow fake is never read as a timeout; the
# "slow" scenario's own short ones make its 504 (its upstream sleeps 3 s).
_TIMEOUTS = {"read_s": 10.0, "total_s": 20.0}
_SHORT_TIMEOUTS = {"read_s": 0.3, "total_s": 1.0}


def _openai_deployment(
    id: str, base_url: str, key_env: str, timeouts: dict[str, float] = _TIMEOUTS, **extra: Any
) -> dict[str, Any]:
    return {
        "id": id,
        "provider": "openai",
        "model": "m",
        "base_url": base_url,
        "api_key": f"os.environ/{key_env}",
        "timeouts": timeouts,
        **extra,
    }


def _config(upstream: str, proxy_port: int, closed_port: int, keys: Keys) -> dict[str, Any]:
    models = []
    for scenario in _SCENARIOS:
        key_env = "OPENAI_KEY" if scenario == "masked" else "CORP_KEY"
        url = f"{upstream}/openai/{scenario}/v1"
        timeouts = _SHORT_TIMEOUTS if scenario == "slow" else _TIMEOUTS
        twins = [_openai_deployment(f"{scenario}-{n}", url, key_env, timeouts) for n in (1, 2)]
        models.append(_group(scenario, twins))
    single = _openai_deployment("plain500-1", f"{upstream}/openai/plain500/v1", "CORP_KEY")
    models.append(_group("plain500", [single]))
    query = f"{upstream}/query/v1?key={keys.query}"
    models.append(
        _group("query", [_openai_deployment(f"query-{n}", query, "CORP_KEY") for n in (1, 2)])
    )
    proxied = [
        _openai_deployment(
            f"proxied-{n}",
            "http://models.internal:8000/v1",
            "CORP_KEY",
            proxy=f"http://squid:{keys.proxy_password}@127.0.0.1:{port}",
        )
        for n, port in ((1, proxy_port), (2, proxy_port))
    ]
    models.append(_group("proxied", proxied))
    proxy_down = [
        _openai_deployment(
            f"proxy-down-{n}",
            "http://models.internal:8000/v1",
            "CORP_KEY",
            proxy=f"http://squid:{keys.proxy_password}@127.0.0.1:{closed_port}",
        )
        for n in (1, 2)
    ]
    models.append(_group("proxy-down", proxy_down))
    models.append(
        _group(
            "claude",
            [
                {
                    "id": f"anthropic-{n}",
                    "provider": "anthropic",
                    "model": "claude",
                    "base_url": f"{upstream}/anthropic",
                    "api_key": "os.environ/ANTHROPIC_KEY",
                }
                for n in (1, 2)
            ],
        )
    )
    models.append(
        _group(
            "gemini",
            [
                {
                    "id": f"gemini-{n}",
                    "provider": "gemini",
                    "model": "gem",
                    "base_url": f"{upstream}/gemini",
                    "api_key": "os.environ/GEMINI_KEY",
                }
                for n in (1, 2)
            ],
        )
    )
    return {
        "models": models,
        "keys": [{"name": "test", "key": "os.environ/GATEWAY_KEY"}],
        "server": {"admin_key": "os.environ/ADMIN_KEY"},
    }


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Scene:
    gateway: GatewayProcess
    keys: Keys
    seen: list[str] = field(default_factory=list)  # every byte clients got, as text

    def post(self, body: dict[str, Any], **headers: str) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.keys.gateway}", **headers}
        response = httpx.post(
            self.gateway.base_url + "/v1/chat/completions", json=body, headers=headers, timeout=30
        )
        self.seen.append(str(response.headers) + response.text)
        return response

    def chat(self, model: str) -> tuple[int, dict[str, Any], httpx.Headers]:
        response = self.post({"model": model, "messages": [{"role": "user", "content": "hi"}]})
        return response.status_code, response.json()["error"], response.headers

    def stream(self, model: str) -> tuple[int, list[dict[str, Any]]]:
        body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        response = self.post(body)
        events = [
            json.loads(line[6:])
            for line in response.text.splitlines()
            if line.startswith("data: {")
        ]
        return response.status_code, events

    def logs(self) -> list[str]:
        """Every stderr line, after the gateway stopped (the access log flushed)."""
        self.gateway.terminate()
        lines: list[str] = []
        quiet_since = time.monotonic()
        while time.monotonic() - quiet_since < 0.5:
            more = self.gateway.drain_stderr()
            if more:
                lines += more
                quiet_since = time.monotonic()
            time.sleep(0.02)
        return lines


@pytest.fixture
def scene(
    start_gateway: Callable[..., GatewayProcess],
    fake_upstream: Callable[[web.Application], FakeUpstream],
) -> Iterator[Scene]:
    keys = Keys()
    upstream = fake_upstream(_upstream_app())
    proxy = fake_upstream(_proxy_app())
    config = _config(upstream.url, proxy.port, _closed_port(), keys)
    yield Scene(start_gateway(config, env=keys.env()), keys)


def test_no_secret_reaches_clients_or_logs(scene: Scene) -> None:
    head = "upstream rejected the gateway's credentials (401)"

    status, error, _ = scene.chat("unauthorized")
    assert (status, error["type"], error["code"]) == (502, "upstream_error", "upstream_401")
    assert error["message"].startswith(f"{head}: Incorrect API key provided: {REDACTED}.")

    status, error, _ = scene.chat("masked")
    assert status == 502
    assert error["message"] == (
        f"{head}: Incorrect API key provided: {REDACTED}{'*' * 30}{scene.keys.openai[-4:]}."
    )

    status, error, headers = scene.chat("rate")
    assert (status, error["type"], headers["retry-after"]) == (429, "rate_limit_error", "1")
    rate = "upstream rate limit reached (429)"
    assert error["message"] == f"{rate}: Rate limit reached for key {REDACTED}"

    status, error, _ = scene.chat("badreq")
    assert (status, error["type"]) == (400, "invalid_request_error")
    assert error["message"].startswith("upstream rejected the request (400): Invalid 'temperature'")

    status, error, _ = scene.chat("garbage")
    assert (status, error["code"]) == (502, "upstream_502")
    assert error["message"].startswith(f"upstream failed (502): [31m{REDACTED} ")
    assert error["message"].isprintable()

    status, error, _ = scene.chat("huge")
    assert status == 502 and error["message"].startswith(f"upstream failed (500): {REDACTED} AAA")
    assert len(error["message"]) < 400

    status, error, _ = scene.chat("slow")
    assert (status, error["code"]) == (504, "upstream_timeout")

    status, error, _ = scene.chat("plain500")  # the router's "every deployment failed" wrapper
    assert (status, error["code"]) == (503, "all_deployments_failed")
    last = f"upstream failed (500): internal error, key in use: {REDACTED} again: {REDACTED}"
    assert error["message"].endswith(f"last error: {last}")

    status, error, _ = scene.chat("query")  # the key in the deployment's URL, echoed
    assert (status, error["type"]) == (404, "invalid_request_error")
    assert f"key={REDACTED}" in error["message"]

    status, error, _ = scene.chat("proxied")  # the proxy quotes its credentials
    assert status == 502
    assert error["message"] == (
        f"upstream failed (502): upstream unreachable; you sent Basic {REDACTED} (squid:{REDACTED})"
    )

    status, error, _ = scene.chat("proxy-down")
    assert (status, error["code"]) == (502, "upstream_connection_error")
    assert "cannot connect to proxy http://127.0.0.1:" in error["message"]

    status, error, _ = scene.chat("claude")
    assert (status, error["code"]) == (502, "upstream_401")
    assert error["message"] == f"{head}: invalid x-api-key: {REDACTED}"

    status, error, _ = scene.chat("gemini")
    assert (status, error["type"]) == (400, "invalid_request_error")
    assert error["message"].endswith(f"Please pass a valid API key. ({REDACTED})")

    mid_stream = "upstream reported an error mid-stream"
    for model, expected in (
        ("stream", f"{mid_stream}: engine died holding {REDACTED}"),
        ("claude", f"{mid_stream}: overloaded_error: Overloaded while serving {REDACTED}"),
        ("gemini", f"{mid_stream}: internal error for {REDACTED}"),
    ):
        status, events = scene.stream(model)
        assert status == 200 and events[0]["object"] == "chat.completion.chunk"
        assert events[-1]["error"]["message"] == expected
        # Anthropic's overload is a 503 server_error (retryable), the others 502.
        overload = model == "claude"
        assert events[-1]["error"]["type"] == ("server_error" if overload else "upstream_error")

    # A client that puts a key in the wrong field: not echoed, not logged.
    hello = [{"role": "user", "content": "hi"}]
    response = scene.post({"model": scene.keys.gateway, "messages": hello})
    assert response.status_code == 404
    assert response.json()["error"]["message"] == (
        f"The model `{REDACTED}` does not exist or you do not have access to it."
    )
    request_id = scene.keys.corp  # a configured secret, valid as a request id
    scene.post({"model": "badreq", "messages": hello}, **{"x-request-id": request_id})
    scene.seen.pop()  # its x-request-id header is the client's own value, sent back

    for text in scene.seen:
        assert_no_secret(text, scene.keys, "a client response")
    lines = scene.logs()
    for line in lines:
        assert_no_secret(line, scene.keys, "a log line")
    records = [json.loads(line) for line in lines if line.startswith("{")]
    warnings = [r for r in records if r.get("msg") == "upstream failure"]
    assert len(warnings) >= 10 and all(isinstance(r["error"], str) for r in warnings)
    assert sum(REDACTED in r["error"] for r in warnings) >= 8
    streamed = [r for r in records if r.get("msg") == "stream failed after the response started"]
    assert len(streamed) == 3 and all(REDACTED in r["error"] for r in streamed)
    access = [r for r in records if r.get("logger") == "interlock.access"]
    # A model the gateway does not serve is not the request's model (it would
    # be a metrics label): the 404's line names none; the response said it.
    assert {"model": None, "status": 404} in [
        {"model": r.get("model"), "status": r.get("status")} for r in access
    ]
    assert REDACTED in [r.get("request_id") for r in access]
