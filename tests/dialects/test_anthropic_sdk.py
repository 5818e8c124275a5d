"""The official ``anthropic`` SDK, unchanged, against the gateway's
``/v1/messages``: whatever upstream answers (an Anthropic one, Azure's
OpenAI wire, Gemini, the simulator), the client sees Anthropic's API.

One gateway process serves them all, in front of the fake upstreams of
``tests/support`` (they follow one contract: call the first tool, "Tool
said: ..." after results, describe an image), so one test body checks
every upstream.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from tests.conftest import TEST_KEY
from tests.e2e.test_provider_fidelity import _png
from tests.support.fake_anthropic import SIGNATURE
from tests.support.provider_fleet import PROVIDER_MODELS, provider_gateway
from tests.support.servers import GatewayProcess

EVERY = ["claude", "azure", "gemini", "bedrock", "sim"]
GREETINGS = {
    "claude": "Hello from anthropic",
    "azure": "Hello from azure",
    "gemini": "Hello from gemini",
}
WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
TIME: Any = {
    "name": "get_time",
    "description": "The local time in a city, with a UTC offset.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "offset": {"type": "integer"}},
        "required": ["city", "offset"],
    },
}
ASK_WEATHER: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
MISSING_TEXT: Any = [{"type": "text"}]


@pytest.fixture(scope="module")
def upstream_requests() -> list[dict[str, Any]]:
    """What the fake Anthropic upstream received, newest last."""
    return []


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    upstream_requests: list[dict[str, Any]],
    azure_requests: list[dict[str, Any]],
) -> Iterator[GatewayProcess]:
    more = {
        # Its own deployment, so its overload trips no breaker the others use.
        "claude-busy": PROVIDER_MODELS["claude"],
        "cut": {"provider": "simulator"},
    }
    # The "cut" model's streams break after two chunks: an error after the start.
    chaos = {"enabled": True, "rules": [{"deployment": "cut-1", "cut_after_chunks": 2}]}
    with provider_gateway(
        tmp_path_factory.mktemp("gw"),
        more_models=more,
        anthropic_requests=upstream_requests,
        azure_requests=azure_requests,
        sections={"chaos": chaos},
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.base_url, api_key=TEST_KEY, max_retries=0) as c:
        yield c


def _error(exc: anthropic.APIStatusError) -> dict[str, Any]:
    """The ``error`` object of an Anthropic-shaped error body."""
    body: Any = exc.body
    error: dict[str, Any] = body["error"]
    return error


def _tool_uses(content: list[Any]) -> list[Any]:
    return [block for block in content if block.type == "tool_use"]


def _text(content: list[Any]) -> str:
    return "".join(block.text for block in content if block.type == "text")


def _results(calls: list[Any], outputs: list[str]) -> dict[str, Any]:
    blocks = [
        {"type": "tool_result", "tool_use_id": call.id, "content": output}
        for call, output in zip(calls, outputs, strict=True)
    ]
    return {"role": "user", "content": blocks}


@pytest.mark.parametrize("model", EVERY)
def test_create_answers_a_message(client: anthropic.Anthropic, model: str) -> None:
    answer = client.messages.create(
        model=model, max_tokens=256, messages=[{"role": "user", "content": "Hi"}]
    )
    assert answer.type == "message" and answer.role == "assistant"
    assert answer.id.startswith("msg_")
    assert answer.stop_reason == "end_turn"
    assert [block.type for block in answer.content] == ["text"]
    if model in GREETINGS:
        assert _text(answer.content) == GREETINGS[model]
    assert answer.usage.input_tokens > 0 and answer.usage.output_tokens > 0


@pytest.mark.parametrize("model", EVERY)
def test_stream_text_and_final_message(client: anthropic.Anthropic, model: str) -> None:
    with client.messages.stream(
        model=model, max_tokens=256, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and _text(final.content) == text
    if model in GREETINGS:
        assert text == GREETINGS[model]
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0


@pytest.mark.parametrize("model", EVERY)
def test_a_two_turn_tool_loop(client: anthropic.Anthropic, model: str) -> None:
    first = client.messages.create(
        model=model, max_tokens=256, tools=[WEATHER], messages=ASK_WEATHER
    )
    assert first.stop_reason == "tool_use"
    calls = _tool_uses(first.content)
    assert [(c.name, c.input) for c in calls] == [("get_weather", {"city": "Paris"})]

    turns = [*ASK_WEATHER, {"role": "assistant", "content": first.content}]
    turns.append(_results(calls, ["18 degrees, sunny"]))
    second = client.messages.create(model=model, max_tokens=256, tools=[WEATHER], messages=turns)
    assert second.stop_reason == "end_turn"
    assert _text(second.content) == "Tool said: 18 degrees, sunny"
    assert not _tool_uses(second.content)


@pytest.mark.parametrize("model", EVERY)
def test_a_streamed_tool_loop(client: anthropic.Anthropic, model: str) -> None:
    with client.messages.stream(
        model=model, max_tokens=256, tools=[WEATHER], messages=ASK_WEATHER
    ) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    calls = _tool_uses(first.content)
    assert [(c.name, c.input) for c in calls] == [("get_weather", {"city": "Paris"})]

    turns = [*ASK_WEATHER, {"role": "assistant", "content": first.content}]
    turns.append(_results(calls, ["18 degrees, sunny"]))
    with client.messages.stream(
        model=model, max_tokens=256, tools=[WEATHER], messages=turns
    ) as stream:
        text = "".join(stream.text_stream)
        second = stream.get_final_message()
    assert text == "Tool said: 18 degrees, sunny"
    assert second.stop_reason == "end_turn"


@pytest.mark.parametrize("model", ["claude", "azure", "sim"])
def test_parallel_calls_stream_as_blocks_in_order(client: anthropic.Anthropic, model: str) -> None:
    # The fake Anthropic and Azure upstreams interleave the two calls' pieces.
    ask: Any = [{"role": "user", "content": "Weather and time in Paris, both in parallel"}]
    with client.messages.stream(
        model=model, max_tokens=256, tools=[WEATHER, TIME], messages=ask
    ) as stream:
        first = stream.get_final_message()
    calls = _tool_uses(first.content)
    assert [(c.name, c.input) for c in calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"city": "Paris", "offset": 3}),
    ]
    turns = [*ask, {"role": "assistant", "content": first.content}]
    turns.append(_results(calls, ["sunny", "noon"]))
    final = client.messages.create(
        model=model, max_tokens=256, tools=[WEATHER, TIME], messages=turns
    )
    assert _text(final.content) == "Tool said: sunny; noon"


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_thinking_comes_back_signed_and_goes_back_in_a_tool_loop(
    client: anthropic.Anthropic, upstream_requests: list[dict[str, Any]], stream: bool
) -> None:
    thinking: Any = {"type": "enabled", "budget_tokens": 2000}

    def ask(turns: list[Any]) -> Any:
        params: Any = {
            "model": "claude",
            "max_tokens": 4000,
            "thinking": thinking,
            "tools": [WEATHER],
            "messages": turns,
        }
        if not stream:
            return client.messages.create(**params)
        with client.messages.stream(**params) as events:
            return events.get_final_message()

    first = ask(ASK_WEATHER)
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    assert first.content[0].signature == SIGNATURE
    assert upstream_requests[-1]["body"]["thinking"] == thinking  # the exact budget
    turns = [*ASK_WEATHER, {"role": "assistant", "content": first.content}]
    second = ask([*turns, _results(_tool_uses(first.content), ["sunny"])])
    # The fake refuses a tool loop whose thinking block did not come back first.
    assert _text(second.content) == "Tool said: sunny"
    sent = upstream_requests[-1]["body"]["messages"][1]["content"][0]
    assert sent == {"type": "thinking", "thinking": "Let me think.", "signature": SIGNATURE}


def test_system_with_cache_control_reports_cache_usage(
    client: anthropic.Anthropic, upstream_requests: list[dict[str, Any]]
) -> None:
    system: Any = [
        {"type": "text", "text": "You answer weather questions. " * 20},
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
    ]
    answer = client.messages.create(
        model="claude", max_tokens=256, system=system, messages=[{"role": "user", "content": "Hi"}]
    )
    # The fake reports 100 cache-read and 50 cache-write tokens for any marker.
    assert answer.usage.cache_read_input_tokens == 100
    assert answer.usage.cache_creation_input_tokens == 50
    assert 0 < answer.usage.input_tokens
    sent = upstream_requests[-1]["body"]["system"]
    assert sent[-1] == {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}


@pytest.mark.parametrize("model", ["claude", "azure", "gemini", "bedrock"])
def test_claude_code_s_global_cache_scope_is_taken_everywhere(
    client: anthropic.Anthropic, upstream_requests: list[dict[str, Any]], model: str
) -> None:
    """Claude Code marks its system prompt with the prompt-caching-scope beta's
    ``scope``; Anthropic gets it as sent, the others' caches ignore it."""
    marker = {"type": "ephemeral", "scope": "global"}
    system: Any = [{"type": "text", "text": "You are Claude Code.", "cache_control": marker}]
    upstream_requests.clear()
    answer = client.messages.create(
        model=model,
        max_tokens=256,
        system=system,
        messages=[{"role": "user", "content": "Hi"}],
        extra_headers={"anthropic-beta": "prompt-caching-scope-2026-01-05"},
    )
    assert _text(answer.content)
    if model == "claude":
        sent = upstream_requests[-1]
        assert sent["body"]["system"][-1]["cache_control"] == marker
        assert sent["headers"]["anthropic-beta"] == "prompt-caching-scope-2026-01-05"


