"""Guardrails in the request path: redaction before the upstream, blocks,
streamed output redaction across chunks, and logs free of the raw values."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from interlock.app import create_app
from interlock.config import ConfigError, parse_config
from interlock.errors import InterlockError
from interlock.guardrails import GuardrailsBook, GuardrailsConfig, key_override_text
from interlock.pipeline import GuardrailsStage
from interlock.telemetry.metrics import Metrics
from tests.conftest import TEST_KEY
from tests.support.servers import FakeUpstream, InProcessGateway
from tests.support.waiting import wait_for

AUTH = {"authorization": f"Bearer {TEST_KEY}"}
EMAIL = "jane.roe@example.com"
CARD = "4111 1111 1111 1111"


class RecordingUpstream:
    """Records the bodies it receives; streams an answer with an e-mail split
    across two chunks."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self.lock:
            self.bodies.append(body)
        pieces = ["Write to ", "bob.smith@exa", "mple.org today."]
        if body.get("tools") and body.get("stream"):
            return await self.stream_tool_call(request)
        if body.get("tools"):  # a tool call with an address in its arguments
            arguments = orjson.dumps({"to": "bob.smith@example.org", "n": 2}).decode()
            call = {
                "id": "c2",
                "type": "function",
                "function": {"name": "send", "arguments": arguments},
            }
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            choice = {"index": 0, "finish_reason": "tool_calls", "message": message}
            usage = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
            return web.json_response(
                {
                    "id": "c",
                    "object": "chat.completion",
                    "created": 1,
                    "model": "m",
                    "choices": [choice],
                    "usage": usage,
                }
            )
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "c",
                    "object": "chat.completion",
                    "created": 1,
                    "model": "m",
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "".join(pieces)},
                        }
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for i, piece in enumerate(pieces):
            chunk = {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": piece},
                        "finish_reason": "stop" if i == len(pieces) - 1 else None,
                    }
                ],
            }
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response

    async def stream_tool_call(self, request: web.Request) -> web.StreamResponse:
        """A streamed tool call whose arguments split an address in two."""
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        opened = {"index": 0, "id": "c2", "type": "function"}
        deltas: list[tuple[dict[str, Any], str | None]] = [
            (
                {
                    "role": "assistant",
                    "tool_calls": [{**opened, "function": {"name": "send", "arguments": ""}}],
                },
                None,
            ),
            ({"tool_calls": [{"index": 0, "function": {"arguments": '{"to": "bob.smi'}}]}, None),
            (
                {"tool_calls": [{"index": 0, "function": {"arguments": 'th@example.org", "n'}}]},
                None,
            ),
            ({"tool_calls": [{"index": 0, "function": {"arguments": '": 2}'}}]}, None),
            ({}, "tool_calls"),
        ]
        for delta, finish in deltas:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            chunk = {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [choice],
            }
            await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response


def _model(name: str, url: str) -> dict[str, Any]:
    """A model group of one deployment on the recording upstream."""
    deployment = {"id": f"{name}-up", "provider": "openai", "model": "m", "base_url": url}
    return {"name": name, "deployments": [deployment]}


@pytest.fixture
def stack(
    fake_upstream: Callable[[web.Application], FakeUpstream],
) -> Iterator[tuple[str, RecordingUpstream, io.BytesIO]]:
    upstream = RecordingUpstream()
    url = fake_upstream(upstream.app).url + "/v1"
    raw = {
        "models": [
            _model("chat", url),
            {**_model("strict", url), "guardrails": {"pii": {"action": "block"}}},
        ],
        "keys": [{"name": "k", "key": TEST_KEY}],
        "guardrails": {"pii": {"action": "redact"}},
        "telemetry": {"stage_sample_rate": 1.0},
    }
    log = io.BytesIO()
    gateway = InProcessGateway(create_app(parse_config(raw, env={}), log_stream=log))
    yield gateway.base_url, upstream, log
    gateway.close()


