"""Anthropic's server tools through ``/v1/messages`` (ADR 0027), with the
official ``anthropic`` SDK: Claude Code's WebSearch sends
``web_search_20250305``, which Anthropic runs itself. An Anthropic upstream
gets the tool as sent and the client gets the answer's blocks as Anthropic
wrote them (the search call, its result, the cited text), unary or
streamed, and a paused turn can be sent back; any other upstream cannot
run the tool, so the request is refused naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import TEST_KEY
from tests.dialects.test_anthropic_sdk import _sse
from tests.support.fake_anthropic import CITED_ANSWER, SEARCH_RESULT
from tests.support.provider_fleet import PROVIDER_MODELS, provider_gateway
from tests.support.servers import GatewayProcess

WEB_SEARCH: Any = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
ASK: Any = [{"role": "user", "content": "What is the capital of France?"}]
SEARCHED = ["text", "server_tool_use", "web_search_tool_result", "text"]
REDACTING_KEY = "sk-redacting-5b9c0e7d1a2f"
FORCING_KEY = "sk-forcing-8e1d4c7b2a90"


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    anthropic_requests: list[dict[str, Any]],
    azure_requests: list[dict[str, Any]],
) -> Iterator[GatewayProcess]:
    # Bedrock first by priority, Anthropic behind it: a server tool request
    # goes to the deployment that can run it.
    mixed = {
        "routing": {"strategy": "priority", "params": {"ties": "stable"}},
        "deployments": [
            {**PROVIDER_MODELS["bedrock"], "id": "mixed-bedrock", "priority": 0},
            {**PROVIDER_MODELS["claude"], "id": "mixed-anthropic", "priority": 1},
        ],
    }
    with provider_gateway(
        tmp_path_factory.mktemp("gw"),
        groups={"mixed": mixed},
        anthropic_requests=anthropic_requests,
        azure_requests=azure_requests,
        keys=[
            {
                "name": "redacting",
                "key": REDACTING_KEY,
                "guardrails": {"pii": {"action": "redact"}},
            },
            {"name": "forcing", "key": FORCING_KEY, "permissions": ["force_deployment"]},
        ],
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.base_url, api_key=TEST_KEY, max_retries=0) as c:
        yield c


def _blocks(message: Any) -> list[dict[str, Any]]:
    return [block.model_dump(exclude_none=True) for block in message.content]


def test_a_web_search_runs_at_anthropic_and_comes_back_in_its_blocks(
    client: anthropic.Anthropic, anthropic_requests: list[dict[str, Any]]
) -> None:
    answer = client.messages.create(
        model="claude", max_tokens=256, messages=ASK, tools=[WEB_SEARCH]
    )
    assert anthropic_requests[-1]["body"]["tools"] == [WEB_SEARCH]
    assert [block.type for block in answer.content] == SEARCHED
    call, result, cited = answer.content[1:]
    assert call.type == "server_tool_use" and call.name == "web_search"
    assert call.input == {"query": ASK[0]["content"]}
    assert result.type == "web_search_tool_result" and result.tool_use_id == call.id
    assert result.model_dump()["content"] == [SEARCH_RESULT]
    assert cited.type == "text" and cited.text == CITED_ANSWER["text"]
    assert [c.model_dump() for c in cited.citations or []] == CITED_ANSWER["citations"]
    assert answer.stop_reason == "end_turn"
    assert answer.usage.server_tool_use is not None
    assert answer.usage.server_tool_use.web_search_requests == 1


def test_a_streamed_web_search_ends_as_the_same_message(client: anthropic.Anthropic) -> None:
    unary = client.messages.create(model="claude", max_tokens=256, messages=ASK, tools=[WEB_SEARCH])
    with client.messages.stream(
        model="claude", max_tokens=256, messages=ASK, tools=[WEB_SEARCH]
    ) as stream:
        streamed = stream.get_final_message()
    assert _blocks(streamed) == _blocks(unary)
    assert streamed.stop_reason == "end_turn"
    assert streamed.usage.server_tool_use is not None
    assert streamed.usage.server_tool_use.web_search_requests == 1


def test_the_stream_writes_each_block_as_anthropic_streams_it(gateway: GatewayProcess) -> None:
    body = {"model": "claude", "max_tokens": 256, "stream": True, "messages": ASK}
    events = _sse(gateway, {**body, "tools": [WEB_SEARCH]})
    starts = [data for kind, data in events if kind == "content_block_start"]
    assert [data["index"] for data in starts] == [0, 1, 2, 3]
    assert [data["content_block"]["type"] for data in starts] == SEARCHED
    assert starts[1]["content_block"]["input"] == {}  # the call's input streams as a delta
    assert starts[2]["content_block"]["content"] == [SEARCH_RESULT]  # a result comes whole
    deltas = [data for kind, data in events if kind == "content_block_delta"]
    assert [d["delta"]["type"] for d in deltas if d["index"] == 1] == ["input_json_delta"]
    assert not [d for d in deltas if d["index"] == 2]
    cited = [d["delta"] for d in deltas if d["index"] == 3]
    assert cited[0] == {"type": "citations_delta", "citation": CITED_ANSWER["citations"][0]}
    assert "".join(d.get("text", "") for d in cited[1:]) == CITED_ANSWER["text"]
    stops = [data["index"] for kind, data in events if kind == "content_block_stop"]
    assert stops == [0, 1, 2, 3]


@pytest.mark.parametrize("stream", [False, True])
def test_a_paused_turn_is_named_and_continued_when_sent_back(
    client: anthropic.Anthropic, anthropic_requests: list[dict[str, Any]], stream: bool
) -> None:
    ask: Any = [{"role": "user", "content": "Search, then pause."}]
    if stream:
        with client.messages.stream(
            model="claude", max_tokens=256, messages=ask, tools=[WEB_SEARCH]
        ) as events:
            paused = events.get_final_message()
    else:
        paused = client.messages.create(
            model="claude", max_tokens=256, messages=ask, tools=[WEB_SEARCH]
        )
    assert paused.stop_reason == "pause_turn"
    assert [block.type for block in paused.content] == SEARCHED[:3]
    sent_back = _blocks(paused)
    going_on = client.messages.create(
        model="claude",
        max_tokens=256,
        messages=[*ask, {"role": "assistant", "content": sent_back}],
        tools=[WEB_SEARCH],
    )
    assert anthropic_requests[-1]["body"]["messages"][-1] == {
        "role": "assistant",
        "content": sent_back,
    }
    assert [block.type for block in going_on.content] == ["text"]
    assert going_on.content[0].text == CITED_ANSWER["text"]


@pytest.mark.parametrize("model", ["azure", "gemini", "bedrock", "sim"])
@pytest.mark.parametrize("stream", [False, True])
def test_another_upstream_refuses_the_server_tool_by_name(
    client: anthropic.Anthropic, model: str, stream: bool
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model=model, max_tokens=256, messages=ASK, tools=[WEB_SEARCH], stream=stream
        )
    body: Any = caught.value.body
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "`web_search_20250305`" in body["error"]["message"]
    assert f"model `{model}` has no Anthropic deployment" in body["error"]["message"]
    # This gateway has no web backend to run it with (tests/dialects/test_gateway_web_search.py).
    assert "`search.backends`" in body["error"]["message"]


def test_a_model_with_an_anthropic_deployment_among_others_routes_the_tool_to_it(
    client: anthropic.Anthropic, anthropic_requests: list[dict[str, Any]]
) -> None:
    plain = client.messages.with_raw_response.create(model="mixed", max_tokens=64, messages=ASK)
    assert plain.headers["x-interlock-deployment"] == "mixed-bedrock"  # the first by priority
    sent = len(anthropic_requests)
    searched = client.messages.with_raw_response.create(
        model="mixed", max_tokens=64, messages=ASK, tools=[WEB_SEARCH]
    )
    assert searched.headers["x-interlock-deployment"] == "mixed-anthropic"
    assert [b.type for b in searched.parse().content] == SEARCHED
    assert len(anthropic_requests) == sent + 1


def test_a_forced_deployment_that_cannot_run_the_tool_is_named(gateway: GatewayProcess) -> None:
    headers = {
        "x-api-key": FORCING_KEY,
        "anthropic-version": "2023-06-01",
        "x-interlock-force-deployment": "mixed-bedrock",
    }
    body = {"model": "mixed", "max_tokens": 64, "messages": ASK, "tools": [WEB_SEARCH]}
    answer = httpx.post(gateway.base_url + "/v1/messages", json=body, headers=headers, timeout=10)
    assert answer.status_code == 400
    assert "deployment `mixed-bedrock` is not one" in answer.json()["error"]["message"]


def test_a_searched_turn_in_the_history_goes_to_other_upstreams_as_its_text(
    client: anthropic.Anthropic, azure_requests: list[dict[str, Any]]
) -> None:
    searched = client.messages.create(
        model="claude", max_tokens=256, messages=ASK, tools=[WEB_SEARCH]
    )
    history: Any = [
        *ASK,
        {"role": "assistant", "content": _blocks(searched)},
        {"role": "user", "content": "Thanks!"},
    ]
    answer = client.messages.create(model="azure", max_tokens=256, messages=history)
    assert answer.content[0].type == "text"
    sent = azure_requests[-1]["body"]["messages"]
    assert sent[1] == {"role": "assistant", "content": "Let me search. " + CITED_ANSWER["text"]}


def test_an_unknown_tool_type_is_named_by_anthropic(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="claude",
            max_tokens=256,
            messages=ASK,
            tools=[{"type": "web_browse_20990101", "name": "browse"}],  # type: ignore[list-item]
        )
    body: Any = caught.value.body
    assert "web_browse_20990101" in body["error"]["message"]


def test_a_redacted_history_is_not_sent_in_its_written_blocks(
    gateway: GatewayProcess, client: anthropic.Anthropic, anthropic_requests: list[dict[str, Any]]
) -> None:
    searched = _blocks(
        client.messages.create(model="claude", max_tokens=256, messages=ASK, tools=[WEB_SEARCH])
    )
    searched[0]["text"] = "Mail jane.doe@example.com first. "
    history: Any = [
        *ASK,
        {"role": "assistant", "content": searched},
        {"role": "user", "content": "Ok"},
    ]
    with anthropic.Anthropic(
        base_url=gateway.base_url, api_key=REDACTING_KEY, max_retries=0
    ) as redacting:
        redacting.messages.create(
            model="claude", max_tokens=256, messages=history, tools=[WEB_SEARCH]
        )
    sent = anthropic_requests[-1]["body"]["messages"][1]["content"]
    assert "jane.doe@example.com" not in str(sent)
    assert [block["type"] for block in sent] == [
        "server_tool_use",
        "web_search_tool_result",
        "text",
    ]
