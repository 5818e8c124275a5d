"""Web search run by the gateway for models that cannot run it (ADR 0029),
end to end: the official ``anthropic`` SDK sends Claude Code's WebSearch
tool and the ``openai`` SDK the Responses API's hosted ``web_search`` to
models with no Anthropic deployment (the Azure, Gemini and Bedrock fakes);
the gateway searches a fake SearXNG on loopback between the model's rounds
and answers with the searches in each dialect's shape, unary or streamed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
from aiohttp import web

from interlock.app import create_app
from interlock.config import parse_config
from tests.conftest import TEST_KEY
from tests.search.fakes import Doc, FakeSearchService
from tests.support.openai_clients import openai_client
from tests.support.provider_fleet import provider_gateway
from tests.support.servers import FakeUpstream, GatewayProcess, InProcessGateway

WEB_SEARCH: Any = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
ASK: Any = [{"role": "user", "content": "Perform a web search for the query: capital of France"}]
DOCS = [
    Doc("Paris - Wikipedia", "https://en.wikipedia.example/Paris", "Paris is the <b>capital</b>"),
    Doc("Paris ads", "https://ads.example/paris", "Cheap flights"),
]
SEARCHED = ["server_tool_use", "web_search_tool_result", "text"]
MODELS = ["azure", "gemini", "bedrock"]


@pytest.fixture(scope="module")
def searxng() -> Iterator[FakeSearchService]:
    fake = FakeSearchService(kind="searxng", docs=DOCS)
    with FakeUpstream(fake.app()) as upstream:
        fake.url = upstream.url  # type: ignore[attr-defined]
        yield fake


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    searxng: FakeSearchService,
    azure_requests: list[dict[str, Any]],
) -> Iterator[GatewayProcess]:
    backend = {"type": "searxng", "url": searxng.url, "retries": 0}  # type: ignore[attr-defined]
    with provider_gateway(
        tmp_path_factory.mktemp("gw"),
        azure_requests=azure_requests,
        sections={"search": {"backends": [{"type": "local"}, backend]}},
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def messages(gateway: GatewayProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.base_url, api_key=TEST_KEY, max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai_client(gateway) as client:
        yield client


@pytest.fixture(autouse=True)
def search_works(searxng: FakeSearchService) -> Iterator[None]:
    searxng.mode = "ok"
    yield
    searxng.mode = "ok"


@pytest.mark.parametrize("model", MODELS)
def test_claude_codes_web_search_is_run_by_the_gateway(
    messages: anthropic.Anthropic, searxng: FakeSearchService, model: str
) -> None:
    before = len(searxng.requests)
    answer = messages.messages.create(model=model, max_tokens=256, messages=ASK, tools=[WEB_SEARCH])

    assert [block.type for block in answer.content] == SEARCHED
    call, result, text = answer.content
    assert call.type == "server_tool_use" and call.name == "web_search"
    assert result.type == "web_search_tool_result" and result.tool_use_id == call.id
    found = result.model_dump()["content"]
    assert [(r["title"], r["url"]) for r in found] == [(d.title, d.url) for d in DOCS]
    # The fake models answer a tool result with its text: the model read the pages.
    assert text.type == "text" and "https://en.wikipedia.example/Paris" in text.text
    assert "Paris is the capital" in text.text  # the snippet, as plain text
    assert answer.stop_reason == "end_turn"
    assert answer.usage.server_tool_use is not None
    assert answer.usage.server_tool_use.web_search_requests == 1
    # The search went to the web backend only, with the model's query.
    asked = searxng.requests[before:]
    assert len(asked) == 1 and asked[0].query["q"] == call.input["query"]  # type: ignore[index]


def test_the_model_is_offered_a_function_and_given_the_results(
    messages: anthropic.Anthropic, azure_requests: list[dict[str, Any]]
) -> None:
    sent = len(azure_requests)
    messages.messages.create(model="azure", max_tokens=256, messages=ASK, tools=[WEB_SEARCH])

    first, second = (request["body"] for request in azure_requests[sent:])
    assert [t["function"]["name"] for t in first["tools"]] == ["web_search"]
    assert "web_search_20250305" not in orjson.dumps(first).decode()
    searched, results = second["messages"][-2:]
    assert searched["tool_calls"][0]["function"]["name"] == "web_search"
    assert results["role"] == "tool" and results["tool_call_id"] == searched["tool_calls"][0]["id"]
    assert orjson.loads(results["content"])[0]["url"] == DOCS[0].url


@pytest.mark.parametrize("model", ["azure", "gemini"])
def test_a_streamed_search_ends_as_the_same_message(
    messages: anthropic.Anthropic, model: str
) -> None:
    unary = messages.messages.create(model=model, max_tokens=256, messages=ASK, tools=[WEB_SEARCH])
    with messages.messages.stream(
        model=model, max_tokens=256, messages=ASK, tools=[WEB_SEARCH]
    ) as stream:
        events = [event.type for event in stream]
        streamed = stream.get_final_message()

    assert [block.type for block in streamed.content] == SEARCHED
    assert streamed.content[2].text == unary.content[2].text  # type: ignore[union-attr]
    assert streamed.content[1].model_dump()["content"] == unary.content[1].model_dump()["content"]
    assert streamed.stop_reason == "end_turn"
    assert streamed.usage.server_tool_use is not None
    assert streamed.usage.server_tool_use.web_search_requests == 1
    assert events[0] == "message_start" and events[-1] == "message_stop"


def test_blocked_domains_are_left_out_of_what_the_model_reads(
    messages: anthropic.Anthropic, azure_requests: list[dict[str, Any]]
) -> None:
    tool = {**WEB_SEARCH, "blocked_domains": ["ads.example"]}
    answer = messages.messages.create(model="azure", max_tokens=256, messages=ASK, tools=[tool])
    found = answer.content[1].model_dump()["content"]
    assert [r["url"] for r in found] == [DOCS[0].url]
    assert "ads.example" not in azure_requests[-1]["body"]["messages"][-1]["content"]


def test_a_failed_search_is_an_error_block_and_still_an_answer(
    messages: anthropic.Anthropic, searxng: FakeSearchService
) -> None:
    searxng.mode = "500"
    answer = messages.messages.create(
        model="azure", max_tokens=256, messages=ASK, tools=[WEB_SEARCH]
    )
    result = answer.content[1].model_dump()
    assert result["content"] == {
        "type": "web_search_tool_result_error",
        "error_code": "unavailable",
    }
    assert "The search failed" in answer.content[2].text  # type: ignore[union-attr]


@pytest.mark.parametrize("stream", [False, True])
def test_the_responses_hosted_search_is_a_web_search_call(
    client: openai.OpenAI, stream: bool
) -> None:
    ask = "What is the capital of France?"
    tools: Any = [{"type": "web_search"}]
    if stream:
        with client.responses.stream(model="gemini", input=ask, tools=tools) as events:
            kinds = [event.type for event in events]
            response = events.get_final_response()
        assert kinds.index("response.web_search_call.completed") < kinds.index(
            "response.output_text.delta"
        )
    else:
        response = client.responses.create(model="gemini", input=ask, tools=tools)

    assert [item.type for item in response.output] == ["web_search_call", "message"]
    search = response.output[0]
    assert search.type == "web_search_call" and search.status == "completed"
    action: Any = search.action
    assert action.query and [s.url for s in action.sources] == [d.url for d in DOCS]
    assert DOCS[0].url in response.output_text


@pytest.mark.parametrize("stream", [False, True])
def test_chats_web_search_options_on_a_model_that_cannot_take_them(
    client: openai.OpenAI, searxng: FakeSearchService, stream: bool
) -> None:
    # Gemini's and Bedrock's APIs have no such option (without a web backend: a 400).
    before = len(searxng.requests)
    ask: Any = [{"role": "user", "content": "What is the capital of France?"}]
    if stream:
        chunks = list(
            client.chat.completions.create(
                model="bedrock", messages=ask, web_search_options={}, stream=True
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert chunks[-1].choices[0].finish_reason == "stop"
    else:
        answer = client.chat.completions.create(
            model="bedrock", messages=ask, web_search_options={}
        )
        text = answer.choices[0].message.content or ""
        assert answer.choices[0].finish_reason == "stop"
        assert answer.usage is not None
        assert (answer.usage.model_extra or {})["server_tool_use"] == {"web_search_requests": 1}
    assert DOCS[0].url in text
    assert len(searxng.requests) == before + 1


def test_each_search_is_counted_by_outcome(
    messages: anthropic.Anthropic, gateway: GatewayProcess, searxng: FakeSearchService
) -> None:
    def counted(outcome: str) -> float:
        text = httpx.get(gateway.base_url + "/metrics", timeout=10).text
        name = f'interlock_web_searches_total{{model="azure",outcome="{outcome}"}} '
        lines = [line for line in text.splitlines() if line.startswith(name)]
        return float(lines[0].split()[-1]) if lines else 0.0

    ok, failed = counted("ok"), counted("failed")
    messages.messages.create(model="azure", max_tokens=64, messages=ASK, tools=[WEB_SEARCH])
    searxng.mode = "500"
    messages.messages.create(model="azure", max_tokens=64, messages=ASK, tools=[WEB_SEARCH])
    assert (counted("ok"), counted("failed")) == (ok + 1, failed + 1)


def _searching_upstream(asked: list[dict[str, Any]]) -> web.Application:
    """An OpenAI-compatible model that calls ``web_search`` whenever it may
    (every round until one asked with ``tool_choice: none``)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        asked.append(body)
        if body.get("tool_choice") == "none":
            delta: dict[str, Any] = {"role": "assistant", "content": "Done."}
            reason = "stop"
        else:
            arguments = orjson.dumps({"query": f"q{len(asked)}"}).decode()
            call = {"id": f"call_{len(asked)}", "type": "function"}
            call["function"] = {"name": "web_search", "arguments": arguments}
            delta, reason = (
                {"role": "assistant", "content": None, "tool_calls": [call]},
                "tool_calls",
            )
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        if not body.get("stream"):
            choice = {"index": 0, "message": delta, "finish_reason": reason}
            return web.json_response({"id": "c", "model": "m", "choices": [choice], "usage": usage})
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        if "tool_calls" in delta:
            delta["tool_calls"] = [{**delta["tool_calls"][0], "index": 0}]
        chunks = [
            {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]},
            {"choices": [], "usage": usage},
        ]
        for chunk in chunks:
            await response.write(
                b"data: " + orjson.dumps({"id": "c", "model": "m", **chunk}) + b"\n\n"
            )
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    return app


