"""Stored chat completions with the official ``openai`` SDK: ``store: true``
keeps a completion (answered or streamed) for the key that asked, and
``chat.completions.retrieve / list / update / delete / messages.list`` read
it back; nothing of it reaches the upstream; another key sees none of it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.openai_clients import openai_client
from tests.support.provider_fleet import provider_gateway
from tests.support.servers import GatewayProcess

OTHER_KEY = "sk-other-chat-store"


@pytest.fixture(scope="module")
def azure_received() -> list[dict[str, Any]]:
    return []


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, azure_received: list[dict[str, Any]]
) -> Iterator[GatewayProcess]:
    with provider_gateway(
        tmp_path_factory.mktemp("gw"),
        keys=[{"name": "other", "key": OTHER_KEY}],
        azure_requests=azure_received,
    ) as gateway:
        yield gateway


def _ask(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def test_an_answered_completion_is_kept_and_read_back(client: openai.OpenAI) -> None:
    asked = _ask("Hello there")
    made = client.chat.completions.create(
        model="claude", messages=asked, store=True, metadata={"suite": "store", "n": "1"}
    )
    found = client.chat.completions.retrieve(made.id)
    assert found.id == made.id and found.choices[0].message.content == "Hello from anthropic"
    assert found.usage == made.usage
    assert getattr(found, "metadata", None) == {"suite": "store", "n": "1"}
    [message] = client.chat.completions.messages.list(made.id).data
    assert (message.id, message.content) == (f"{made.id}-0", "Hello there")
    updated = client.chat.completions.update(made.id, metadata={"n": "2"})
    assert getattr(updated, "metadata", None) == {"n": "2"}
    deleted = client.chat.completions.delete(made.id)
    assert deleted.deleted and deleted.id == made.id
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(made.id)


def test_a_streamed_completion_is_kept_as_its_chunks_add_up(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="claude", messages=_ask("Stream it"), store=True, stream=True
    )
    ids, text = set(), ""
    for chunk in stream:
        ids.add(chunk.id)
        text += "".join(choice.delta.content or "" for choice in chunk.choices)
    [completion_id] = ids
    found = client.chat.completions.retrieve(completion_id)
    assert found.choices[0].message.content == text == "Hello from anthropic"
    assert found.choices[0].finish_reason == "stop"
    # The client asked for no usage chunk; the stored completion has the usage all the same.
    assert found.usage is not None and found.usage.completion_tokens > 0


def test_listing_pages_and_filters(client: openai.OpenAI) -> None:
    made = [
        client.chat.completions.create(
            model=model, messages=_ask(f"q{n}"), store=True, metadata={"batch": "list", "n": str(n)}
        ).id
        # The Anthropic fake answers every message with one id: once here.
        for n, model in enumerate(["sim", "claude", "sim"])
    ]
    listed = client.chat.completions.list(metadata={"batch": "list"})
    assert [c.id for c in listed.data] == made  # oldest first, as OpenAI lists them
    newest = client.chat.completions.list(metadata={"batch": "list"}, order="desc", limit=2)
    assert [c.id for c in newest.data] == made[::-1][:2] and newest.has_more
    rest = client.chat.completions.list(
        metadata={"batch": "list"}, order="desc", limit=2, after=made[1]
    )
    assert [c.id for c in rest.data] == [made[0]] and not rest.has_more
    only_claude = client.chat.completions.list(metadata={"batch": "list"}, model="claude")
    assert [c.id for c in only_claude.data] == [made[1]]
    assert [c.id for c in client.chat.completions.list(metadata={"n": "2"}).data] == [made[2]]


def test_nothing_of_it_reaches_the_upstream(
    client: openai.OpenAI, azure_received: list[dict[str, Any]]
) -> None:
    client.chat.completions.create(
        model="azure", messages=_ask("Hi"), store=True, metadata={"who": "me"}
    )
    sent = azure_received[-1]["body"]
    assert "store" not in sent and "metadata" not in sent
    client.chat.completions.create(model="azure", messages=_ask("Hi"))
    assert "store" not in azure_received[-1]["body"]


def test_another_key_sees_nothing(client: openai.OpenAI, gateway: GatewayProcess) -> None:
    made = client.chat.completions.create(model="sim", messages=_ask("secret"), store=True)
    with openai_client(gateway, OTHER_KEY) as other:
        with pytest.raises(openai.NotFoundError):
            other.chat.completions.retrieve(made.id)
        with pytest.raises(openai.NotFoundError):
            other.chat.completions.delete(made.id)
        with pytest.raises(openai.NotFoundError):
            other.chat.completions.update(made.id, metadata={})
        assert made.id not in [c.id for c in other.chat.completions.list()]
    assert client.chat.completions.retrieve(made.id).id == made.id


def test_a_completion_not_stored_is_not_found(client: openai.OpenAI) -> None:
    made = client.chat.completions.create(model="sim", messages=_ask("Hi"))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.retrieve(made.id)


def test_bad_metadata_is_named(client: openai.OpenAI, gateway: GatewayProcess) -> None:
    too_many = {str(n): "x" for n in range(17)}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="sim", messages=_ask("Hi"), store=True, metadata=too_many
        )
    assert caught.value.body["param"] == "metadata"  # type: ignore[index]
    made = client.chat.completions.create(model="sim", messages=_ask("Hi"), store=True)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.update(made.id, metadata={"k": 1})  # type: ignore[dict-item]
    assert caught.value.body["param"] == "metadata"  # type: ignore[index]
    with openai_client(gateway, "sk-wrong") as stranger, pytest.raises(openai.AuthenticationError):
        stranger.chat.completions.create(
            model="sim", messages=_ask("Hi"), store=True, metadata=too_many
        )
