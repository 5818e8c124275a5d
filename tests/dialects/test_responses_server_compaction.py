"""Server-side compaction (``context_management``) with the official ``openai``
SDK: a tool loop past its threshold is summarised by the model that serves
it before that model answers from the summary; the Response (and its
stream) starts with the ``compaction`` item; a chained conversation goes on
from it; below the threshold, or with nothing to shorten, nothing changes.
Against the Anthropic fake and an OpenAI-wire one (Azure), which record
what they were sent; and the summary call's own ledger row and metric."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from interlock.dialects.responses.compaction import COMPACTION_PROMPT
from interlock.dialects.responses.request import decode_summary
from tests.support.openai_clients import WEATHER, openai_client
from tests.support.provider_fleet import provider_gateway
from tests.support.servers import GatewayProcess
from tests.support.waiting import wait_for

ADMIN = "sk-admin-compaction"
COMPACT = [{"type": "compaction", "compact_threshold": 1}]  # any context is past it
NEVER = [{"type": "compaction", "compact_threshold": 10_000_000}]


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    anthropic_requests: list[dict[str, Any]],
    azure_requests: list[dict[str, Any]],
) -> Iterator[GatewayProcess]:
    with provider_gateway(
        tmp_path_factory.mktemp("gw"),
        anthropic_requests=anthropic_requests,
        azure_requests=azure_requests,
        keys=[{"name": "summarised", "key": "sk-summarised"}],
        sections={"server": {"admin_key": ADMIN}},
    ) as gateway:
        yield gateway


def _items(output: list[Any]) -> list[dict[str, Any]]:
    return [item.model_dump(exclude_none=True, warnings=False) for item in output]


def _tool_loop(client: openai.OpenAI, model: str) -> list[Any]:
    """A conversation whose last turn answers the model's tool call."""
    conversation: list[Any] = [
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": "What is the weather in Paris?"},
    ]
    first = client.responses.create(model=model, input=conversation, tools=[WEATHER])
    [call] = [item for item in first.output if item.type == "function_call"]
    return [
        *conversation,
        *_items(first.output),
        {"type": "function_call_output", "call_id": call.call_id, "output": "rain"},
    ]


def _text(message: dict[str, Any]) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content)


def test_a_tool_loop_past_the_threshold_is_summarised_before_the_answer(
    client: openai.OpenAI, anthropic_requests: list[dict[str, Any]]
) -> None:
    conversation = _tool_loop(client, "claude")
    before = len(anthropic_requests)
    response = client.responses.create(
        model="claude",
        input=conversation,
        instructions="You help travellers.",
        tools=[WEATHER],
        context_management=COMPACT,  # type: ignore[arg-type]
    )
    summary_call, answer_call = [entry["body"] for entry in anthropic_requests[before:]]
    # The summary: the whole loop as a transcript, no tools to call.
    assert "tools" not in summary_call and summary_call["system"] == "You help travellers."
    transcript = _text(summary_call["messages"][-1])
    assert transcript.endswith(COMPACTION_PROMPT) and "rain" in transcript
    # The answer: what compaction keeps (the developer's and the user's
    # messages, not the tool loop), then the summary; the tools still offered.
    sent = answer_call["messages"]
    assert "rain" not in json.dumps(sent) and answer_call["tools"][0]["name"] == "get_weather"
    assert "Answer in French." in answer_call["system"]
    # One user turn (Anthropic's adapter joins consecutive ones): the question, the summary.
    [turn] = sent
    question, summary = (block["text"] for block in turn["content"])
    assert question == "What is the weather in Paris?"
    assert "was compacted" in summary and summary.endswith("Hello from anthropic")

    compaction, answered = _items(response.output)
    assert compaction["type"] == "compaction" and compaction["id"].startswith("cmp_")
    assert decode_summary(compaction["encrypted_content"], "output") == "Hello from anthropic"
    # The fake calls a tool offered unless the last turn holds its result:
    # the result is in the summary now, and the model asks again.
    assert answered["type"] == "function_call" and answered["name"] == "get_weather"
    # The usage is the answer's, read from the compacted context.
    assert response.usage is not None and response.usage.input_tokens > 0