@contextmanager
def _gateway_of(
    searxng: FakeSearchService, models: list[dict[str, Any]], **search: Any
) -> Iterator[InProcessGateway]:
    """An in-process gateway of ``models`` with the SearXNG fake as its web
    backend (``search``: more of the section)."""
    backend = {"type": "searxng", "url": searxng.url, "retries": 0}  # type: ignore[attr-defined]
    raw: dict[str, Any] = {
        "models": models,
        "keys": [{"name": "k", "key": TEST_KEY}],
        "search": {"backends": [backend], **search},
        "batch": {"enabled": False},
        "registry": {"enabled": False},
    }
    gateway = InProcessGateway(create_app(parse_config(raw, env={})))
    try:
        yield gateway
    finally:
        gateway.close()


def _gateway_before(
    upstream: FakeUpstream, searxng: FakeSearchService, **deployment: Any
) -> AbstractContextManager[InProcessGateway]:
    """A gateway of one model, ``m``, on ``upstream`` (OpenAI's wire)."""
    at = {"provider": "openai", "model": "m", "base_url": upstream.url + "/v1", **deployment}
    return _gateway_of(searxng, [{"name": "m", "deployments": [{"id": "m-1", **at}]}])


@pytest.mark.parametrize("stream", [False, True])
def test_a_model_that_keeps_searching_is_stopped_at_max_uses(
    fake_upstream: Callable[[web.Application], FakeUpstream],
    searxng: FakeSearchService,
    stream: bool,
) -> None:
    # Four rounds, each with its own routing attempts (max_attempts, 2 by
    # default, counts one call's), the last asked with tool_choice none.
    asked: list[dict[str, Any]] = []
    upstream = fake_upstream(_searching_upstream(asked))
    with (
        _gateway_before(upstream, searxng) as gateway,
        anthropic.Anthropic(base_url=gateway.base_url, api_key=TEST_KEY, max_retries=0) as c,
    ):
        ask: Any = {"model": "m", "max_tokens": 64, "messages": ASK, "tools": [WEB_SEARCH]}
        if stream:
            with c.messages.stream(**ask) as events:
                answer = events.get_final_message()
        else:
            answer = c.messages.create(**ask)
    kinds = [block.type for block in answer.content]
    assert kinds == [*SEARCHED[:2] * 3, "text"]
    assert [block.input for block in answer.content if block.type == "server_tool_use"] == [
        {"query": f"q{n}"} for n in (1, 2, 3)
    ]
    assert [body.get("tool_choice") for body in asked] == [None, None, None, "none"]
    assert answer.stop_reason == "end_turn"
    assert answer.usage.server_tool_use is not None
    assert answer.usage.server_tool_use.web_search_requests == 3
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (40, 20)