@pytest.mark.parametrize("model", ["claude", "azure", "gemini"])
def test_an_image_block_reaches_the_model(client: anthropic.Anthropic, model: str) -> None:
    image = _png(4, 4)
    content: Any = [
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": "image/png",
                "data": base64.b64encode(image).decode(),
            },
        },
        {"type": "text", "text": "What is this?"},
    ]
    answer = client.messages.create(
        model=model, max_tokens=256, messages=[{"role": "user", "content": content}]
    )
    assert _text(answer.content) == f"I see a image/png image of {len(image)} bytes"


def test_an_image_s_transformations_reach_anthropic_upstreams_alone(
    client: anthropic.Anthropic,
    upstream_requests: list[dict[str, Any]],
    azure_requests: list[dict[str, Any]],
) -> None:
    source = {
        "type": "base64",
        "media_type": "image/png",
        "data": base64.b64encode(_png(4, 4)).decode(),
    }
    image: Any = {
        "type": "image",
        "source": source,
        "transformations": {"oversized_image": "error"},
    }
    messages: Any = [{"role": "user", "content": [image, {"type": "text", "text": "What?"}]}]
    for model in ("claude", "azure"):
        client.messages.create(model=model, max_tokens=256, messages=messages)
    [sent, _] = upstream_requests[-1]["body"]["messages"][0]["content"]
    assert sent == image
    [part, _] = azure_requests[-1]["body"]["messages"][0]["content"]
    assert part["type"] == "image_url" and "transformations" not in part