def _chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def test_pii_is_redacted_before_the_upstream(
    stack: tuple[str, RecordingUpstream, io.BytesIO],
) -> None:
    url, upstream, _ = stack
    response = httpx.post(
        url + "/v1/chat/completions", json=_chat("chat", f"I am {EMAIL}, card {CARD}"), headers=AUTH
    )
    assert response.status_code == 200
    sent = upstream.bodies[-1]["messages"][0]["content"]
    assert EMAIL not in sent and "[EMAIL]" in sent and "[CARD]" in sent
    assert "pii:email:redact" in response.headers["x-interlock-guardrails"]
    # The answer's own e-mail is redacted on the way back too.
    assert "bob.smith@example.org" not in response.json()["choices"][0]["message"]["content"]


def test_block_policy_is_a_400_that_names_the_type_not_the_value(
    stack: tuple[str, RecordingUpstream, io.BytesIO],
) -> None:
    url, upstream, _ = stack
    before = len(upstream.bodies)
    response = httpx.post(
        url + "/v1/chat/completions", json=_chat("strict", f"mail {EMAIL}"), headers=AUTH
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "pii_detected" and "email" in error["message"].lower()
    assert EMAIL not in response.text
    assert error["param"].startswith("messages[0]")
    assert len(upstream.bodies) == before  # nothing went upstream


def test_streamed_answer_is_redacted_across_chunks(
    stack: tuple[str, RecordingUpstream, io.BytesIO],
) -> None:
    url, _, _ = stack
    with (
        httpx.Client(headers=AUTH, timeout=10) as client,
        client.stream(
            "POST", url + "/v1/chat/completions", json=_chat("chat", "hello", stream=True)
        ) as response,
    ):
        events = [line[6:] for line in response.iter_lines() if line.startswith("data: {")]
    text = "".join(
        orjson.loads(e)["choices"][0]["delta"].get("content") or ""
        for e in events
        if orjson.loads(e)["choices"]
    )
    assert "bob.smith" not in text and "[EMAIL]" in text
    assert text.startswith("Write to ") and text.endswith(" today.")


def test_no_raw_pii_in_any_log_line(stack: tuple[str, RecordingUpstream, io.BytesIO]) -> None:
    url, _, log = stack
    for model in ("chat", "strict"):
        httpx.post(url + "/v1/chat/completions", json=_chat(model, f"{EMAIL} {CARD}"), headers=AUTH)
    # The access log is flushed within 0.2 s of its first unflushed line.
    raw = wait_for(lambda: log.getvalue().count(b"\n") >= 2 and log.getvalue(), timeout_s=30)
    for value in (EMAIL, CARD, CARD.replace(" ", "")):
        assert value.encode() not in raw


def test_decisions_are_in_metrics_and_the_log_line(
    stack: tuple[str, RecordingUpstream, io.BytesIO],
) -> None:
    url, _, log = stack
    response = httpx.post(url + "/v1/chat/completions", json=_chat("chat", EMAIL), headers=AUTH)
    request_id = response.headers["x-request-id"]
    metrics = httpx.get(url + "/metrics").text
    assert 'interlock_guardrail_actions_total{action="redact",rule="pii:email"} 1.0' in metrics

    def logged() -> dict[str, Any] | None:
        lines = [orjson.loads(line) for line in log.getvalue().splitlines()]
        return next((entry for entry in lines if entry.get("request_id") == request_id), None)

    line = wait_for(logged, timeout_s=30, what="the request's access line")
    assert line["guardrails"] == ["pii:email:redact"]
    assert "guardrails" in line["stages_ms"]


def test_a_keys_own_policy_overrides_its_model_groups(
    fake_upstream: Callable[[web.Application], FakeUpstream],
) -> None:
    """Top level redacts; the key `careful` blocks, the key `trusted` lets
    e-mail through; everyone else gets the model group's redaction."""
    upstream = RecordingUpstream()
    url = fake_upstream(upstream.app).url + "/v1"
    raw = {
        "models": [_model("chat", url)],
        "keys": [
            {"name": "k", "key": TEST_KEY},
            {"name": "careful", "key": "sk-careful", "guardrails": {"pii": {"action": "block"}}},
            {"name": "trusted", "key": "sk-trusted", "guardrails": {"pii": {"action": "off"}}},
        ],
        "guardrails": {"pii": {"action": "redact"}},
    }
    gateway = InProcessGateway(create_app(parse_config(raw, env={})))
    try:

        def post(key: str) -> httpx.Response:
            return httpx.post(
                gateway.base_url + "/v1/chat/completions",
                json=_chat("chat", f"mail {EMAIL}"),
                headers={"authorization": f"Bearer {key}"},
            )

        assert post(TEST_KEY).status_code == 200
        assert "[EMAIL]" in upstream.bodies[-1]["messages"][0]["content"]
        blocked = post("sk-careful")
        assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "pii_detected"
        passed = post("sk-trusted")
        assert passed.status_code == 200 and "x-interlock-guardrails" not in passed.headers
        assert EMAIL in upstream.bodies[-1]["messages"][0]["content"]
        assert "bob.smith@example.org" in passed.json()["choices"][0]["message"]["content"]
    finally:
        gateway.close()


def test_a_keys_bad_guardrails_override_fails_at_start_naming_the_key() -> None:
    raw = {
        "models": [{"name": "chat", "deployments": [{"id": "s", "provider": "simulator"}]}],
        "keys": [{"name": "k", "key": TEST_KEY, "guardrails": {"pii": {"action": "shred"}}}],
    }
    with pytest.raises(ConfigError, match=r"keys\[k\]\.guardrails"):
        create_app(parse_config(raw, env={}))


def test_a_key_created_through_the_admin_api_brings_its_own_guardrails(
    fake_upstream: Callable[[web.Application], FakeUpstream], tmp_path: Path
) -> None:
    """No guardrails in the config: only the admin-created key blocks e-mail,
    and a bad override is refused when the key is created."""
    upstream = RecordingUpstream()
    url = fake_upstream(upstream.app).url + "/v1"
    raw = {
        "models": [_model("chat", url)],
        "keys": [{"name": "k", "key": TEST_KEY}],
        "server": {"admin_key": "sk-admin-test"},
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"},
    }
    gateway = InProcessGateway(create_app(parse_config(raw, env={})))
    admin = {"authorization": "Bearer sk-admin-test"}
    try:
        new_key = {
            "name": "careful",
            "guardrails": {"pii": {"action": "block", "types": ["EMAIL"]}},
        }
        created = httpx.post(gateway.base_url + "/admin/keys", json=new_key, headers=admin)
        assert created.status_code == 201, created.text
        assert created.json()["guardrails"] == new_key["guardrails"]

        def post(key: str) -> httpx.Response:
            return httpx.post(
                gateway.base_url + "/v1/chat/completions",
                json=_chat("chat", f"mail {EMAIL}"),
                headers={"authorization": f"Bearer {key}"},
            )

        blocked = post(created.json()["key"])
        assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "pii_detected"
        assert post(TEST_KEY).status_code == 200
        assert EMAIL in upstream.bodies[-1]["messages"][0]["content"]
        assert len(upstream.bodies) == 1  # the blocked request never left

        listed = httpx.get(gateway.base_url + "/admin/keys", headers=admin).json()["data"]
        assert [k["guardrails"] for k in listed] == [new_key["guardrails"]]

        bad = {"name": "typo", "guardrails": {"pii": {"action": "shred"}}}
        refused = httpx.post(gateway.base_url + "/admin/keys", json=bad, headers=admin)
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert error["param"] == "guardrails" and "guardrails.pii.action" in error["message"]
        assert len(httpx.get(gateway.base_url + "/admin/keys", headers=admin).json()["data"]) == 1
    finally:
        gateway.close()


def test_a_stored_override_that_no_longer_applies_fails_the_request_closed() -> None:
    """A key stored by another gateway version with an override this one
    refuses: the request fails (500), it is not sent without the key's checks."""
    stage = GuardrailsStage(GuardrailsBook(GuardrailsConfig()), Metrics())
    with pytest.raises(InterlockError) as caught:
        stage.policy_for("chat", key_override_text({"pii": {"action": "shred"}}))
    assert caught.value.status_code == 500 and caught.value.code == "key_guardrails_invalid"
    assert "guardrails.pii.action" in caught.value.message


def test_tool_call_arguments_are_redacted_both_ways(
    stack: tuple[str, RecordingUpstream, io.BytesIO],
) -> None:
    url, upstream, _ = stack
    earlier = {"name": "send", "arguments": orjson.dumps({"to": EMAIL}).decode()}
    messages = [
        {"role": "user", "content": "Mail them."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": earlier}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sent"},
    ]
    tool = {"type": "function", "function": {"name": "send", "parameters": {"type": "object"}}}
    body = {"model": "chat", "messages": messages, "tools": [tool]}
    response = httpx.post(url + "/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200
    sent = upstream.bodies[-1]["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert orjson.loads(sent) == {"to": "[EMAIL]"}
    answered = response.json()["choices"][0]["message"]["tool_calls"][0]["function"]
    assert orjson.loads(answered["arguments"]) == {"to": "[EMAIL]", "n": 2}


def test_streamed_tool_call_arguments_are_redacted_across_chunks(
    stack: tuple[str, RecordingUpstream, io.BytesIO],
) -> None:
    url, _, _ = stack
    tool = {"type": "function", "function": {"name": "send", "parameters": {"type": "object"}}}
    body = _chat("chat", "Mail bob.", tools=[tool], stream=True)
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers=AUTH) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    arguments = ""
    for line in lines:
        for choice in orjson.loads(line[6:])["choices"]:
            for piece in choice["delta"].get("tool_calls") or ():
                arguments += piece.get("function", {}).get("arguments") or ""
    assert "bob.smi" not in arguments
    assert orjson.loads(arguments) == {"to": "[EMAIL]", "n": 2}


# A custom (freeform) tool: this upstream takes functions, so it gets the
# tool as one and its call to ``send`` comes back as a custom call whose
# input is the arguments' one string, the address.
SEND_TEXT = {"type": "custom", "custom": {"name": "send"}}


def test_custom_tool_input_is_redacted_both_ways(
    stack: tuple[str, RecordingUpstream, io.BytesIO],
) -> None:
    url, upstream, _ = stack
    earlier = {"id": "c1", "type": "custom", "custom": {"name": "send", "input": f"to {EMAIL}"}}
    messages = [
        {"role": "user", "content": "Mail them."},
        {"role": "assistant", "content": None, "tool_calls": [earlier]},
        {"role": "tool", "tool_call_id": "c1", "content": "sent"},
    ]
    body = {"model": "chat", "messages": messages, "tools": [SEND_TEXT]}
    response = httpx.post(url + "/v1/chat/completions", json=body, headers=AUTH)
    assert response.status_code == 200
    sent = upstream.bodies[-1]["messages"][1]["tool_calls"][0]
    assert sent["type"] == "function" and orjson.loads(sent["function"]["arguments"]) == {
        "input": "to [EMAIL]"
    }
    [call] = response.json()["choices"][0]["message"]["tool_calls"]
    assert call == {"id": "c2", "type": "custom", "custom": {"name": "send", "input": "[EMAIL]"}}


def test_streamed_custom_tool_input_is_redacted(
    stack: tuple[str, RecordingUpstream, io.BytesIO],
) -> None:
    url, _, _ = stack
    body = _chat("chat", "Mail bob.", tools=[SEND_TEXT], stream=True)
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, headers=AUTH) as response:
        assert response.status_code == 200
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    pieces = [
        piece
        for line in lines
        for choice in orjson.loads(line[6:])["choices"]
        for piece in choice["delta"].get("tool_calls") or ()
    ]
    assert pieces[0] == {
        "index": 0,
        "id": "c2",
        "type": "custom",
        "custom": {"name": "send", "input": ""},
    }
    assert all("function" not in piece for piece in pieces)
    assert "".join(piece["custom"]["input"] for piece in pieces) == "[EMAIL]"
