"""``configuration_update`` input items with the official ``openai`` SDK: the
request keeps its own settings and the conversation's latest update of each
is what the upstream is sent (a reasoning effort as an Anthropic thinking
budget, a text format as chat's ``response_format``) and what the Response
echoes; and the efforts past ``high`` reach a thinking budget."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from interlock.providers.openai_request import REASONING_BUDGETS
from tests.support.provider_fleet import provider_gateway
from tests.support.servers import GatewayProcess

SCHEMA: dict[str, Any] = {
    "type": "json_schema",
    "name": "city",
    "schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


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


def _update(**settings: Any) -> dict[str, Any]:
    return {"type": "configuration_update", **settings}


def test_the_latest_effort_update_is_the_thinking_budget(
    client: openai.OpenAI, anthropic_requests: list[dict[str, Any]]
) -> None:
    conversation: list[Any] = [
        {"role": "user", "content": "Think about it."},
        _update(reasoning={"effort": "high"}),
        {"role": "assistant", "content": "Done."},
        _update(reasoning={"effort": "xhigh"}),
        {"role": "user", "content": "Again."},
    ]
    response = client.responses.create(
        model="claude",
        input=conversation,
        reasoning={"effort": "low"},  # kept as it was, for the prompt cache
        max_output_tokens=100,
    )
    sent = anthropic_requests[-1]["body"]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": REASONING_BUDGETS["xhigh"]}
    assert [message["role"] for message in sent["messages"]] == ["user", "assistant", "user"]
    assert response.reasoning is not None and response.reasoning.effort == "xhigh"


def test_a_format_update_asks_for_structured_output_and_a_later_one_for_text(
    client: openai.OpenAI, azure_requests: list[dict[str, Any]]
) -> None:
    structured = client.responses.create(
        model="azure",
        input=[{"role": "user", "content": "Where?"}, _update(text={"format": SCHEMA})],
    )
    assert azure_requests[-1]["body"]["response_format"]["json_schema"]["name"] == "city"
    assert structured.output_text == '{"city":"Paris"}'
    plain = client.responses.create(
        model="azure",
        previous_response_id=structured.id,
        input=[_update(text={"format": {"type": "text"}}), {"role": "user", "content": "Say"}],
    )
    assert "response_format" not in azure_requests[-1]["body"]
    assert plain.output_text == "Hello from azure"


def test_max_effort_is_taken(
    client: openai.OpenAI, anthropic_requests: list[dict[str, Any]]
) -> None:
    client.responses.create(
        model="claude", input="Think hard.", reasoning={"effort": "max"}, max_output_tokens=100
    )
    budget = anthropic_requests[-1]["body"]["thinking"]["budget_tokens"]
    assert budget == REASONING_BUDGETS["max"]