# A minimal PDF: what the upstreams are sent is these bytes, whatever they hold.
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.mark.parametrize("model", ["claude", "azure", "gemini", "bedrock"])
def test_a_pdf_document_reaches_the_model(
    client: anthropic.Anthropic, model: str, upstream_requests: list[dict[str, Any]]
) -> None:
    document: Any = {
        "type": "document",
        "source": {
            "type": "base64",
            "media_type": "application/pdf",
            "data": base64.b64encode(PDF).decode(),
        },
        "title": "report.pdf",
        "citations": {"enabled": False},
    }
    content: Any = [document, {"type": "text", "text": "Summarise it."}]
    answer = client.messages.create(
        model=model, max_tokens=256, messages=[{"role": "user", "content": content}]
    )
    assert _text(answer.content) == f"I read a application/pdf document of {len(PDF)} bytes"
    if model == "claude":  # Anthropic gets its own block back, title and all
        [sent, _] = upstream_requests[-1]["body"]["messages"][0]["content"]
        assert sent == {k: v for k, v in document.items() if k != "citations"}


def test_a_document_in_a_tool_result_and_a_text_document(
    client: anthropic.Anthropic, upstream_requests: list[dict[str, Any]]
) -> None:
    """Claude Code's Read tool answers with the file: a document inside the result."""
    weather: Any = {"name": "read", "description": "Read a file.", "input_schema": CITY}
    text_document: Any = {
        "type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "Notes: rain é"},
    }
    messages: Any = [
        {"role": "user", "content": "Read the notes."},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "read", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": [text_document]}
            ],
        },
    ]
    answer = client.messages.create(
        model="claude", max_tokens=256, messages=messages, tools=[weather]
    )
    assert answer.content[0].type == "text"
    [result, document] = upstream_requests[-1]["body"]["messages"][2]["content"]
    assert result["type"] == "tool_result" and document == text_document


