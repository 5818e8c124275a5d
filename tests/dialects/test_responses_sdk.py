"""The Responses API through the gateway, driven by the official ``openai``
SDK unchanged: create, stream, tool loops (plain and streamed) over two
upstreams, ``previous_response_id``, structured output, reading back and
deleting stored responses, counting input tokens, what cancelling gets (no
background responses run here), and what another key or ``store: false`` gets.

One gateway process serves every test: the simulator, and models in front
of the Anthropic and Azure fakes (``tests/support``), whose answers follow
the shared contract (call the first tool, "Tool said: ..." after results,
JSON from the schema).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai.types.responses import CustomToolParam
from openai.types.shared_params import Reasoning
from pydantic import BaseModel

from tests.conftest import TEST_KEY
from tests.support.fake_azure import CUSTOM_INPUT
from tests.support.openai_clients import WEATHER, openai_client
from tests.support.provider_fleet import provider_gateway
from tests.support.servers import GatewayProcess

OTHER_KEY = "sk-other-responses"
LOW: Reasoning = {"effort": "low"}
# Every provider: the simulator and the Anthropic, Azure, Gemini and Bedrock fakes.
TOOL_LOOP = ["sim", "claude", "azure", "gemini", "bedrock"]
# A custom (freeform) tool, as Codex's apply_patch.
PATCH: CustomToolParam = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files with a patch.",
    "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch" /.+/'},
}
# Each provider is sent it as a function of one string (the fakes answer
# "Paris" for a string); ``azure-native`` as it is, as OpenAI is.
CUSTOM = [*((model, "Paris") for model in TOOL_LOOP), ("azure-native", CUSTOM_INPUT)]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    # Streams of "cut" break after 3 tokens: the error event after the start.
    cut = {"provider": "simulator", "params": {"cut_after_tokens": 3}}
    native = {"provider": "azure", "model": "gpt-5", "api_key": "test", "custom_tools": "native"}
    with provider_gateway(
        tmp_path_factory.mktemp("gw"),
        more_models={"cut": cut, "azure-native": native},
        keys=[{"name": "other", "key": OTHER_KEY}],
    ) as gateway:
        yield gateway


@pytest.mark.parametrize(
    ("model", "text"), [("claude", "Hello from anthropic"), ("azure", "Hello from azure")]
)
def test_create_answers_text_with_instructions(
    client: openai.OpenAI, model: str, text: str
) -> None:
    response = client.responses.create(model=model, input="Hi", instructions="Be brief.")
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.error is None
    assert response.output_text == text
    assert response.instructions == "Be brief."
    assert response.usage is not None and response.usage.total_tokens > 0
    assert response.output[0].type == "message"


def test_create_on_the_simulator(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="sim", input=[{"role": "user", "content": "Hi"}], metadata={"run": "1"}
    )
    assert response.output_text and response.model == "sim"
    assert response.metadata == {"run": "1"}


def test_stream_text_deltas_add_up_to_the_final_response(client: openai.OpenAI) -> None:
    with client.responses.stream(model="claude", input="Hi") as stream:
        events = list(stream)
        final = stream.get_final_response()
    numbers = [event.sequence_number for event in events]
    assert numbers == sorted(set(numbers))  # strictly increasing
    assert [e.type for e in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1].type == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == "Hello from anthropic"
    assert final.usage is not None and final.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["claude", "azure"])
def test_input_image_data_url(client: openai.OpenAI, model: str) -> None:
    image = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(24)).decode()
    response = client.responses.create(
        model=model,
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {
                        "type": "input_image",
                        "image_url": f"data:image/png;base64,{image}",
                        "detail": "auto",
                    },
                ],
            }
        ],
    )
    assert response.output_text == "I see a image/png image of 32 bytes"


@pytest.mark.parametrize("model", ["claude", "azure", "gemini", "bedrock"])
def test_input_file_data_url(client: openai.OpenAI, model: str) -> None:
    pdf = b"%PDF-1.4\n%%EOF\n"
    response = client.responses.create(
        model=model,
        input=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_file",
                        "filename": "notes.pdf",
                        "file_data": "data:application/pdf;base64,"
                        + base64.b64encode(pdf).decode(),
                    },
                    {"type": "input_text", "text": "Summarise it."},
                ],
            }
        ],
    )
    assert response.output_text == f"I read a application/pdf document of {len(pdf)} bytes"
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model=model,
            input=[
                {
                    "role": "user",
                    "content": [{"type": "input_file", "file_url": "https://x.example/a.pdf"}],
                }
            ],
        )
    assert caught.value.body["param"] == "input[0].content[0].file_url"  # type: ignore[index]


@pytest.mark.parametrize("model", TOOL_LOOP)
def test_tool_loop_with_function_call_items(client: openai.OpenAI, model: str) -> None:
    conversation: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.responses.create(model=model, input=conversation, tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert [call.name for call in calls] == ["get_weather"]
    assert json.loads(calls[0].arguments)["city"]
    conversation += first.output  # as agents do: the output items are the next input
    conversation += [
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"}
    ]
    second = client.responses.create(model=model, input=conversation, tools=[WEATHER])
    assert second.output_text == "Tool said: sunny"


@pytest.mark.parametrize("model", TOOL_LOOP)
def test_streamed_tool_loop(client: openai.OpenAI, model: str) -> None:
    conversation: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    with client.responses.stream(model=model, input=conversation, tools=[WEATHER]) as stream:
        pieces = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        first = stream.get_final_response()
    [call] = [item for item in first.output if item.type == "function_call"]
    assert "".join(pieces) == call.arguments and json.loads(call.arguments)["city"]
    conversation += [item.model_dump(exclude_none=True) for item in first.output]
    conversation += [{"type": "function_call_output", "call_id": call.call_id, "output": "rain"}]
    with client.responses.stream(model=model, input=conversation, tools=[WEATHER]) as stream:
        second = stream.get_final_response()
    assert second.output_text == "Tool said: rain"


@pytest.mark.parametrize("model", ["claude", "azure"])
def test_a_codex_request_with_hosted_web_search_is_answered(
    client: openai.OpenAI, model: str
) -> None:
    """Codex offers web_search with every request; the call goes on without it."""
    tools: Any = [{"type": "web_search", "external_web_access": False}, WEATHER, PATCH]
    response = client.responses.create(
        model=model,
        input="What is the weather in Paris?",
        tools=tools,
        tool_choice="auto",
        parallel_tool_calls=False,
        store=False,
    )
    assert [item.type for item in response.output] == ["function_call"]
    assert [tool.type for tool in response.tools] == ["web_search", "function", "custom"]


@pytest.mark.parametrize("model", TOOL_LOOP)
def test_a_codex_shaped_stream_is_answered_by_every_provider(
    client: openai.OpenAI, model: str
) -> None:
    """What Codex sends with every turn: hosted web search, a shell function and
    a freeform apply_patch, one call a turn, reasoning and verbosity, not stored."""
    shell = {
        "type": "function",
        "name": "shell",
        "description": "Run a command.",
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "string"}},
            "required": ["command"],
        },
        "strict": False,
    }
    tools: Any = [shell, PATCH, {"type": "web_search", "external_web_access": False}]
    with client.responses.stream(
        model=model,
        instructions="You are a coding agent.",
        input=[
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "ls"}]}
        ],
        tools=tools,
        tool_choice="auto",
        parallel_tool_calls=False,
        reasoning={"effort": "medium", "summary": "auto"},
        text={"verbosity": "medium"},
        include=["reasoning.encrypted_content"],
        prompt_cache_key="session-1",
        store=False,
    ) as stream:
        response = stream.get_final_response()
    calls = [item for item in response.output if item.type == "function_call"]
    assert [call.name for call in calls] == ["shell"]


CRM: Any = {
    "type": "namespace",
    "name": "crm",
    "description": "The customer database.",
    "tools": [
        {
            "type": "function",
            "name": "lookup",
            "description": "Find a customer.",
            "parameters": {"type": "object", "properties": {"email": {"type": "string"}}},
        }
    ],
}


@pytest.mark.parametrize("model", ["sim", "claude", "azure"])
@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_a_namespace_tool_loop(client: openai.OpenAI, model: str, stream: bool) -> None:
    """Codex groups an MCP server's tools in a namespace; a call names the
    tool and its namespace, and goes back the same way."""
    asked: Any = {"model": model, "input": [{"role": "user", "content": "Who is ada?"}]}
    if stream:
        with client.responses.stream(**asked, tools=[CRM]) as events:
            added = [e.item for e in events if e.type == "response.output_item.added"]
            first = events.get_final_response()
        assert [(i.name, i.namespace) for i in added if i.type == "function_call"] == [
            ("lookup", "crm")
        ]
    else:
        first = client.responses.create(**asked, tools=[CRM])
    [call] = [item for item in first.output if item.type == "function_call"]
    assert (call.name, call.namespace) == ("lookup", "crm")
    follow = [
        *asked["input"],
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "a customer"},
    ]
    second = client.responses.create(model=model, input=follow, tools=[CRM])
    assert second.output_text == "Tool said: a customer"


@pytest.mark.parametrize("model", ["claude", "gemini"])
def test_allowed_tools_narrow_what_the_model_may_call(client: openai.OpenAI, model: str) -> None:
    allowed: Any = {
        "type": "allowed_tools",
        "mode": "required",
        "tools": [{"type": "function", "name": "lookup", "namespace": "crm"}],
    }
    response = client.responses.create(
        model=model,
        input="What is the weather in Paris?",
        tools=[WEATHER, CRM],
        tool_choice=allowed,
    )
    [call] = [item for item in response.output if item.type == "function_call"]
    assert (call.name, call.namespace) == ("lookup", "crm")  # not the first tool, the allowed one
    assert response.tool_choice.type == "allowed_tools"


@pytest.mark.parametrize(("model", "expected"), CUSTOM)
def test_custom_tool_loop(client: openai.OpenAI, model: str, expected: str) -> None:
    conversation: list[Any] = [{"role": "user", "content": "Add a.py"}]
    first = client.responses.create(model=model, input=conversation, tools=[PATCH])
    [call] = first.output
    assert call.type == "custom_tool_call" and call.id and call.id.startswith("ctc_")
    assert (call.name, call.input) == ("apply_patch", expected)
    assert first.tools[0].type == "custom"
    conversation += first.output
    conversation += [{"type": "custom_tool_call_output", "call_id": call.call_id, "output": "ok"}]
    second = client.responses.create(model=model, input=conversation, tools=[PATCH])
    assert second.output_text == "Tool said: ok"


@pytest.mark.parametrize(("model", "expected"), CUSTOM)
def test_streamed_custom_tool_loop_continued_by_id(
    client: openai.OpenAI, model: str, expected: str
) -> None:
    with client.responses.stream(
        model=model,
        input="Add a.py",
        tools=[PATCH],
        tool_choice={"type": "custom", "name": "apply_patch"},
    ) as stream:
        events = list(stream)
        first = stream.get_final_response()
    [call] = first.output
    assert call.type == "custom_tool_call" and call.input == expected
    deltas = [e for e in events if e.type == "response.custom_tool_call_input.delta"]
    [done] = [e for e in events if e.type == "response.custom_tool_call_input.done"]
    assert "".join(e.delta for e in deltas) == done.input == expected
    assert {e.item_id for e in [*deltas, done]} == {call.id}
    # The stored response holds the call: the output alone continues it.
    output = {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "ok"}
    with client.responses.stream(
        model=model, input=[output], tools=[PATCH], previous_response_id=first.id
    ) as stream:
        second = stream.get_final_response()
    assert second.output_text == "Tool said: ok"


def test_previous_response_id_continues_the_conversation(client: openai.OpenAI) -> None:
    # The Anthropic fake checks that a tool result answers the previous
    # turn's tool_use: only the stored conversation can supply that turn.
    first = client.responses.create(
        model="claude", input="What is the weather in Paris?", tools=[WEATHER]
    )
    [call] = [item for item in first.output if item.type == "function_call"]
    second = client.responses.create(
        model="claude",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "warm"}],
        tools=[WEATHER],
    )
    assert second.output_text == "Tool said: warm"
    assert second.previous_response_id == first.id
    third = client.responses.create(model="claude", previous_response_id=second.id, input="Thanks")
    assert third.output_text == "Hello from anthropic"
    items = list(client.responses.input_items.list(third.id, order="asc"))
    assert [item.type for item in items] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
        "message",
    ]


def test_reasoning_round_trips_signed_thinking_in_a_tool_loop(client: openai.OpenAI) -> None:
    # With thinking on, the fake refuses a tool loop whose assistant turn
    # does not start with the signed thinking block it gave.
    conversation: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.responses.create(
        model="claude", input=conversation, tools=[WEATHER], reasoning=LOW
    )
    assert [item.type for item in first.output] == ["reasoning", "function_call"]
    reasoning = first.output[0]
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    assert reasoning.summary[0].text == "Let me think."
    call = first.output[1]
    assert call.type == "function_call"
    conversation += first.output
    conversation += [{"type": "function_call_output", "call_id": call.call_id, "output": "mild"}]
    second = client.responses.create(
        model="claude", input=conversation, tools=[WEATHER], reasoning=LOW
    )
    assert second.output_text == "Tool said: mild"


class City(BaseModel):
    name: str
    population: int


@pytest.mark.parametrize("model", ["sim", "azure"])
def test_text_format_json_schema(client: openai.OpenAI, model: str) -> None:
    parsed = client.responses.parse(model=model, input="A city, please.", text_format=City)
    assert parsed.output_parsed == City(name="Paris", population=3)
    response = client.responses.create(
        model=model,
        input="A city, please.",
        text={
            "format": {
                "type": "json_schema",
                "name": "city",
                "schema": City.model_json_schema(),
                "strict": True,
            }
        },
    )
    assert json.loads(response.output_text) == {"name": "Paris", "population": 3}
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"


def test_logprobs_asked_with_include_come_in_the_text_and_each_delta(
    client: openai.OpenAI,
) -> None:
    asked: dict[str, Any] = {
        "model": "sim",
        "input": "Hi",
        "include": ["message.output_text.logprobs"],
        "top_logprobs": 2,
    }
    created = client.responses.create(**asked)
    [part] = [c for item in created.output if item.type == "message" for c in item.content]
    assert part.type == "output_text" and part.logprobs
    assert "".join(t.token for t in part.logprobs) == part.text
    assert all(len(t.top_logprobs) == 2 for t in part.logprobs)
    assert created.top_logprobs == 2  # echoed, as every other setting is
    with client.responses.stream(**asked) as stream:
        events = list(stream)
        final = stream.get_final_response()
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert [t.token for e in deltas for t in e.logprobs] == [t.token for t in part.logprobs]
    assert all(len(e.logprobs) == 1 and e.logprobs[0].token == e.delta for e in deltas)
    [done] = [e for e in events if e.type == "response.output_text.done"]
    [streamed] = [c for item in final.output if item.type == "message" for c in item.content]
    assert streamed.type == "output_text"
    assert streamed.logprobs
    assert [t.model_dump() for t in done.logprobs] == [t.model_dump() for t in streamed.logprobs]
    assert [t.token for t in streamed.logprobs] == [t.token for t in part.logprobs]
    assert final.top_logprobs == 2 and client.responses.retrieve(created.id).top_logprobs == 2
    unasked = client.responses.create(model="sim", input="Hi")
    assert unasked.top_logprobs is None
    assert all(
        c.logprobs == [] for item in unasked.output if item.type == "message" for c in item.content
    )


def test_a_parameter_the_deployment_cannot_honour_is_named_as_the_client_sent_it(
    client: openai.OpenAI,
) -> None:
    # Anthropic reports no logprobs: the refusal names `include`, what this
    # client sent, not the chat body's `logprobs`.
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(
            model="claude", input="Hi", include=["message.output_text.logprobs"]
        )
    assert refused.value.code == "unsupported_parameter"
    assert refused.value.param == "include"


def test_max_output_tokens_cut_is_incomplete(client: openai.OpenAI) -> None:
    response = client.responses.create(model="sim", input="Tell me a story.", max_output_tokens=2)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


def test_get_returns_the_stored_response_and_delete_removes_it(client: openai.OpenAI) -> None:
    created = client.responses.create(model="sim", input="Hi")
    assert client.responses.retrieve(created.id).model_dump() == created.model_dump()
    with client.responses.stream(model="sim", input="Hi") as stream:
        streamed = stream.get_final_response()
    # Stored before response.completed went out: readable at once.
    assert client.responses.retrieve(streamed.id).output_text == streamed.output_text
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)


def test_input_tokens_count_what_the_model_reads(client: openai.OpenAI) -> None:
    asked: dict[str, Any] = {
        "model": "sim",
        "input": [{"role": "user", "content": "What is the weather in Paris?"}],
        "instructions": "Be brief.",
    }
    first = client.responses.create(**asked)
    counted = client.responses.input_tokens.count(**asked)
    assert counted.object == "response.input_tokens"
    # The simulator counts its prompt with the gateway's tokenizer: the same figure.
    assert first.usage is not None and counted.input_tokens == first.usage.input_tokens
    follow: dict[str, Any] = {
        "model": "sim",
        "input": "And tomorrow?",
        "previous_response_id": first.id,
    }
    follow_count = client.responses.input_tokens.count(**follow).input_tokens
    second = client.responses.create(**follow)
    assert second.usage is not None and follow_count == second.usage.input_tokens
    assert follow_count > counted.input_tokens  # the stored conversation is read too
    with_tools = client.responses.input_tokens.count(**asked, tools=[WEATHER])
    assert with_tools.input_tokens > counted.input_tokens
    with pytest.raises(openai.NotFoundError):
        client.responses.input_tokens.count(model="no-such-model", input="Hi")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.input_tokens.count(
            model="sim", input="Hi", tools=[{"type": "computer_use_preview"}]
        )
    assert caught.value.body["param"] == "tools[0].type"  # type: ignore[index]


def test_cancel_and_streamed_retrieval_say_no_background_response_runs_here(
    client: openai.OpenAI,
) -> None:
    created = client.responses.create(model="sim", input="Hi")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.cancel(created.id)
    assert "background" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.retrieve(created.id, stream=True)
    assert caught.value.body["param"] == "stream"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_unknown")
    assert client.responses.retrieve(created.id).status == "completed"  # left as it was


def test_another_key_cannot_read_delete_or_continue_a_response(
    client: openai.OpenAI, gateway: GatewayProcess
) -> None:
    created = client.responses.create(model="sim", input="A secret")
    with openai_client(gateway, OTHER_KEY) as other:
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.delete(created.id)
        with pytest.raises(openai.NotFoundError) as caught:
            other.responses.create(model="sim", input="Go on", previous_response_id=created.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.cancel(created.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.input_tokens.count(
                model="sim", input="Go on", previous_response_id=created.id
            )
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert client.responses.retrieve(created.id).id == created.id  # still there


def test_store_false_is_not_retrievable(client: openai.OpenAI) -> None:
    response = client.responses.create(model="sim", input="Hi", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_errors_keep_openai_shape(client: openai.OpenAI, gateway: GatewayProcess) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="sim", input="Hi", tools=[{"type": "computer_use_preview"}])
    assert caught.value.body["param"] == "tools[0].type"  # type: ignore[index]
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    with openai_client(gateway, "sk-wrong") as stranger:
        with pytest.raises(openai.AuthenticationError):
            stranger.responses.retrieve("resp_x")
        with pytest.raises(openai.AuthenticationError):  # a bad key before a bad body
            stranger.responses.create(
                model="sim", input="Hi", tools=[{"type": "computer_use_preview"}]
            )
    answer = httpx.get(gateway.base_url + "/v1/responses/resp_x/nothing", headers=_auth())
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"


def test_a_stream_failing_after_it_started_ends_with_an_error_event(
    gateway: GatewayProcess,
) -> None:
    body = {"model": "cut", "input": "Tell me a long story.", "stream": True}
    with httpx.stream(
        "POST", gateway.base_url + "/v1/responses", json=body, headers=_auth()
    ) as answer:
        assert answer.status_code == 200
        raw = answer.read().decode()
    events = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]
    names = [line[7:] for line in raw.splitlines() if line.startswith("event: ")]
    assert names == [event["type"] for event in events]
    assert events[-1]["type"] == "error" and events[-1]["message"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "[DONE]" not in raw


def _auth() -> dict[str, str]:
    return {"authorization": f"Bearer {TEST_KEY}"}
