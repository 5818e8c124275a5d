"""What an upstream's failure may tell: our template, its own words made safe."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
from aiohttp import web

from interlock.config import DeploymentConfig, Secret, TimeoutConfig
from interlock.errors import (
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from interlock.providers.base import CallContext
from interlock.providers.http import UpstreamClient
from interlock.providers.openai_compat import OpenAICompatibleProvider
from interlock.providers.upstream_errors import EXCERPT_CHARS, clean_text, status_error
from interlock.redaction import REDACTED, Redactor
from tests.support.servers import FakeUpstream

KEY = "corp-Q7vXk2LmP9sTz4WnB8yHc3RjF6dGa1Ne"
CTX = CallContext(request_id="req_1", public_model="public")
BODY = {"model": "public", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("status", "expected", "error_type", "head"),
    [
        (400, 400, "invalid_request_error", "upstream rejected the request (400)"),
        (401, 502, "upstream_error", "upstream rejected the gateway's credentials (401)"),
        (403, 502, "upstream_error", "upstream rejected the gateway's credentials (403)"),
        (429, 429, "rate_limit_error", "upstream rate limit reached (429)"),
        (500, 502, "upstream_error", "upstream failed (500)"),
        (503, 503, "server_error", "upstream overloaded (503)"),
        (529, 503, "server_error", "upstream overloaded (529)"),
    ],
)
def test_status_keeps_status_and_type_and_rewrites_the_message(
    status: int, expected: int, error_type: str, head: str
) -> None:
    body = orjson.dumps({"error": {"message": f"Incorrect API key provided: {KEY}."}})
    error = status_error(status, body, Redactor([KEY]), deployment="d")
    assert (error.status_code, error.error_type, error.upstream_status) == (
        expected,
        error_type,
        status,
    )
    assert error.message == f"{head}: Incorrect API key provided: {REDACTED}."


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (400, b'{"error": {"code": "content_filter", "message": "filtered"}}', "content_filter"),
        (400, b'{"error": {"code": "context_length_exceeded"}}', "context_length_exceeded"),
        (400, b'{"error": {"code": "some_other_code"}}', "upstream_400"),
        (400, b'{"error": {"code": 400}}', "upstream_400"),
        (500, b'{"error": {"code": "content_filter"}}', "upstream_500"),  # not the client's
        (400, b"not json", "upstream_400"),
    ],
)
def test_codes_clients_act_on_are_kept(status: int, body: bytes, code: str) -> None:
    assert status_error(status, body, Redactor(), deployment="d").code == code


@pytest.mark.parametrize(
    ("body", "excerpt"),
    [
        (b'{"error": {"message": "bad temperature"}}', "bad temperature"),  # OpenAI, Anthropic
        (b'[{"error": {"code": 400, "message": "bad"}}]', "bad"),  # Gemini's list
        (b'{"error": "just a string"}', "just a string"),
        (b'{"message": "top level"}', "top level"),
        (b"plain text\r\n", "plain text"),
        (b'{"detail": [1, 2]}', ""),  # JSON without a message: nothing quoted
        (b"", ""),
    ],
)
def test_the_upstreams_words_from_any_shape(body: bytes, excerpt: str) -> None:
    error = status_error(500, body, Redactor(), deployment="d")
    assert error.message == ("upstream failed (500)" + (f": {excerpt}" if excerpt else ""))


def test_control_characters_go_before_the_scrub() -> None:
    # A NUL and a zero-width space inside the key, escape codes, a forged log line.
    raw = f'\x1b[31m{KEY[:10]}\x00{KEY[10:20]}\u200b{KEY[20:]}\r\n{{"level": "info"}}\x07'
    cleaned = clean_text(raw, Redactor([KEY]))
    assert cleaned == f'[31m{REDACTED} {{"level": "info"}}'
    assert cleaned.isprintable()


def test_garbage_bytes_become_printable_text() -> None:
    body = bytes(range(256)) * 4 + KEY.encode() + b"\xff\xfe"
    error = status_error(502, body, Redactor([KEY]), deployment="d")
    assert error.message.isprintable()
    assert KEY[:8] not in error.message and KEY[-8:] not in error.message
    assert len(error.message) <= EXCERPT_CHARS + 40


@pytest.mark.parametrize("shape", ["text", "json"])
def test_a_huge_body_is_cut(shape: str) -> None:
    filler = "A" * 2 * 1024 * 1024
    text = f"{KEY} {filler} {KEY}"
    body = text.encode() if shape == "text" else orjson.dumps({"error": {"message": text}})
    error = status_error(500, body, Redactor([KEY]), deployment="d")
    assert error.message.startswith(f"upstream failed (500): {REDACTED} AAAA")
    assert error.message.endswith("A…")
    assert len(error.message) <= EXCERPT_CHARS + 40


def test_a_secret_cut_at_the_limit_shows_at_most_7_characters() -> None:
    text = "x" * (EXCERPT_CHARS - 12) + KEY
    cleaned = clean_text(text, Redactor([KEY]))
    assert KEY[:8] not in cleaned
    assert cleaned.endswith(f"{REDACTED}…")


def test_mid_stream_errors_say_so() -> None:
    error = status_error(
        502, b'{"error": {"message": "engine died"}}', Redactor(), deployment="d", mid_stream=True
    )
    assert error.message == "upstream reported an error mid-stream: engine died"
    assert isinstance(error, UpstreamStatusError) and error.status_code == 502


# -- the client's own exception texts ------------------------------------------


@pytest.fixture
async def client() -> AsyncIterator[UpstreamClient]:
    upstream = UpstreamClient(
        "d", TimeoutConfig(connect_s=2, read_s=0.3, total_s=1), 2, redactor=Redactor([KEY])
    )
    await upstream.start()
    yield upstream
    await upstream.aclose()


async def test_an_exception_quoting_the_url_is_scrubbed(client: UpstreamClient) -> None:
    with pytest.raises(UpstreamProtocolError) as caught:
        await client.request_json("POST", f"ftp://models.test/v1?key={KEY}", {})
    assert "not an absolute http(s) URL" in caught.value.message
    assert f"key={REDACTED}" in caught.value.message


async def test_connection_refused_names_the_place_not_the_key(client: UpstreamClient) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UpstreamConnectionError) as caught:
        await client.request_json("POST", f"http://127.0.0.1:{port}/v1?key={KEY}", {})
    assert f"127.0.0.1:{port}" in caught.value.message
    assert KEY[:8] not in caught.value.message and caught.value.message.isprintable()


async def test_a_timeout_is_504_with_a_clean_message(
    client: UpstreamClient, fake_upstream: Callable[[web.Application], FakeUpstream]
) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(2)  # past the client's read_s of 0.3 s
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/v1", hang)
    upstream = fake_upstream(app)
    with pytest.raises(UpstreamTimeout) as caught:
        await client.request_json("POST", f"{upstream.url}/v1?key={KEY}", {})
    assert caught.value.status_code == 504
    assert caught.value.message == "upstream timed out: no data from upstream for 0.3 s"


# -- an adapter, end to end against a server that echoes the key ----------------


async def test_the_adapter_never_raises_with_the_key_it_sent(
    fake_upstream: Callable[[web.Application], FakeUpstream],
) -> None:
    async def echo(request: web.Request) -> web.Response:
        sent = request.headers["authorization"].removeprefix("Bearer ")
        message = f"Incorrect API key provided: {sent}."
        return web.json_response({"error": {"message": message}}, status=401)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", echo)
    upstream = fake_upstream(app)
    deployment = DeploymentConfig(
        id="up-1",
        provider="openai",
        model="m",
        base_url=upstream.url + "/v1",
        api_key=Secret(KEY),
    )
    adapter = OpenAICompatibleProvider(deployment)  # no redactor given: the deployment's own
    await adapter.start()
    try:
        with pytest.raises(UpstreamStatusError) as caught:
            await adapter.chat(BODY, CTX)
    finally:
        await adapter.aclose()
    assert caught.value.message == (
        f"upstream rejected the gateway's credentials (401): "
        f"Incorrect API key provided: {REDACTED}."
    )