def test_the_operator_can_keep_the_web_backends_from_models(
    searxng: FakeSearchService,
) -> None:
    sim = {"name": "sim", "deployments": [{"id": "sim-1", "provider": "simulator"}]}
    with (
        _gateway_of(searxng, [sim], web_search_tool=False) as gateway,
        anthropic.Anthropic(base_url=gateway.base_url, api_key=TEST_KEY, max_retries=0) as c,
        pytest.raises(anthropic.BadRequestError) as caught,
    ):
        c.messages.create(model="sim", max_tokens=64, messages=ASK, tools=[WEB_SEARCH])
    assert "`search.backends`" in str(caught.value)


@pytest.mark.parametrize("setting", [None, "native"])
def test_web_search_options_on_openais_wire_follow_the_deployments_setting(
    fake_upstream: Callable[[web.Application], FakeUpstream],
    searxng: FakeSearchService,
    setting: str | None,
) -> None:
    # A vLLM or Ollama server speaks OpenAI's wire and cannot search: by default
    # (away from api.openai.com) the gateway searches for it; `web_search:
    # native` passes the option on, for OpenAI's own search models.
    asked: list[dict[str, Any]] = []
    upstream = fake_upstream(_searching_upstream(asked))
    setting_given = {"web_search": setting} if setting is not None else {}
    with (
        _gateway_before(upstream, searxng, **setting_given) as gateway,
        openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=TEST_KEY, max_retries=0) as c,
    ):
        ask: Any = [{"role": "user", "content": "Who won?"}]
        answer = c.chat.completions.create(model="m", messages=ask, web_search_options={})
    first = asked[0]
    if setting == "native":
        assert first["web_search_options"] == {} and "tools" not in first
        assert len(asked) == 1
    else:
        assert "web_search_options" not in first
        assert [t["function"]["name"] for t in first["tools"]] == ["web_search"]
        assert answer.usage is not None
        assert (answer.usage.model_extra or {})["server_tool_use"]["web_search_requests"] >= 1