def test_a_streamed_response_opens_with_the_compaction_item(
    client: openai.OpenAI, azure_requests: list[dict[str, Any]]
) -> None:
    conversation = _tool_loop(client, "azure")
    before = len(azure_requests)
    with client.responses.stream(
        model="azure",
        input=conversation,
        tools=[WEATHER],
        context_management=COMPACT,  # type: ignore[arg-type]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert len(azure_requests) == before + 2  # the summary, then the answer
    # Without compaction the fake would answer the tool's result ("Tool said:
    # rain"); from the summary it calls the tool again.
    assert [item.type for item in final.output] == ["compaction", "function_call"]
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",
    ]
    assert events[0].response.output == []  # type: ignore[union-attr]
    added = events[2]
    assert added.output_index == 0 and added.item.type == "compaction"  # type: ignore[union-attr]
    opened = [e for e in events[4:] if e.type == "response.output_item.added"]
    assert [e.output_index for e in opened] == [1]  # type: ignore[union-attr]
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_below_the_threshold_or_with_nothing_to_shorten_nothing_is_compacted(
    client: openai.OpenAI, azure_requests: list[dict[str, Any]]
) -> None:
    conversation = _tool_loop(client, "azure")
    before = len(azure_requests)
    kept = client.responses.create(
        model="azure",
        input=conversation,
        tools=[WEATHER],
        context_management=NEVER,  # type: ignore[arg-type]
    )
    assert [item.type for item in kept.output] == ["message"]
    assert kept.output_text == "Tool said: rain" and len(azure_requests) == before + 1
    # User messages alone: a summary would not make them shorter.
    only_asked = client.responses.create(
        model="azure",
        input=[{"role": "user", "content": "One"}, {"role": "user", "content": "Two"}],
        context_management=COMPACT,  # type: ignore[arg-type]
    )
    assert [item.type for item in only_asked.output] == ["message"]
    assert len(azure_requests) == before + 2


def test_a_chained_conversation_goes_on_from_its_compaction(
    client: openai.OpenAI, azure_requests: list[dict[str, Any]]
) -> None:
    first = client.responses.create(model="azure", input="What is the weather?", tools=[WEATHER])
    [call] = [item for item in first.output if item.type == "function_call"]
    compacted = client.responses.create(
        model="azure",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rain"}],
        tools=[WEATHER],
        context_management=COMPACT,  # type: ignore[arg-type]
    )
    compaction, again = compacted.output
    assert compaction.type == "compaction" and again.type == "function_call"
    answer = {"type": "function_call_output", "call_id": again.call_id, "output": "sunny"}
    before = len(azure_requests)
    following = client.responses.create(
        model="azure", previous_response_id=compacted.id, input=[answer], tools=[WEATHER]
    )
    assert following.output_text == "Tool said: sunny" and len(azure_requests) == before + 1
    # What came before the compaction is read as the summary, not again.
    sent = azure_requests[-1]["body"]["messages"]
    assert [message["role"] for message in sent] == ["user", "user", "assistant", "tool"]
    assert "was compacted" in sent[1]["content"] and "rain" not in json.dumps(sent)
    # A client chaining its input itself gets the same, pruned or not.
    whole = [
        *_items(client.responses.input_items.list(compacted.id, order="asc").data),
        *_items(compacted.output),
        answer,
    ]
    client.responses.create(model="azure", input=whole, tools=[WEATHER], store=False)
    assert azure_requests[-1]["body"]["messages"] == sent


def test_the_summary_call_has_its_own_ledger_row_and_metric(gateway: GatewayProcess) -> None:
    with openai_client(gateway, "sk-summarised") as client:
        conversation = _tool_loop(client, "azure")
        client.responses.create(
            model="azure",
            input=conversation,
            tools=[WEATHER],
            context_management=COMPACT,  # type: ignore[arg-type]
        )
    admin = {"authorization": f"Bearer {ADMIN}"}

    def counted() -> dict[str, Any] | None:
        rows = httpx.get(gateway.base_url + "/admin/usage?key=summarised", headers=admin)
        data = rows.json()["data"]
        return data[0] if data and data[0]["requests"] == 3 else None

    row = wait_for(counted, what="three ledger rows: the tool call, the summary, the answer")
    assert row["prompt_tokens"] > 0
    metrics = httpx.get(gateway.base_url + "/metrics", headers=admin).text
    assert any(
        line.startswith("interlock_requests_total{")
        and 'route="/v1/responses/compact"' in line
        and 'model="azure"' in line
        for line in metrics.splitlines()
    )


