"""A model OpenAI serves on the Responses API alone (gpt-5-codex), behind a
deployment with ``api: responses``, through every edge: chat, Responses
and Anthropic Messages, with each one's official SDK, against a fake of
OpenAI's Responses API on loopback that refuses chat completions and any
parameter it does not know. The pipeline's stages apply as to any model:
guardrails, failover, the usage in each dialect."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import TEST_KEY
from tests.search.fakes import Doc, FakeSearchService
from tests.support.fake_responses import REFUSAL, RESPONSES_MODEL, responses_app
from tests.support.servers import FakeUpstream, GatewayProcess

REDACTING_KEY = "sk-responses-only-redacting"
EMAIL = "jane.doe@example.com"
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    },
}


@pytest.fixture(scope="module")
def upstream() -> list[dict[str, Any]]:
    return []  # what the fake was asked, in order


@pytest.fixture(scope="module")
def searxng() -> Iterator[FakeSearchService]:
    """The gateway's own web backend, for models whose upstream cannot search."""
    fake = FakeSearchService(kind="searxng", docs=[Doc("Pears", "https://pears.example/", "Ripe")])
    with FakeUpstream(fake.app()) as upstream:
        fake.url = upstream.url  # type: ignore[attr-defined]
        yield fake


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    upstream: list[dict[str, Any]],
    searxng: FakeSearchService,
) -> Iterator[GatewayProcess]:
    fake = FakeUpstream(responses_app(upstream))
    served = {
        "provider": "openai",
        "model": RESPONSES_MODEL,
        "base_url": fake.url + "/v1",
        "api_key": "sk-upstream",
        "api": "responses",
    }
    config = {
        "models": [
            {
                "name": "codex",
                # As at api.openai.com, where it is the default: OpenAI runs searches.
                "deployments": [{"id": "codex-1", **served, "web_search": "native"}],
            },
            {
                "name": "azure-codex",
                "deployments": [
                    {
                        "id": "azure-1",
                        "provider": "azure",
                        "base_url": fake.url,  # the resource
                        "model": "my-codex",  # the Azure deployment's name
                        "api_key": "azure-key",
                        "api": "responses",
                    }
                ],
            },
            {
                "name": "codex-as-chat",
                "deployments": [{"id": "chat-1", **{**served, "api": "chat"}}],
            },
            {
                "name": "failing-over",
                "routing": {
                    "strategy": "priority",
                    "params": {"ties": "stable"},
                    "mid_stream_failover": True,
                },
                "deployments": [
                    {"id": "first", **served, "priority": 0},
                    {"id": "second", **served, "priority": 1},
                ],
            },
        ],
        "keys": [
            {"name": "test", "key": "os.environ/TEST_KEY"},
            {
                "name": "redacting",
                "key": REDACTING_KEY,
                "guardrails": {"pii": {"action": "redact"}},
            },
        ],
        "batch": {"enabled": False},
        "registry": {"enabled": False},
        "search": {
            "backends": [
                {"type": "local"},
                {"type": "searxng", "url": searxng.url, "retries": 0},  # type: ignore[attr-defined]
            ]
        },
    }
    gateway = GatewayProcess(config, tmp_path_factory.mktemp("gw"), env={"TEST_KEY": TEST_KEY})
    yield gateway
    gateway.close()
    fake.close()


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=TEST_KEY, max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def claude_client(gateway: GatewayProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.base_url, api_key=TEST_KEY, max_retries=0) as c:
        yield c


def _asked(upstream: list[dict[str, Any]]) -> dict[str, Any]:
    """The body of the one request the fake was sent."""
    [asked] = upstream
    assert asked["path"] == "/v1/responses"
    body: dict[str, Any] = asked["body"]
    return body


# -- chat completions -------------------------------------------------------------


