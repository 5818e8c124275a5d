"""Background responses (``background: true``) with the official ``openai``
SDK, unchanged: answered ``queued`` at once, run by the gateway's batch
worker, polled until finished, continued with ``previous_response_id``,
cancelled, failed with the error the model gave; scoped to the key; what
cannot be combined with ``background`` is a 400 naming it.

One gateway process serves every test: the simulator, a slow simulator
model (3 s to its first token) to cancel, and the Anthropic fake, which
refuses logprobs, to fail one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.openai_clients import openai_client
from tests.support.provider_fleet import provider_gateway
from tests.support.servers import GatewayProcess
from tests.support.waiting import wait_for

OTHER_KEY = "sk-other-background"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    slow = {"provider": "simulator", "params": {"ttft_ms": 3000}}
    with provider_gateway(
        tmp_path_factory.mktemp("gw"),
        more_models={"slow": slow},
        keys=[{"name": "other", "key": OTHER_KEY}],
        sections={"batch": {"worker": {"sweep_s": 0.2}}},
    ) as gateway:
        yield gateway


def _settled(client: openai.OpenAI, response_id: str) -> Any:
    def check() -> Any:
        found = client.responses.retrieve(response_id)
        return found if found.status not in ("queued", "in_progress") else None

    return wait_for(check, what=f"background response {response_id} to finish")


def test_a_background_response_is_queued_then_polled_to_its_answer(
    client: openai.OpenAI,
) -> None:
    created = client.responses.create(
        model="sim", input="Tell me a story", instructions="Be brief.", background=True
    )
    assert created.status == "queued" and created.background is True and created.output == []
    done = _settled(client, created.id)
    assert done.status == "completed" and done.background is True and done.output_text
    assert done.id == created.id and done.instructions == "Be brief."
    assert done.usage is not None and done.usage.output_tokens > 0
    again = client.responses.retrieve(created.id)
    assert again.model_dump() == done.model_dump()  # written once, read as stored
    follow = client.responses.create(model="sim", input="And then?", previous_response_id=done.id)
    assert follow.status == "completed"
    inputs = list(client.responses.input_items.list(follow.id, order="asc"))
    assert [item.type for item in inputs] == ["message", "message", "message"]


def test_a_background_response_is_cancelled(client: openai.OpenAI) -> None:
    created = client.responses.create(model="slow", input="Take your time", background=True)
    cancelled = client.responses.cancel(created.id)
    assert cancelled.status == "cancelled" and cancelled.id == created.id
    assert client.responses.retrieve(created.id).status == "cancelled"
    assert client.responses.cancel(created.id).status == "cancelled"  # asked twice: the same


def test_a_background_response_fails_with_the_models_error(client: openai.OpenAI) -> None:
    # The Anthropic model reports no logprobs: online this is a 400.
    created = client.responses.create(
        model="claude", input="Hi", include=["message.output_text.logprobs"], background=True
    )
    done = _settled(client, created.id)
    assert done.status == "failed" and done.error is not None
    assert "logprobs" in done.error.message or "include" in done.error.message
    assert done.output == []


def test_what_background_cannot_take_is_a_400_and_an_unknown_model_a_404(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="sim", input="x", background=True, store=False)
    assert refused.value.param == "store"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="x", background=True)


def test_a_background_response_belongs_to_its_key(
    client: openai.OpenAI, gateway: GatewayProcess
) -> None:
    created = client.responses.create(model="sim", input="mine", background=True)
    with openai_client(gateway, OTHER_KEY) as other:
        with pytest.raises(openai.NotFoundError):
            other.responses.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.cancel(created.id)
    assert _settled(client, created.id).status == "completed"


def test_deleting_a_running_background_response_stops_it(client: openai.OpenAI) -> None:
    created = client.responses.create(model="slow", input="Never mind", background=True)
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


# A tool loop's end, for compaction to shorten: the call and its result.
TOOL_LOOP: list[Any] = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
    {"type": "function_call_output", "call_id": "call_1", "output": "rain"},
]


def test_a_background_response_is_compacted_before_it_is_queued(client: openai.OpenAI) -> None:
    created = client.responses.create(
        model="sim",
        input=TOOL_LOOP,
        background=True,
        context_management=[{"type": "compaction", "compact_threshold": 1}],
    )
    # The summary came first, while the request waited: the queued Response has it.
    assert created.status == "queued" and [item.type for item in created.output] == ["compaction"]
    done = _settled(client, created.id)
    assert [item.type for item in done.output] == ["compaction", "message"]
    assert done.output[0].id == created.output[0].id