@pytest.mark.parametrize(
    ("management", "param"),
    [
        ([{"type": "truncation"}], "context_management[0].type"),
        (
            [{"type": "compaction", "compact_threshold": 0}],
            "context_management[0].compact_threshold",
        ),
        ([{"type": "compaction"}, {"type": "compaction"}], "context_management"),
    ],
)
def test_bad_context_management_is_refused_naming_the_field(
    client: openai.OpenAI, management: list[dict[str, Any]], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="azure",
            input="Hi",
            context_management=management,  # type: ignore[arg-type]
        )
    assert caught.value.body["param"] == param  # type: ignore[index]


TRIGGER = {"type": "compaction_trigger"}


def test_a_trigger_compacts_now_and_answers_the_compaction_alone(
    client: openai.OpenAI, anthropic_requests: list[dict[str, Any]]
) -> None:
    # Codex's remote compaction: a stored conversation, then only the trigger.
    first = client.responses.create(
        model="claude", input=_tool_loop(client, "claude"), tools=[WEATHER]
    )
    before = len(anthropic_requests)
    compacted = client.responses.create(
        model="claude",
        previous_response_id=first.id,
        input=[TRIGGER],  # type: ignore[list-item]
    )
    [summary_call] = [entry["body"] for entry in anthropic_requests[before:]]
    transcript = _text(summary_call["messages"][-1])
    assert transcript.endswith(COMPACTION_PROMPT) and "rain" in transcript
    [compaction] = _items(compacted.output)  # exactly one compaction item, and no answer
    assert compaction["type"] == "compaction" and compacted.status == "completed"
    assert compacted.usage is not None and compacted.usage.output_tokens > 0
    # The trigger is a signal: the stored response holds no input of its own.
    assert client.responses.input_items.list(compacted.id, order="asc").data[-1].type != (
        "compaction_trigger"
    )
    following = client.responses.create(
        model="claude", previous_response_id=compacted.id, input="Go on"
    )
    assert following.output_text == "Hello from anthropic"
    sent = json.dumps(anthropic_requests[-1]["body"]["messages"])
    assert "was compacted" in sent and "rain" not in sent


def test_a_streamed_trigger_writes_the_compaction_and_completes(client: openai.OpenAI) -> None:
    loop = _tool_loop(client, "azure")
    with client.responses.stream(model="azure", input=[*loop, TRIGGER]) as stream:  # type: ignore[list-item]
        events = list(stream)
        final = stream.get_final_response()
    assert [event.type for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(5))
    assert [item.type for item in final.output] == ["compaction"]
    stored = client.responses.retrieve(final.id)
    assert stored.model_dump() == final.model_dump()


def test_a_trigger_anywhere_but_last_or_in_the_background_is_refused(
    client: openai.OpenAI, gateway: GatewayProcess
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="azure", input=[TRIGGER, {"role": "user", "content": "Hi"}])  # type: ignore[list-item]
    assert caught.value.body["param"] == "input[0]"  # type: ignore[index]
    assert "must be the final input item" in caught.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="azure",
            input=[{"role": "user", "content": "Hi"}, TRIGGER],  # type: ignore[list-item]
            background=True,
        )
    assert caught.value.body["param"] == "background"  # type: ignore[index]
    # /v1/responses/compact and the token count read the conversation before it.
    conversation: list[Any] = [{"role": "user", "content": "Hi"}, TRIGGER]
    short = client.responses.compact(model="azure", input=conversation)
    assert [item.type for item in short.output] == ["message", "compaction"]
    counted = client.responses.input_tokens.count(model="azure", input=conversation)
    assert counted.input_tokens > 0