def test_with_anthropic_down_the_gateway_searches_on_the_groups_other_deployments(
    fake_upstream: Callable[[web.Application], FakeUpstream], searxng: FakeSearchService
) -> None:
    # Anthropic first by priority, unreachable; an OpenAI-wire model behind it.
    # Once Anthropic's breaker is open, Claude Code's WebSearch is served by
    # the gateway's search on the other deployment instead of a 503.
    asked: list[dict[str, Any]] = []
    upstream = fake_upstream(_searching_upstream(asked))
    closed_port = "http://127.0.0.1:9"  # discard: nothing listens
    anthropic_one = {"id": "claude-1", "provider": "anthropic", "model": "claude-sonnet-4-5"}
    other = {"id": "other-1", "provider": "openai", "model": "m", "priority": 1}
    mixed = {
        "name": "mixed",
        "routing": {"strategy": "priority", "breaker": {"consecutive_failures": 1, "open_s": 60}},
        "deployments": [
            {**anthropic_one, "api_key": "k", "base_url": closed_port, "priority": 0},
            {**other, "base_url": upstream.url + "/v1"},
        ],
    }
    with (
        _gateway_of(searxng, [mixed]) as gateway,
        anthropic.Anthropic(base_url=gateway.base_url, api_key=TEST_KEY, max_retries=0) as c,
    ):
        plain = c.messages.with_raw_response.create(model="mixed", max_tokens=32, messages=ASK)
        assert plain.headers["x-interlock-deployment"] == "other-1"  # Anthropic failed over
        tool = {**WEB_SEARCH, "max_uses": 1}
        answer = c.messages.create(model="mixed", max_tokens=64, messages=ASK, tools=[tool])
        # A tool only Anthropic runs waits for Anthropic: a 503, not a 400.
        computer: Any = {"type": "computer_20250124", "name": "computer"}
        with pytest.raises(anthropic.APIStatusError) as caught:
            c.messages.create(model="mixed", max_tokens=64, messages=ASK, tools=[computer])
        assert caught.value.status_code == 503
    assert [block.type for block in answer.content] == SEARCHED
    assert asked[-1]["tool_choice"] == "none"