@pytest.mark.parametrize("model", EVERY)
def test_search_results_in_a_tool_result_reach_every_model(
    client: anthropic.Anthropic, model: str
) -> None:
    """A retrieval tool answers with search results (Anthropic's RAG blocks)."""
    found: Any = {
        "type": "search_result",
        "source": "https://docs.example.com/rain",
        "title": "Rain in Paris",
        "content": [{"type": "text", "text": "It rains in Paris."}],
    }
    first = client.messages.create(
        model=model, max_tokens=256, messages=ASK_WEATHER, tools=[WEATHER]
    )
    [call] = [block for block in first.content if block.type == "tool_use"]
    result: Any = {"type": "tool_result", "tool_use_id": call.id, "content": [found]}
    messages: Any = [
        *ASK_WEATHER,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [result]},
    ]
    answer = client.messages.create(model=model, max_tokens=256, messages=messages, tools=[WEATHER])
    assert "It rains in Paris." in answer.content[-1].text


def test_documents_the_gateway_cannot_translate_are_named(client: anthropic.Anthropic) -> None:
    source = {"type": "base64", "media_type": "application/pdf", "data": "JVBERg=="}
    cited: Any = {"type": "document", "source": source, "citations": {"enabled": True}}
    by_url: Any = {"type": "document", "source": {"type": "url", "url": "https://x/a.pdf"}}
    for block, param in ((cited, "citations"), (by_url, "source")):
        with pytest.raises(anthropic.BadRequestError) as caught:
            client.messages.create(
                model="claude", max_tokens=10, messages=[{"role": "user", "content": [block]}]
            )
        assert _error(caught.value)["message"].startswith(f"messages[0].content[0].{param}")


def _read_loop(results: list[str]) -> list[Any]:
    """A tool loop Claude Code might send: one read and its result each."""
    messages: list[Any] = [{"role": "user", "content": "Read the files."}]
    for n, result in enumerate(results):
        use = {
            "type": "tool_use",
            "id": f"toolu_{n}",
            "name": "get_weather",
            "input": {"city": "x"},
        }
        messages.append({"role": "assistant", "content": [use]})
        block = {"type": "tool_result", "tool_use_id": f"toolu_{n}", "content": result}
        messages.append({"role": "user", "content": [block]})
    return messages


# What Claude Code sends, and a clearing that acts at once.
CONTEXT_MANAGEMENT: Any = {
    "edits": [
        {"type": "clear_thinking_20251015", "keep": "all"},
        {
            "type": "clear_tool_uses_20250919",
            "trigger": {"type": "tool_uses", "value": 1},
            "keep": {"type": "tool_uses", "value": 1},
        },
    ]
}


def _edited_loop(client: anthropic.Anthropic, model: str) -> None:
    """A two-read loop with context editing asked; the answer reads the last result."""
    answer = client.beta.messages.create(
        model=model,
        max_tokens=256,
        messages=_read_loop(["old", "new"]),
        tools=[WEATHER],
        context_management=CONTEXT_MANAGEMENT,
        betas=["context-management-2025-06-27"],
    )
    assert _text(answer.content) == "Tool said: new"


def test_context_management_reaches_anthropic_as_sent(
    client: anthropic.Anthropic, upstream_requests: list[dict[str, Any]]
) -> None:
    _edited_loop(client, "claude")
    sent = upstream_requests[-1]["body"]
    assert sent["context_management"] == CONTEXT_MANAGEMENT  # Anthropic clears it itself
    assert sent["messages"][2]["content"][0]["content"] == "old"


def test_context_management_is_applied_for_other_upstreams(
    client: anthropic.Anthropic, azure_requests: list[dict[str, Any]]
) -> None:
    _edited_loop(client, "azure")
    sent = azure_requests[-1]["body"]
    assert "context_management" not in sent
    results = [m["content"] for m in sent["messages"] if m["role"] == "tool"]
    assert results == ["[This tool result was cleared to save context.]", "new"]


