"""The Conversations API with the official ``openai`` SDK, unchanged, and
responses created in a conversation: create, retrieve, update, delete; add,
list, retrieve and delete items; ``conversation`` on ``responses.create``
and ``responses.stream`` reading the items as context and adding input and
output; scoped to the key; errors naming the field.

One gateway process serves every test: the simulator, and models in front
of the Anthropic fake (``tests/support``), which refuses a tool result
that answers no tool call of the previous turn, so a tool loop through a
conversation only passes if the conversation supplied that turn.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import TEST_KEY
from tests.support.openai_clients import WEATHER, openai_client
from tests.support.provider_fleet import provider_gateway
from tests.support.servers import GatewayProcess

OTHER_KEY = "sk-other-conversations"
MAX_ITEMS = 6  # responses.max_conversation_items: more than any other test here adds


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with provider_gateway(
        tmp_path_factory.mktemp("gw"),
        keys=[{"name": "other", "key": OTHER_KEY}],
        sections={"responses": {"max_conversation_items": MAX_ITEMS}},
    ) as gateway:
        yield gateway


def test_a_conversation_is_created_read_updated_and_deleted(client: openai.OpenAI) -> None:
    created = client.conversations.create(
        items=[
            {"type": "message", "role": "system", "content": "Be brief."},
            {"type": "message", "role": "user", "content": "Hi"},
        ],
        metadata={"topic": "demo"},
    )
    assert created.id.startswith("conv_") and created.object == "conversation"
    assert created.metadata == {"topic": "demo"} and created.created_at > 0
    assert client.conversations.retrieve(created.id).metadata == {"topic": "demo"}
    updated = client.conversations.update(created.id, metadata={"topic": "other"})
    assert updated.metadata == {"topic": "other"}
    items = list(client.conversations.items.list(created.id, order="asc"))
    assert [(i.type, i.role, i.status) for i in items] == [  # type: ignore[union-attr]
        ("message", "system", "completed"),
        ("message", "user", "completed"),
    ]
    assert items[1].content[0].type == "input_text"  # type: ignore[union-attr]
    deleted = client.conversations.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (
        created.id,
        True,
        "conversation.deleted",
    )
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.list(created.id)


def test_items_are_added_listed_both_ways_retrieved_and_deleted(client: openai.OpenAI) -> None:
    conversation = client.conversations.create()
    added = client.conversations.items.create(
        conversation.id,
        items=[{"type": "message", "role": "user", "content": f"n{n}"} for n in range(5)],
    )
    ids = [item.id for item in added.data]  # type: ignore[union-attr]
    assert len(ids) == 5 == len(set(ids)) and not added.has_more
    newest = client.conversations.items.list(conversation.id, limit=2)
    assert [i.id for i in newest.data] == ids[::-1][:2] and newest.has_more  # type: ignore[union-attr]
    every = [i.id for i in client.conversations.items.list(conversation.id, limit=2)]  # type: ignore[union-attr]
    assert every == ids[::-1]
    oldest = client.conversations.items.list(conversation.id, limit=2, order="asc", after=ids[1])
    assert [i.id for i in oldest.data] == ids[2:4]  # type: ignore[union-attr]
    one = client.conversations.items.retrieve(ids[2], conversation_id=conversation.id)
    assert one.id == ids[2] and one.content[0].text == "n2"  # type: ignore[union-attr]
    after_delete = client.conversations.items.delete(ids[2], conversation_id=conversation.id)
    assert after_delete.id == conversation.id
    with pytest.raises(openai.NotFoundError) as gone:
        client.conversations.items.retrieve(ids[2], conversation_id=conversation.id)
    assert gone.value.code == "item_not_found"
    left = [i.id for i in client.conversations.items.list(conversation.id, order="asc")]  # type: ignore[union-attr]
    assert left == [ids[0], ids[1], ids[3], ids[4]]


def test_a_response_in_a_conversation_reads_it_and_adds_to_it(client: openai.OpenAI) -> None:
    # The Anthropic fake accepts the tool result only after the turn that
    # called the tool: the conversation must supply it.
    conversation = client.conversations.create(metadata={"agent": "weather"})
    first = client.responses.create(
        model="claude",
        input="What is the weather in Paris?",
        tools=[WEATHER],
        conversation=conversation.id,
    )
    assert first.conversation is not None and first.conversation.id == conversation.id
    [call] = [item for item in first.output if item.type == "function_call"]
    with client.responses.stream(
        model="claude",
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "warm"}],
        tools=[WEATHER],
        conversation={"id": conversation.id},
    ) as stream:
        second = stream.get_final_response()
    assert second.output_text == "Tool said: warm"
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert [item.type for item in items] == [
        "message",  # the question
        "function_call",
        "function_call_output",
        "message",  # the answer
    ]
    assert items[1].id == call.id and items[3].id == second.output[-1].id
    # A stored response in a conversation lists the conversation as its input.
    inputs = list(client.responses.input_items.list(second.id, order="asc"))
    assert [item.type for item in inputs] == ["message", "function_call", "function_call_output"]


def test_a_response_not_stored_still_adds_to_its_conversation(client: openai.OpenAI) -> None:
    conversation = client.conversations.create(
        items=[{"type": "message", "role": "user", "content": "Remember me."}]
    )
    answer = client.responses.create(
        model="sim", input="Hi", store=False, conversation=conversation.id
    )
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(answer.id)
    items = list(client.conversations.items.list(conversation.id, order="asc"))
    assert len(items) == 3 and items[2].id == answer.output[-1].id


def test_a_conversation_belongs_to_its_key(client: openai.OpenAI, gateway: GatewayProcess) -> None:
    conversation = client.conversations.create()
    with openai_client(gateway, OTHER_KEY) as other:
        for call in (
            lambda: other.conversations.retrieve(conversation.id),
            lambda: other.conversations.update(conversation.id, metadata={}),
            lambda: other.conversations.delete(conversation.id),
            lambda: other.conversations.items.list(conversation.id),
            lambda: other.conversations.items.create(
                conversation.id, items=[{"role": "user", "content": "x"}]
            ),
            lambda: other.responses.create(model="sim", input="x", conversation=conversation.id),
        ):
            with pytest.raises(openai.NotFoundError):
                call()
    assert client.conversations.retrieve(conversation.id).id == conversation.id


def test_an_item_sent_back_with_an_id_the_conversation_holds_gets_a_new_one(
    client: openai.OpenAI,
) -> None:
    conversation = client.conversations.create()
    answer = client.responses.create(model="sim", input="Hi", conversation=conversation.id)
    echoed = answer.output[-1].model_dump(exclude_none=True)
    long_id = {"type": "message", "role": "user", "content": "x", "id": "m" * 100}
    added = client.conversations.items.create(conversation.id, items=[echoed, long_id])  # type: ignore[list-item]
    new_ids = [item.id for item in added.data]  # type: ignore[union-attr]
    assert answer.output[-1].id not in new_ids and all(len(i) <= 64 for i in new_ids)
    assert len(list(client.conversations.items.list(conversation.id))) == 4


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/conversations", {"items": [{"role": "pirate", "content": "x"}] * 1}, "items[0].role"),
        ("/conversations", {"items": [{"role": "user", "content": "x"}] * 21}, "items"),
        ("/conversations", {"metadata": {"k": 1}}, "metadata.k"),
        ("/conversations/{id}/items", {"items": []}, "items"),
        ("/conversations/{id}/items", {}, "items"),
        ("/conversations/{id}", {}, "metadata"),
        (
            "/responses",
            {"model": "sim", "input": "x", "conversation": "{id}", "previous_response_id": "r"},
            "conversation",
        ),
    ],
)
def test_bad_bodies_are_400s_naming_the_field(
    client: openai.OpenAI, gateway: GatewayProcess, path: str, body: dict[str, Any], param: str
) -> None:
    conversation = client.conversations.create()
    url = gateway.base_url + "/v1" + path.replace("{id}", conversation.id)
    sent = json.loads(json.dumps(body).replace("{id}", conversation.id))
    refused = httpx.post(url, json=sent, headers={"Authorization": f"Bearer {TEST_KEY}"})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == param


def test_an_unknown_conversation_is_a_404_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="sim", input="x", conversation="conv_nope")
    assert caught.value.param == "conversation" and caught.value.code == "conversation_not_found"
    with pytest.raises(openai.NotFoundError):
        client.conversations.items.delete("msg_nope", conversation_id="conv_nope")


def test_a_full_conversation_takes_no_more_items_and_runs_no_response(
    client: openai.OpenAI,
) -> None:
    many: Any = [{"role": "user", "content": f"n{n}"} for n in range(MAX_ITEMS + 1)]
    with pytest.raises(openai.BadRequestError) as too_many:
        client.conversations.create(items=many)
    assert too_many.value.code == "conversation_full"
    conversation = client.conversations.create(items=many[:MAX_ITEMS])
    with pytest.raises(openai.BadRequestError) as full:
        client.conversations.items.create(conversation.id, items=many[:1])
    assert full.value.code == "conversation_full" and full.value.param == "conversation"
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="sim", input="x", conversation=conversation.id)
    assert refused.value.code == "conversation_full"
    assert len(list(client.conversations.items.list(conversation.id))) == MAX_ITEMS