def test_through_chat_completions_the_model_would_be_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as refused:
        client.chat.completions.create(
            model="codex-as-chat", messages=[{"role": "user", "content": "Hello"}]
        )
    assert "v1/responses" in refused.value.message


def test_a_chat_completion_is_asked_on_the_responses_api(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    completion = client.chat.completions.create(
        model="codex",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there"},
        ],
        max_completion_tokens=200,
    )
    assert completion.choices[0].message.content == "You said: Hello there."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    body = _asked(upstream)
    assert upstream[0]["authorization"] == "Bearer sk-upstream"
    assert body["model"] == RESPONSES_MODEL and body["max_output_tokens"] == 200
    assert body["input"][0] == {"type": "message", "role": "system", "content": "Be brief."}
    assert body["store"] is False and "messages" not in body


def test_azure_serves_it_on_its_v1_surface(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    text = ""
    stream = client.chat.completions.create(
        model="azure-codex", messages=[{"role": "user", "content": "Hello Azure"}], stream=True
    )
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
    assert text == "You said: Hello Azure."
    [asked] = upstream
    assert asked["path"] == "/openai/v1/responses"  # no deployment in the path, no api-version
    assert asked["body"]["model"] == "my-codex"
    assert (asked["api_key"], asked["authorization"]) == ("azure-key", None)


def test_a_streamed_tool_loop_through_chat(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    messages: Any = [{"role": "user", "content": "Weather in Oslo"}]
    calls: dict[int, dict[str, str]] = {}
    finish = None
    stream = client.chat.completions.create(
        model="codex", messages=messages, tools=[WEATHER], stream=True
    )
    for chunk in stream:
        for choice in chunk.choices:
            for piece in choice.delta.tool_calls or ():
                call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
                call["id"] = piece.id or call["id"]
                if piece.function is not None:
                    call["name"] = piece.function.name or call["name"]
                    call["arguments"] += piece.function.arguments or ""
            finish = choice.finish_reason or finish
    [call] = calls.values()
    assert finish == "tool_calls" and call["name"] == "weather"
    assert json.loads(call["arguments"]) == {"query": "Weather in Oslo"}
    messages += [
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": "weather", "arguments": call["arguments"]},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call["id"], "content": "rain"},
    ]
    upstream.clear()
    text = ""
    usage = None
    stream = client.chat.completions.create(
        model="codex",
        messages=messages,
        tools=[WEATHER],
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
        usage = chunk.usage or usage
    assert text == "The tool said: rain."
    assert usage is not None and usage.prompt_tokens > 0
    assert [item["type"] for item in _asked(upstream)["input"]] == [
        "message",
        "function_call",
        "function_call_output",
    ]


def test_what_the_responses_api_has_no_word_for_is_a_400_before_any_call(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="codex", messages=[{"role": "user", "content": "Hi"}], stop=["\n"]
        )
    assert refused.value.param == "stop" and upstream == []


def test_an_upstream_failure_is_the_gateway_s_5xx(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(
            model="codex", messages=[{"role": "user", "content": "please fail me"}]
        )
    assert failed.value.status_code >= 500


def test_guardrails_redact_what_goes_upstream(
    gateway: GatewayProcess, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    with openai.OpenAI(
        base_url=gateway.base_url + "/v1", api_key=REDACTING_KEY, max_retries=0
    ) as redacting:
        redacting.chat.completions.create(
            model="codex", messages=[{"role": "user", "content": f"Mail {EMAIL}"}]
        )
    sent = json.dumps(_asked(upstream)["input"])
    assert EMAIL not in sent and "[EMAIL]" in sent


def test_a_cut_stream_fails_over_and_goes_on(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    text = ""
    stream = client.chat.completions.create(
        model="failing-over",
        messages=[{"role": "user", "content": "cut me off"}],
        stream=True,
    )
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
    first, second = (asked["body"]["input"] for asked in upstream)
    assert text.startswith("You said:")  # the first deployment's two pieces
    assert len(first) == 1 and second[:2] == [
        first[0],
        {"type": "message", "role": "assistant", "content": "You said:"},
    ]  # the second one continues them
    assert text.endswith(".")


# -- the Responses API, with reasoning carried between turns ----------------------


def test_a_codex_turn_carries_its_sealed_reasoning_into_the_next(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    tools: Any = [
        {
            "type": "function",
            "name": "weather",
            "parameters": WEATHER["function"]["parameters"],
            "strict": False,
        }
    ]
    upstream.clear()
    with client.responses.stream(
        model="codex",
        input="Weather in Oslo",
        tools=tools,
        reasoning={"effort": "medium"},
        include=["reasoning.encrypted_content"],
        store=False,
    ) as stream:
        first = stream.get_final_response()
    assert [item.type for item in first.output] == ["reasoning", "function_call"]
    reasoning = first.output[0]
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    [call] = [item for item in first.output if item.type == "function_call"]
    assert json.loads(call.arguments) == {"query": "Weather in Oslo"}
    sealed = _asked(upstream)
    assert sealed["reasoning"] == {"effort": "medium"}
    upstream.clear()
    conversation: Any = [{"role": "user", "content": "Weather in Oslo"}]
    conversation += [item.model_dump(exclude_none=True) for item in first.output]
    conversation += [{"type": "function_call_output", "call_id": call.call_id, "output": "rain"}]
    with client.responses.stream(
        model="codex", input=conversation, tools=tools, store=False
    ) as stream:
        second = stream.get_final_response()
    assert second.output_text == "The tool said: rain."
    # The upstream's own sealed reasoning went back (the fake verifies it: a 400 otherwise).
    sent = _asked(upstream)["input"]
    assert [item["type"] for item in sent] == [
        "message",
        "reasoning",
        "function_call",
        "function_call_output",
    ]
    assert sent[1]["encrypted_content"] != reasoning.encrypted_content  # the gateway's wrapping


def test_codex_s_prompt_cache_key_and_service_tier_reach_the_upstream(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    answer = client.responses.create(
        model="codex",
        input="Hello",
        prompt_cache_key="conversation-7",
        service_tier="flex",
        safety_identifier="user-7",
    )
    sent = _asked(upstream)
    assert (sent["prompt_cache_key"], sent["service_tier"], sent["safety_identifier"]) == (
        "conversation-7",
        "flex",
        "user-7",
    )
    # ... and the Response names them, as OpenAI's does (the tier: the one that served it).
    assert (answer.prompt_cache_key, answer.service_tier, answer.safety_identifier) == (
        "conversation-7",
        "flex",
        "user-7",
    )


def test_the_tier_that_served_is_named_in_every_dialect_s_answer(client: openai.OpenAI) -> None:
    asked: Any = {"model": "codex", "input": "Hello", "service_tier": "auto", "store": False}
    assert client.responses.create(**asked).service_tier == "default"
    with client.responses.stream(**asked) as stream:
        assert stream.get_final_response().service_tier == "default"
    chunks = client.chat.completions.create(
        model="codex", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    assert [c.service_tier for c in chunks if c.service_tier] == ["default"]  # with the finish


def test_codex_s_summary_wish_reaches_the_upstream_and_its_summary_streams(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    summary = ""
    with client.responses.stream(
        model="codex",
        input="Plums please",
        reasoning={"effort": "high", "summary": "auto"},
        store=False,
    ) as stream:
        for event in stream:
            if event.type == "response.reasoning_summary_text.delta":
                summary += event.delta
        answer = stream.get_final_response()
    assert _asked(upstream)["reasoning"] == {"effort": "high", "summary": "auto"}
    assert summary == "Thinking about Plums."
    assert [item.type for item in answer.output] == ["reasoning", "message"]
    assert answer.output_text == "You said: Plums please."


def test_previous_response_id_carries_the_stored_turn_s_sealed_reasoning(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    first = client.responses.create(
        model="codex", input="Remember plums", reasoning={"effort": "low"}
    )
    assert first.output_text == "You said: Remember plums."
    assert [item.type for item in first.output] == ["reasoning", "message"]
    upstream.clear()
    second = client.responses.create(model="codex", input="And now?", previous_response_id=first.id)
    assert second.output_text == "You said: And now?."
    assert second.usage is not None and second.usage.input_tokens > first.usage.input_tokens  # type: ignore[union-attr]
    # The stored turn's reasoning went back as the upstream wrote it (the fake verifies it).
    sent = _asked(upstream)["input"]
    assert [item["type"] for item in sent] == ["message", "reasoning", "message", "message"]
    assert sent[1]["encrypted_content"].startswith("enc-")


def test_a_hosted_web_search_runs_upstream_and_comes_back_as_its_items(
    client: openai.OpenAI, upstream: list[dict[str, Any]], searxng: FakeSearchService
) -> None:
    upstream.clear()
    searched_here = len(searxng.requests)
    search: Any = {
        "type": "web_search",
        "filters": {"allowed_domains": ["example.com"]},
        "user_location": {"type": "approximate", "country": "NO"},
    }
    kinds: list[str] = []
    with client.responses.stream(model="codex", input="search plums", tools=[search]) as stream:
        for event in stream:
            kinds.append(event.type)
        answer = stream.get_final_response()
    sent = _asked(upstream)
    assert sent["tools"] == [
        {
            "type": "web_search",
            "filters": {"allowed_domains": ["example.com"]},
            "user_location": {"type": "approximate", "country": "NO"},
        }
    ]
    assert "web_search_call.action.sources" in sent["include"]
    searched, said = answer.output
    assert searched.type == "web_search_call" and searched.status == "completed"
    assert searched.action.query == "search plums"  # type: ignore[union-attr]
    assert [s.url for s in searched.action.sources or ()] == [  # type: ignore[union-attr]
        "https://example.com/search"
    ]
    assert said.type == "message" and answer.output_text == "Found it: search plums."
    [cited] = said.content[0].annotations  # type: ignore[union-attr]
    assert (cited.type, cited.url, cited.start_index, cited.end_index) == (  # type: ignore[union-attr]
        "url_citation",
        "https://example.com/search",
        0,
        5,
    )
    assert "response.web_search_call.completed" in kinds
    assert "response.output_text.annotation.added" in kinds
    unary = client.responses.create(model="codex", input="search plums", tools=[search])
    assert [item.type for item in unary.output] == ["web_search_call", "message"]
    assert len(searxng.requests) == searched_here  # the upstream searched, not the gateway


def test_codex_s_cached_search_is_run_by_openai_alone(
    client: openai.OpenAI, upstream: list[dict[str, Any]], searxng: FakeSearchService
) -> None:
    cached: Any = {"type": "web_search", "external_web_access": False}  # Codex's default
    searched_here = len(searxng.requests)
    upstream.clear()
    answer = client.responses.create(model="codex", input="search plums", tools=[cached])
    assert _asked(upstream)["tools"] == [cached]
    assert [item.type for item in answer.output] == ["web_search_call", "message"]
    upstream.clear()
    # Elsewhere it is left out: the gateway's searches, as Anthropic's, are live.
    client.responses.create(model="failing-over", input="search plums", tools=[cached])
    assert "tools" not in upstream[0]["body"]
    assert len(searxng.requests) == searched_here


def test_where_the_upstream_cannot_search_the_gateway_does(
    client: openai.OpenAI, upstream: list[dict[str, Any]], searxng: FakeSearchService
) -> None:
    searched_here = len(searxng.requests)
    upstream.clear()
    answer = client.responses.create(
        model="failing-over", input="search plums", tools=[{"type": "web_search"}]
    )
    assert len(searxng.requests) == searched_here + 1
    first = upstream[0]["body"]
    assert [tool["type"] for tool in first["tools"]] == ["function"]  # the gateway's search
    assert answer.output[0].type == "web_search_call"


def test_chat_s_web_search_options_search_upstream_with_citations(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    answer = client.chat.completions.create(
        model="codex",
        messages=[{"role": "user", "content": "search pears"}],
        web_search_options={},
    )
    message = answer.choices[0].message
    assert message.content == "Found it: search pears."
    [cited] = message.annotations or []
    assert cited.url_citation.url == "https://example.com/search"
    assert (cited.url_citation.start_index, cited.url_citation.end_index) == (0, 5)
    assert _asked(upstream)["tools"] == [{"type": "web_search"}]
    assert answer.usage is not None  # searches are counted as Anthropic's are, and priced
    assert answer.usage.model_dump()["server_tool_use"] == {"web_search_requests": 1}


# -- Anthropic Messages ----------------------------------------------------------


def test_claude_code_s_dialect_runs_a_streamed_tool_loop(
    claude_client: anthropic.Anthropic,
) -> None:
    tools: Any = [
        {
            "name": "weather",
            "description": "The weather in a city.",
            "input_schema": WEATHER["function"]["parameters"],
        }
    ]
    messages: Any = [{"role": "user", "content": "Weather in Oslo"}]
    with claude_client.messages.stream(
        model="codex", max_tokens=500, messages=messages, tools=tools
    ) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    [use] = [block for block in first.content if block.type == "tool_use"]
    assert use.input == {"query": "Weather in Oslo"}
    messages += [
        {"role": "assistant", "content": [block.model_dump() for block in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "rain"}],
        },
    ]
    with claude_client.messages.stream(
        model="codex", max_tokens=500, messages=messages, tools=tools
    ) as stream:
        second = stream.get_final_message()
    assert [block.type for block in second.content] == ["text"]
    assert second.content[0].text == "The tool said: rain."  # type: ignore[union-attr]
    assert second.usage.output_tokens > 0


# -- a refusal, in every dialect ----------------------------------------------


def test_a_refusal_is_a_refusal_in_chat_unary_and_streamed(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        model="codex", messages=[{"role": "user", "content": "Please refuse me"}]
    )
    message = answer.choices[0].message
    assert (message.refusal, message.content) == (REFUSAL, None)
    pieces = []
    for chunk in client.chat.completions.create(
        model="codex", messages=[{"role": "user", "content": "Please refuse me"}], stream=True
    ):
        if chunk.choices and chunk.choices[0].delta.refusal:
            pieces.append(chunk.choices[0].delta.refusal)
    assert len(pieces) > 1 and "".join(pieces) == REFUSAL


@pytest.mark.parametrize("streamed", [False, True])
def test_a_refusal_is_the_message_s_refusal_part_in_the_responses_dialect(
    client: openai.OpenAI, streamed: bool
) -> None:
    deltas = []
    if streamed:
        with client.responses.stream(model="codex", input="Refuse me", store=False) as stream:
            deltas = [e.delta for e in stream if e.type == "response.refusal.delta"]
            answer = stream.get_final_response()
    else:
        answer = client.responses.create(model="codex", input="Refuse me", store=False)
    [message] = answer.output
    assert message.type == "message"
    assert [part.model_dump() for part in message.content] == [
        {"type": "refusal", "refusal": REFUSAL}
    ]
    assert "".join(deltas) == (REFUSAL if streamed else "")


def test_a_refusal_is_what_the_model_said_in_the_messages_dialect(
    claude_client: anthropic.Anthropic,
) -> None:
    with claude_client.messages.stream(
        model="codex", max_tokens=100, messages=[{"role": "user", "content": "Refuse me"}]
    ) as stream:
        answer = stream.get_final_message()
    assert [block.type for block in answer.content] == ["text"]
    assert answer.content[0].text == REFUSAL  # type: ignore[union-attr]