def test_a_malformed_context_edit_is_named(client: anthropic.Anthropic) -> None:
    edit = {"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": "x"}}
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.beta.messages.create(
            model="claude",
            max_tokens=10,
            messages=ASK_WEATHER,
            context_management={"edits": [edit]},  # type: ignore[list-item]
        )
    assert _error(caught.value)["message"].startswith("context_management.edits[0].trigger.value")


CITY: Any = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
    "required": ["name", "population"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("model", EVERY)
def test_output_config_format_answers_json_of_the_schema(
    client: anthropic.Anthropic, model: str, upstream_requests: list[dict[str, Any]]
) -> None:
    answer = client.messages.create(
        model=model,
        max_tokens=200,
        messages=[{"role": "user", "content": "Describe Paris."}],
        output_config={"format": {"type": "json_schema", "schema": CITY}, "effort": "low"},
    )
    parsed = orjson.loads(_text(answer.content))
    assert set(parsed) == {"name", "population"} and isinstance(parsed["population"], int)
    assert answer.stop_reason == "end_turn"
    if model == "claude":  # sent natively: no forced tool, effort kept
        sent = upstream_requests[-1]["body"]
        assert sent["output_config"] == {
            "effort": "low",
            "format": {"type": "json_schema", "schema": CITY},
        }
        assert "tools" not in sent and "tool_choice" not in sent


@pytest.mark.parametrize("model", ["claude", "azure", "sim"])
def test_serving_hints_reach_anthropic_upstreams_alone(
    client: anthropic.Anthropic, model: str, upstream_requests: list[dict[str, Any]]
) -> None:
    hints: Any = {
        "speed": "fast",
        "inference_geo": "us",
        "cache_control": {"type": "ephemeral"},
        "diagnostics": {"previous_message_id": "msg_1"},
    }
    before = len(upstream_requests)
    answer = client.messages.create(model=model, max_tokens=20, messages=ASK_WEATHER, **hints)
    assert _text(answer.content)
    if model == "claude":
        sent = upstream_requests[-1]["body"]
        assert {name: sent[name] for name in hints} == hints
    else:
        assert len(upstream_requests) == before  # the Anthropic fake was not called


@pytest.mark.parametrize("model", ["claude", "azure", "gemini"])
def test_a_tools_anthropic_fields_reach_anthropic_upstreams_alone(
    client: anthropic.Anthropic, model: str, upstream_requests: list[dict[str, Any]]
) -> None:
    extras: Any = {
        "strict": True,
        "input_examples": [{"city": "Paris"}],
        "defer_loading": False,
        "eager_input_streaming": True,
    }
    answer = client.messages.create(
        model=model, max_tokens=50, messages=ASK_WEATHER, tools=[{**WEATHER, **extras}]
    )
    assert [block.name for block in answer.content if block.type == "tool_use"] == ["get_weather"]
    if model == "claude":
        [tool] = upstream_requests[-1]["body"]["tools"]
        assert {name: tool[name] for name in extras} == extras


def test_blocks_sent_back_with_a_caller_and_a_toolset_are_read(
    client: anthropic.Anthropic,
) -> None:
    # Anthropic's answers may carry them; a client replays its answers' blocks.
    first = client.messages.create(
        model="azure", max_tokens=50, tools=[WEATHER], messages=ASK_WEATHER
    )
    [call] = _tool_uses(first.content)
    replayed: Any = {
        "type": "tool_use",
        "id": call.id,
        "name": call.name,
        "input": call.input,
        "caller": {"type": "direct"},
        "toolset_name": None,
    }
    result: Any = {
        "type": "tool_result",
        "tool_use_id": call.id,
        "content": "mild",
        "toolset_name": None,
    }
    turns = [
        *ASK_WEATHER,
        {"role": "assistant", "content": [replayed]},
        {"role": "user", "content": [result]},
    ]
    second = client.messages.create(model="azure", max_tokens=50, tools=[WEATHER], messages=turns)
    assert _text(second.content) == "Tool said: mild"


def test_the_clients_betas_reach_an_anthropic_upstream(
    client: anthropic.Anthropic, upstream_requests: list[dict[str, Any]]
) -> None:
    betas = "fast-mode-2026-02-01,context-1m-2025-08-07"
    client.messages.create(
        model="claude",
        max_tokens=20,
        messages=ASK_WEATHER,
        speed="fast",
        extra_headers={"anthropic-beta": betas},
    )
    sent = upstream_requests[-1]
    assert sent["headers"]["anthropic-beta"] == betas and sent["body"]["speed"] == "fast"
    client.messages.create(model="claude", max_tokens=20, messages=ASK_WEATHER)
    assert "anthropic-beta" not in upstream_requests[-1]["headers"]


def test_a_malformed_output_config_is_named(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="sim",
            max_tokens=10,
            messages=ASK_WEATHER,
            output_config={"effort": "extreme"},  # type: ignore[typeddict-item]
        )
    assert _error(caught.value)["message"].startswith("output_config.effort")


def test_a_stop_sequence_that_ended_the_answer_is_named(client: anthropic.Anthropic) -> None:
    story: Any = [{"role": "user", "content": "Tell me a story."}]
    full = _text(client.messages.create(model="sim", max_tokens=30, messages=story).content)
    stop = " " + full.split()[3]
    stopped = client.messages.create(
        model="sim", max_tokens=30, messages=story, stop_sequences=["never said", stop]
    )
    assert _text(stopped.content) == full[: full.find(stop)]
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", stop)
    with client.messages.stream(
        model="sim", max_tokens=30, messages=story, stop_sequences=[stop]
    ) as stream:
        streamed = stream.get_final_message()
    assert (streamed.stop_reason, streamed.stop_sequence) == ("stop_sequence", stop)


def test_count_tokens(client: anthropic.Anthropic) -> None:
    plain = client.messages.count_tokens(model="sim", messages=ASK_WEATHER)
    assert plain.input_tokens > 0
    with_tools = client.messages.count_tokens(
        model="claude", system="Be brief.", messages=ASK_WEATHER, tools=[WEATHER]
    )
    assert with_tools.input_tokens > plain.input_tokens
    server_tool: Any = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    with_search = client.messages.count_tokens(
        model="claude", system="Be brief.", messages=ASK_WEATHER, tools=[WEATHER, server_tool]
    )
    assert with_search.input_tokens > with_tools.input_tokens  # Anthropic's own tools count
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.count_tokens(model="no-such-model", messages=ASK_WEATHER)
    assert _error(caught.value)["type"] == "not_found_error"


def test_an_unknown_model_is_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="no-such-model", max_tokens=10, messages=ASK_WEATHER)
    assert caught.value.status_code == 404
    body: Any = caught.value.body
    assert body == {
        "type": "error",
        "error": {
            "type": "not_found_error",
            "message": "The model `no-such-model` does not exist or you do not have access to it.",
        },
    }


