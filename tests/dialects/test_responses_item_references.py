"""``item_reference`` input items with the official ``openai`` SDK, sent as
the AI SDK sends them with ``store`` on: an earlier turn's output items by
id, unary and streamed, read back as the items themselves on an OpenAI-wire
upstream (the Azure fake, which records what it was sent); and the 404s for
what the key cannot read, as OpenAI answers them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from interlock.dialects.responses.answer import item_id, item_source, new_id
from tests.support.openai_clients import WEATHER, openai_client
from tests.support.provider_fleet import provider_gateway
from tests.support.servers import GatewayProcess

OTHER_KEY = "sk-other-references"
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, azure_requests: list[dict[str, Any]]
) -> Iterator[GatewayProcess]:
    with provider_gateway(
        tmp_path_factory.mktemp("gw"),
        azure_requests=azure_requests,
        keys=[{"name": "other", "key": OTHER_KEY}],
    ) as gateway:
        yield gateway


def _reference(item_id: str) -> dict[str, Any]:
    return {"type": "item_reference", "id": item_id}


def _answered(call: Any) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call.call_id, "output": "rain"}


def test_a_tool_loop_by_reference_reads_the_stored_call(
    client: openai.OpenAI, azure_requests: list[dict[str, Any]]
) -> None:
    first = client.responses.create(model="azure", input=[QUESTION], tools=[WEATHER])
    [call] = first.output
    assert call.type == "function_call"
    second = client.responses.create(
        model="azure",
        input=[QUESTION, _reference(call.id), _answered(call)],  # type: ignore[list-item]
        tools=[WEATHER],
    )
    assert second.output_text == "Tool said: rain"
    sent = azure_requests[-1]["body"]["messages"]
    assert [message["role"] for message in sent] == ["user", "assistant", "tool"]
    [tool_call] = sent[1]["tool_calls"]
    assert tool_call["id"] == call.call_id and tool_call["function"]["name"] == "get_weather"
    # The new response keeps the items themselves: a chain from it reads them.
    kept = client.responses.input_items.list(second.id, order="asc").data
    assert [item.type for item in kept] == ["message", "function_call", "function_call_output"]
    # The answer's message, by reference too (a reference without its type).
    [said] = second.output
    third = client.responses.create(
        model="azure",
        input=[
            QUESTION,
            _reference(call.id),
            _answered(call),
            {"id": said.id},
            {"role": "user", "content": "And now?"},
        ],  # type: ignore[list-item]
    )
    assert third.status == "completed"
    assert azure_requests[-1]["body"]["messages"][3] == {
        "role": "assistant",
        "content": "Tool said: rain",
    }


def test_a_streamed_response_s_items_are_referenced_by_the_ids_it_streamed(
    client: openai.OpenAI, azure_requests: list[dict[str, Any]]
) -> None:
    with client.responses.stream(model="azure", input=[QUESTION], tools=[WEATHER]) as stream:
        added = [e.item.id for e in stream if e.type == "response.output_item.added"]
        final = stream.get_final_response()
    assert added == [item.id for item in final.output]
    [call] = final.output
    client.responses.create(
        model="azure",
        input=[QUESTION, _reference(added[0]), _answered(call)],  # type: ignore[list-item]
        tools=[WEATHER],
    )
    assert azure_requests[-1]["body"]["messages"][1]["tool_calls"][0]["id"] == call.call_id  # type: ignore[union-attr]


def test_what_the_key_cannot_read_is_a_404_naming_the_reference(
    client: openai.OpenAI, gateway: GatewayProcess
) -> None:
    unstored = client.responses.create(model="azure", input="Hi", store=False)
    stored = client.responses.create(model="azure", input="Hi")
    unknown = item_id("msg", new_id("resp"), 0)
    with openai_client(gateway, OTHER_KEY) as other:
        cases = [
            (client, unstored.output[0].id),  # never stored
            (client, unknown),  # no such Response
            (client, "msg_not_one_of_ours"),  # an id this gateway did not make
            (client, item_id("msg", stored.id, 5)),  # the Response has no such item
            (other, stored.output[0].id),  # another key's Response
        ]
        for caller, missing in cases:
            with pytest.raises(openai.NotFoundError) as caught:
                caller.responses.create(
                    model="azure",
                    input=[QUESTION, _reference(missing)],  # type: ignore[list-item]
                )
            body = caught.value.body
            assert body["param"] == "input[1]", missing  # type: ignore[index]
            assert f"Item with id '{missing}' not found" in body["message"]  # type: ignore[index]


def test_the_token_count_and_compaction_read_references_too(client: openai.OpenAI) -> None:
    first = client.responses.create(model="azure", input=[QUESTION], tools=[WEATHER])
    [call] = first.output
    loop: list[Any] = [QUESTION, _reference(call.id), _answered(call)]
    counted = client.responses.input_tokens.count(model="azure", input=loop, tools=[WEATHER])
    whole: list[Any] = [QUESTION, call.model_dump(exclude_none=True), _answered(call)]
    assert (
        counted.input_tokens
        == (
            client.responses.input_tokens.count(model="azure", input=whole, tools=[WEATHER])
        ).input_tokens
    )
    short = client.responses.compact(model="azure", input=loop)
    assert [item.type for item in short.output] == ["message", "compaction"]


def test_an_output_item_s_id_names_its_response_and_place() -> None:
    response_id = new_id("resp")
    for index in (0, 1, 255):
        assert item_source(item_id("fc", response_id, index)) == (response_id, index)
    assert len(item_id("rs", response_id, 0)) == len("rs_") + 50
    assert item_source(item_id("msg", response_id, 256)) is None  # an id of its own
    assert item_source(new_id("msg")) is None  # an input item's, or an older one


def test_a_conversation_keeps_the_referenced_item_and_refuses_a_trigger(
    client: openai.OpenAI,
) -> None:
    first = client.responses.create(model="azure", input=[QUESTION], tools=[WEATHER])
    [call] = first.output
    conversation = client.conversations.create(items=[QUESTION])  # type: ignore[list-item]
    added = client.conversations.items.create(
        conversation.id,
        items=[_reference(call.id), _answered(call)],  # type: ignore[list-item]
    )
    assert [item.type for item in added.data] == ["function_call", "function_call_output"]
    assert added.data[0].call_id == call.call_id  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError) as caught:
        client.conversations.items.create(
            conversation.id,
            items=[{"type": "compaction_trigger"}],  # type: ignore[list-item]
        )
    assert caught.value.body["param"] == "items[0]"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.conversations.create(items=[_reference("msg_unknown")])  # type: ignore[list-item]
