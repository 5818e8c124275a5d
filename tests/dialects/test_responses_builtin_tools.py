"""The Responses API's built-in tools the client runs (``shell``,
``apply_patch``, ``local_shell``) on every provider, with the official
``openai`` SDK: the model is offered each as a function, and its call comes
back as the built-in item (``shell_call`` ...), answered or streamed; the
item and its output sent back, or the response continued by id, are the
next turn's tool loop.

The fakes answer a call with each property's first ``enum`` value or a
value of its type (a string "Paris", an array []), and "Tool said: ..."
after results (``tests/support``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.openai_clients import openai_client
from tests.support.provider_fleet import provider_gateway
from tests.support.servers import GatewayProcess

EVERY = ["sim", "claude", "azure", "gemini", "bedrock"]
SHELL: Any = {"type": "shell", "environment": {"type": "local"}}
APPLY_PATCH: Any = {"type": "apply_patch"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with provider_gateway(tmp_path_factory.mktemp("gw")) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai_client(gateway) as client:
        yield client


@pytest.mark.parametrize("model", EVERY)
def test_a_shell_tool_loop(client: openai.OpenAI, model: str) -> None:
    conversation: list[Any] = [{"role": "user", "content": "List the files"}]
    first = client.responses.create(model=model, input=conversation, tools=[SHELL])
    [call] = first.output
    assert call.type == "shell_call" and call.id.startswith("sh_")
    assert isinstance(call.action.commands, list) and call.status == "completed"
    assert first.tools[0].type == "shell"
    conversation += [item.model_dump(exclude_none=True) for item in first.output]
    outcome = {"type": "exit", "exit_code": 0}
    output = [{"stdout": "a.py", "stderr": "", "outcome": outcome}]
    conversation += [{"type": "shell_call_output", "call_id": call.call_id, "output": output}]
    second = client.responses.create(model=model, input=conversation, tools=[SHELL])
    assert second.output_text.startswith("Tool said: ") and "a.py" in second.output_text


@pytest.mark.parametrize("model", ["sim", "claude", "azure"])
def test_a_streamed_apply_patch_call_continued_by_id(client: openai.OpenAI, model: str) -> None:
    with client.responses.stream(
        model=model, input="Add a.py", tools=[APPLY_PATCH], tool_choice={"type": "apply_patch"}
    ) as stream:
        events = list(stream)
        first = stream.get_final_response()
    [call] = first.output
    assert call.type == "apply_patch_call" and call.status == "completed"
    assert call.operation.type == "create_file"  # the enum's first value
    assert isinstance(call.operation.path, str)
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" not in kinds
    [added] = [e for e in events if e.type == "response.output_item.added"]
    [done] = [e for e in events if e.type == "response.output_item.done"]
    assert added.item.type == done.item.type == "apply_patch_call"
    assert added.item.status == "in_progress" and added.item.id == done.item.id == call.id
    result = {"type": "apply_patch_call_output", "call_id": call.call_id, "status": "completed"}
    second = client.responses.create(
        model=model,
        input=[{**result, "output": "created a.py"}],
        tools=[APPLY_PATCH],
        previous_response_id=first.id,
    )
    assert second.output_text == "Tool said: completed: created a.py"


def test_local_shell_on_the_simulator(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model="sim", input="Where am I?", tools=[{"type": "local_shell"}]
    )
    [call] = first.output
    assert call.type == "local_shell_call" and call.action.type == "exec"
    assert isinstance(call.action.command, list) and call.action.env == {}
    result = {"type": "local_shell_call_output", "id": call.call_id, "output": "/home"}
    second = client.responses.create(
        model="sim", input=[result], tools=[{"type": "local_shell"}], previous_response_id=first.id
    )
    assert second.output_text


def test_a_hosted_container_is_refused_by_name(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="sim",
            input="Hi",
            tools=[{"type": "shell", "environment": {"type": "container_auto"}}],
        )
    body: Any = caught.value.body
    assert body["param"] == "tools[0].environment"
    assert "container_auto" in body["message"]