def test_models_list_and_retrieve_in_anthropics_shape(
    client: anthropic.Anthropic, gateway: GatewayProcess
) -> None:
    every = list(client.models.list())  # every page, 20 at a time
    names = [m.id for m in every]
    assert set(EVERY) <= set(names) and len(names) == len(set(names))
    assert all(m.type == "model" and m.display_name == m.id for m in every)
    assert all(m.created_at.tzinfo is not None for m in every)
    assert [m.created_at for m in every] == sorted((m.created_at for m in every), reverse=True)
    first = client.models.list(limit=2)
    assert [m.id for m in first.data] == names[:2] and first.has_more
    assert (first.first_id, first.last_id) == (names[0], names[1])
    rest = client.models.list(limit=2, after_id=names[1])
    assert [m.id for m in rest.data] == names[2:4]
    back = client.models.list(limit=2, before_id=names[3])
    assert [m.id for m in back.data] == names[1:3]
    one = client.models.retrieve("claude")
    assert (one.id, one.type) == ("claude", "model")
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    assert _error(caught.value)["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError):
        client.models.list(limit=0)
    # Without anthropic-version, the same path answers OpenAI's shape.
    openai_shape = httpx.get(
        gateway.base_url + "/v1/models", headers={"Authorization": f"Bearer {TEST_KEY}"}
    )
    assert openai_shape.json()["object"] == "list"
    assert {m["object"] for m in openai_shape.json()["data"]} == {"model"}


def test_a_bad_body_is_a_bad_request_naming_the_field(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="claude",
            max_tokens=10,
            messages=[{"role": "user", "content": MISSING_TEXT}],
        )
    error = _error(caught.value)
    assert error["type"] == "invalid_request_error"
    assert error["message"] == "messages[0].content[0].text: Field required"


def test_a_bad_key_is_an_authentication_error_before_the_body_is_read(
    gateway: GatewayProcess,
) -> None:
    with anthropic.Anthropic(base_url=gateway.base_url, api_key="sk-wrong", max_retries=0) as bad:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            bad.messages.create(model="claude", max_tokens=-1, messages=ASK_WEATHER)
    assert _error(caught.value)["type"] == "authentication_error"


def test_a_bearer_token_works_too(gateway: GatewayProcess) -> None:
    with anthropic.Anthropic(
        base_url=gateway.base_url, auth_token=TEST_KEY, max_retries=0
    ) as bearer:
        answer = bearer.messages.create(model="claude", max_tokens=10, messages=ASK_WEATHER)
    assert _text(answer.content) == "Hello from anthropic"


def test_an_upstream_overload_keeps_our_status_with_anthropics_type(
    client: anthropic.Anthropic,
) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(
            model="claude-busy",
            max_tokens=10,
            messages=[{"role": "user", "content": "overload me"}],
        )
    assert caught.value.status_code == 503
    assert _error(caught.value)["type"] == "overloaded_error"


def _sse(gateway: GatewayProcess, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The raw events of a streamed answer: ``(event, data)``, in order."""
    headers = {"x-api-key": TEST_KEY, "anthropic-version": "2023-06-01"}
    with httpx.stream(
        "POST", gateway.base_url + "/v1/messages", json=body, headers=headers, timeout=10
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = []
    for frame in raw.split("\n\n"):
        if frame:
            kind, data = frame.split("\n")
            assert kind.startswith("event: ") and data.startswith("data: ")
            events.append((kind.removeprefix("event: "), orjson.loads(data.removeprefix("data: "))))
    return events


def test_a_streamed_answer_is_exactly_the_documented_event_sequence(
    gateway: GatewayProcess,
) -> None:
    events = _sse(
        gateway,
        {
            "model": "claude",
            "max_tokens": 256,
            "stream": True,
            "messages": [{"role": "user", "content": "Hi"}],
        },
    )
    names = [kind for kind, _ in events]
    deltas = names.count("content_block_delta")
    assert deltas >= 2  # the fake streams its text in pieces
    assert names == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == kind for kind, data in events)
    start = events[0][1]["message"]
    assert start["content"] == [] and start["role"] == "assistant"
    assert start["stop_reason"] is None and "input_tokens" in start["usage"]
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    text = "".join(data["delta"]["text"] for kind, data in events if kind == "content_block_delta")
    assert text == "Hello from anthropic"
    assert events[-3][1] == {"type": "content_block_stop", "index": 0}
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] > 0
    assert events[-1][1] == {"type": "message_stop"}


def test_a_tool_call_streams_as_input_json_deltas(gateway: GatewayProcess) -> None:
    events = _sse(
        gateway,
        {
            "model": "azure",
            "max_tokens": 256,
            "stream": True,
            "tools": [WEATHER],
            "messages": ASK_WEATHER,
        },
    )
    blocks = [data for kind, data in events if kind == "content_block_start"]
    assert [b["content_block"]["type"] for b in blocks] == ["tool_use"]
    pieces = [
        data["delta"]["partial_json"] for kind, data in events if kind == "content_block_delta"
    ]
    assert len(pieces) >= 2 and orjson.loads("".join(pieces)) == {"city": "Paris"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_an_error_after_the_start_is_an_error_event(gateway: GatewayProcess) -> None:
    events = _sse(
        gateway,
        {
            "model": "cut",
            "max_tokens": 256,
            "stream": True,
            "messages": [{"role": "user", "content": "Tell me a long story."}],
        },
    )
    kind, data = events[-1]
    assert events[0][0] == "message_start"
    assert kind == "error" and data["type"] == "error"
    assert data["error"]["type"] == "api_error" and data["error"]["message"]
    assert "message_stop" not in [name for name, _ in events]
