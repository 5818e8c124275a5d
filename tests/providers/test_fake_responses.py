"""The fake Responses API upstream (``tests/support/fake_responses.py``)
speaks what the official ``openai`` SDK reads: unary and streamed answers,
tool loops, reasoning items sent back, and the 400s that catch an adapter
sending Chat Completions fields to it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import FunctionToolParam

from tests.support.fake_responses import RESPONSES_MODEL, responses_app
from tests.support.servers import FakeUpstream


def function_tool(name: str) -> FunctionToolParam:
    return {
        "type": "function",
        "name": name,
        "description": "Look something up.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
        "strict": None,
    }


LOOKUP = function_tool("lookup")


@pytest.fixture(scope="module")
def seen() -> list[dict[str, Any]]:
    return []


@pytest.fixture(scope="module")
def upstream(seen: list[dict[str, Any]]) -> Iterator[FakeUpstream]:
    with FakeUpstream(responses_app(seen)) as upstream:
        yield upstream


@pytest.fixture
def client(upstream: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{upstream.url}/v1", api_key="sk-test", max_retries=0) as client:
        yield client


def refusal(error: openai.APIStatusError) -> dict[str, Any]:
    body = error.response.json()
    assert isinstance(body, dict)
    return dict(body["error"])


def test_a_text_answer(client: openai.OpenAI, seen: list[dict[str, Any]]) -> None:
    response = client.responses.create(model=RESPONSES_MODEL, input="hello there")

    assert response.status == "completed"
    assert response.output_text == "You said: hello there."
    assert response.model == RESPONSES_MODEL
    assert response.id.startswith("resp_")
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (2, 4)
    assert response.usage.total_tokens == 6
    assert seen[-1]["path"] == "/v1/responses"
    assert seen[-1]["authorization"] == "Bearer sk-test"
    assert seen[-1]["body"] == {"model": RESPONSES_MODEL, "input": "hello there"}


def test_a_function_call_then_its_output(client: openai.OpenAI) -> None:
    first = client.responses.create(model=RESPONSES_MODEL, input="find cats", tools=[LOOKUP])
    (call,) = first.output
    assert call.type == "function_call"
    assert call.name == "lookup"
    assert json.loads(call.arguments) == {"query": "find cats"}

    second = client.responses.create(
        model=RESPONSES_MODEL,
        input=[
            {"role": "user", "content": "find cats"},
            call.to_dict(),  # type: ignore[list-item]
            {"type": "function_call_output", "call_id": call.call_id, "output": "two cats"},
        ],
        tools=[LOOKUP],
    )
    assert second.output_text == "The tool said: two cats."


def test_two_function_tools_are_called_in_parallel(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=RESPONSES_MODEL, input="find cats", tools=[LOOKUP, function_tool("search")]
    )
    assert [item.type for item in response.output] == ["function_call", "function_call"]
    assert [item.name for item in response.output] == ["lookup", "search"]  # type: ignore[union-attr]
    assert len({item.call_id for item in response.output}) == 2  # type: ignore[union-attr]


def test_a_streamed_answer(client: openai.OpenAI) -> None:
    with client.responses.stream(model=RESPONSES_MODEL, input="stream this please") as stream:
        events = list(stream)
        final = stream.get_final_response()

    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["You", " said:", " stream", " this", " please."]
    assert "".join(deltas) == final.output_text == "You said: stream this please."
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events if "delta" not in e.type] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]


def test_a_streamed_function_call(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model=RESPONSES_MODEL,
        input="find dogs",
        tools=[LOOKUP],
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()

    pieces = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(pieces) == 2
    (call,) = final.output
    assert call.type == "function_call"
    assert "".join(pieces) == call.arguments == json.dumps({"query": "find dogs"})


def test_reasoning_sent_back_is_verified(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model=RESPONSES_MODEL,
        input="think hard",
        reasoning={"effort": "low", "summary": "auto"},
        include=["reasoning.encrypted_content"],
    )
    reasoning, message = first.output
    assert reasoning.type == "reasoning"
    assert [s.text for s in reasoning.summary] == ["Thinking about think."]
    assert reasoning.encrypted_content
    assert first.usage is not None
    assert first.usage.output_tokens_details.reasoning_tokens == 8
    history: list[Any] = [
        {"role": "user", "content": "think hard"},
        reasoning.to_dict(),
        message.to_dict(),
        {"role": "user", "content": "and again"},
    ]

    again = client.responses.create(model=RESPONSES_MODEL, input=history)
    assert again.output_text == "You said: and again."

    history[1] = {**history[1], "encrypted_content": "enc-forged"}
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=RESPONSES_MODEL, input=history)
    assert refused.value.status_code == 400
    assert refusal(refused.value)["message"] == (
        f"The encrypted content for item {reasoning.id} could not be verified."
    )


def test_chat_shapes_are_refused(client: openai.OpenAI) -> None:
    nested: list[Any] = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    with pytest.raises(openai.BadRequestError) as tool_shape:
        client.responses.create(model=RESPONSES_MODEL, input="hi", tools=nested)
    assert refusal(tool_shape.value) == {
        "message": "Missing required parameter: 'tools[0].name'.",
        "type": "invalid_request_error",
        "param": "tools[0].name",
        "code": "missing_required_parameter",
    }

    with pytest.raises(openai.BadRequestError) as max_tokens:
        client.responses.create(model=RESPONSES_MODEL, input="hi", extra_body={"max_tokens": 5})
    assert refusal(max_tokens.value) == {
        "message": "Unknown parameter: 'max_tokens'.",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "unknown_parameter",
    }


def test_the_chat_route_is_not_found(client: openai.OpenAI, seen: list[dict[str, Any]]) -> None:
    with pytest.raises(openai.NotFoundError) as refused:
        client.chat.completions.create(
            model=RESPONSES_MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert refusal(refused.value)["message"] == (
        "This model is only supported in v1/responses and not in v1/chat/completions."
    )
    assert seen[-1]["path"] == "/v1/chat/completions"


def test_max_output_tokens_cuts_the_answer(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=RESPONSES_MODEL, input="one two three four", max_output_tokens=3
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "You said: one"
    assert response.usage is not None
    assert response.usage.output_tokens == 3


def test_fail_me_streamed_fails_the_response(client: openai.OpenAI) -> None:
    with client.responses.create(model=RESPONSES_MODEL, input="fail me", stream=True) as stream:
        events = list(stream)

    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.failed",
    ]
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert failed.response.error is not None
    assert failed.response.error.code == "server_error"

    with pytest.raises(openai.InternalServerError):
        client.responses.create(model=RESPONSES_MODEL, input="fail me")


def test_cut_me_streamed_drops_the_connection(client: openai.OpenAI) -> None:
    deltas = []
    with pytest.raises((httpx.RemoteProtocolError, openai.APIConnectionError)):
        with client.responses.create(model=RESPONSES_MODEL, input="cut me", stream=True) as stream:
            for event in stream:
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
    assert deltas == ["You", " said:"]
