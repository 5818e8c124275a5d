"""Anthropic's schema-less client tools (``bash_*``, ``text_editor_*``,
``memory_*``) on models that are not Anthropic's (ADR 0030), with the
official ``anthropic`` SDK: each is offered as a function of its name with the input schema
Anthropic documents, the model's call comes back as that tool's
``tool_use``, and its result goes on as any tool's. An Anthropic model gets
them as sent (``test_anthropic_server_tools.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.conftest import TEST_KEY
from tests.support.provider_fleet import provider_gateway
from tests.support.servers import GatewayProcess

BASH: Any = {"type": "bash_20250124", "name": "bash"}
EDITOR: Any = {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"}
OLD_EDITOR: Any = {"type": "text_editor_20250124", "name": "str_replace_editor"}
ASK: Any = [{"role": "user", "content": "List the files."}]


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
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.base_url, api_key=TEST_KEY, max_retries=0) as c:
        yield c


@pytest.mark.parametrize("model", ["azure", "gemini", "bedrock"])
@pytest.mark.parametrize("stream", [False, True])
def test_bash_is_a_function_of_its_name_and_comes_back_as_its_tool_use(
    client: anthropic.Anthropic, model: str, stream: bool
) -> None:
    ask: Any = {"model": model, "max_tokens": 128, "messages": ASK, "tools": [BASH]}
    if stream:
        with client.messages.stream(**ask) as events:
            answer = events.get_final_message()
    else:
        answer = client.messages.create(**ask)
    [call] = [block for block in answer.content if block.type == "tool_use"]
    assert call.name == "bash"
    assert isinstance(call.input, dict) and isinstance(call.input["command"], str)
    assert answer.stop_reason == "tool_use"

    # The client runs it and sends the result back: the model reads it.
    then = client.messages.create(
        model=model,
        max_tokens=128,
        tools=[BASH],
        messages=[
            *ASK,
            {"role": "assistant", "content": [call.model_dump(exclude_none=True)]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "a.py"}],
            },
        ],
    )
    assert then.stop_reason == "end_turn"
    assert "a.py" in "".join(b.text for b in then.content if b.type == "text")


def test_the_text_editors_schema_is_its_versions(
    client: anthropic.Anthropic, azure_requests: list[dict[str, Any]]
) -> None:
    chosen: Any = {"type": "tool", "name": "str_replace_based_edit_tool"}
    answer = client.messages.create(
        model="azure", max_tokens=128, messages=ASK, tools=[BASH, EDITOR], tool_choice=chosen
    )
    sent = azure_requests[-1]["body"]
    assert [t["function"]["name"] for t in sent["tools"]] == ["bash", "str_replace_based_edit_tool"]
    editor = sent["tools"][1]["function"]["parameters"]
    assert editor["properties"]["command"]["enum"] == ["view", "create", "str_replace", "insert"]
    assert editor["required"] == ["command", "path"]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": chosen["name"]}}
    [call] = [block for block in answer.content if block.type == "tool_use"]
    assert call.name == "str_replace_based_edit_tool"
    assert call.input["command"] == "view"  # type: ignore[index]

    client.messages.create(model="azure", max_tokens=128, messages=ASK, tools=[OLD_EDITOR])
    older = azure_requests[-1]["body"]["tools"][0]["function"]
    assert older["name"] == "str_replace_editor"
    assert "undo_edit" in older["parameters"]["properties"]["command"]["enum"]


def test_the_memory_tool_says_what_anthropic_would_have_told_the_model(
    client: anthropic.Anthropic, azure_requests: list[dict[str, Any]]
) -> None:
    memory: Any = {"type": "memory_20250818", "name": "memory"}
    answer = client.messages.create(model="azure", max_tokens=128, messages=ASK, tools=[memory])
    function = azure_requests[-1]["body"]["tools"][0]["function"]
    assert function["name"] == "memory" and "/memories" in function["description"]
    commands = function["parameters"]["properties"]["command"]["enum"]
    assert commands == ["view", "create", "str_replace", "insert", "delete", "rename"]
    assert [block.name for block in answer.content if block.type == "tool_use"] == ["memory"]


def test_an_anthropic_model_gets_them_as_sent(
    client: anthropic.Anthropic, anthropic_requests: list[dict[str, Any]]
) -> None:
    client.messages.create(model="claude", max_tokens=128, messages=ASK, tools=[BASH, EDITOR])
    assert anthropic_requests[-1]["body"]["tools"] == [BASH, EDITOR]


def test_a_tool_whose_schema_is_not_known_here_still_needs_anthropic(
    client: anthropic.Anthropic,
) -> None:
    computer = {"type": "computer_20250124", "name": "computer", "display_width_px": 800}
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="azure", max_tokens=128, messages=ASK, tools=[BASH, computer])
    assert "`computer_20250124`" in str(caught.value)
    assert "`bash_20250124`" not in str(caught.value)


def test_a_function_of_the_same_name_is_a_400(client: anthropic.Anthropic) -> None:
    own = {"name": "bash", "input_schema": {"type": "object"}}
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="azure", max_tokens=128, messages=ASK, tools=[own, BASH])
    assert "`bash`" in str(caught.value)
