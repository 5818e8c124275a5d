"""``POST /v1/responses/compact`` with the official ``openai`` SDK: a
conversation (tool calls included, and a stored one by id) compacted by the
Anthropic fake into its user messages and one compaction item, which a later
request sends back and the model reads as a summary; and the 400s and 404s."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from interlock.dialects.responses.compaction import (
    COMPACTION_PROMPT,
    TOOL_TEXT_CHARS,
    compact_body,
)
from interlock.dialects.responses.request import decode_summary
from interlock.dialects.responses.schemas import CompactRequest
from interlock.errors import InvalidRequest
from tests.conftest import TEST_KEY
from tests.support.openai_clients import WEATHER, openai_client
from tests.support.provider_fleet import provider_gateway
from tests.support.servers import GatewayProcess

# What the Anthropic fake answers to text: here, the summary.
SUMMARY = "Hello from anthropic"


@pytest.fixture(scope="module")
def received() -> list[dict[str, Any]]:
    return []


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, received: list[dict[str, Any]]
) -> Iterator[GatewayProcess]:
    with provider_gateway(tmp_path_factory.mktemp("gw"), anthropic_requests=received) as gateway:
        yield gateway


def _items(output: list[Any]) -> list[dict[str, Any]]:
    # warnings=False: the SDK types a compaction's user messages as assistant ones.
    return [item.model_dump(exclude_none=True, warnings=False) for item in output]


def _last_text(received: list[dict[str, Any]]) -> str:
    content = received[-1]["body"]["messages"][-1]["content"]
    if isinstance(content, str):
        return content
    return "".join(block.get("text", "") for block in content)


def test_a_tool_loop_compacts_to_its_user_messages_and_a_summary(
    client: openai.OpenAI, received: list[dict[str, Any]]
) -> None:
    conversation: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.responses.create(model="claude", input=conversation, tools=[WEATHER])
    [call] = [item for item in first.output if item.type == "function_call"]
    conversation += _items(first.output)
    conversation += [{"type": "function_call_output", "call_id": call.call_id, "output": "rain"}]
    conversation += [{"role": "user", "content": "Pack for it."}]

    compacted = client.responses.compact(
        model="claude", input=conversation, instructions="You help travellers."
    )
    assert compacted.object == "response.compaction" and compacted.usage.total_tokens > 0
    *kept, compaction = _items(compacted.output)
    assert [(item["role"], item["content"][0]["text"]) for item in kept] == [
        ("user", "What is the weather in Paris?"),
        ("user", "Pack for it."),
    ]
    assert compaction["type"] == "compaction" and compaction["id"].startswith("cmp_")
    # The model read the whole loop as a transcript (no turns a provider could refuse).
    asked = received[-1]["body"]
    assert asked["system"] == "You help travellers." and "tools" not in asked
    transcript = _last_text(received)
    assert transcript.endswith(COMPACTION_PROMPT)
    assert f"called get_weather (call {call.call_id})" in transcript
    assert f"[result of call {call.call_id}]\nrain" in transcript

    following = client.responses.create(
        model="claude", input=[*_items(compacted.output), {"role": "user", "content": "Go on"}]
    )
    assert following.output_text == SUMMARY
    sent = json.dumps(received[-1]["body"]["messages"])
    assert "was compacted" in sent and SUMMARY in sent and "rain" not in sent


def test_a_stored_response_compacts_by_id(
    client: openai.OpenAI, received: list[dict[str, Any]]
) -> None:
    first = client.responses.create(model="claude", input="Remember the word: heron")
    compacted = client.responses.compact(
        model="claude", previous_response_id=first.id, input="And now?"
    )
    kept = [item["content"][0]["text"] for item in _items(compacted.output)[:-1]]
    assert kept == ["Remember the word: heron", "And now?"]
    transcript = _last_text(received)
    assert "[user]\nRemember the word: heron" in transcript
    assert f"[assistant]\n{SUMMARY}" in transcript  # the stored answer is read too
    # A compaction item continues any conversation, on any model.
    following = client.responses.create(
        model="sim", input=[*_items(compacted.output), {"role": "user", "content": "Go on"}]
    )
    assert following.status == "completed"


def test_bad_compactions_are_refused_naming_the_field(
    client: openai.OpenAI, gateway: GatewayProcess
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.compact(model="claude")
    assert caught.value.body["param"] == "input"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.compact(model="claude", previous_response_id="resp_unknown")
    assert missing.value.body["param"] == "previous_response_id"  # type: ignore[index]
    forged = {"type": "compaction", "encrypted_content": "bm90IG91cnM"}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="claude", input=[forged])
    assert caught.value.body["param"] == "input[0].encrypted_content"  # type: ignore[index]
    with openai_client(gateway, "sk-wrong") as stranger, pytest.raises(openai.AuthenticationError):
        stranger.responses.compact(model="claude")  # the key is checked before the body
    answer = httpx.post(
        gateway.base_url + "/v1/responses/compact",
        json={"model": "claude", "input": "x", "stream": True},
        headers={"authorization": f"Bearer {TEST_KEY}"},
    )
    assert answer.status_code == 200  # fields compaction has no use for are ignored


def test_the_summary_round_trips_and_an_empty_conversation_is_refused() -> None:
    body = compact_body(CompactRequest(model="m", input="Hi"))
    assert body["messages"] == [
        {
            "role": "user",
            "content": f"<conversation>\n[user]\nHi\n</conversation>\n\n{COMPACTION_PROMPT}",
        }
    ]
    with pytest.raises(InvalidRequest) as caught:
        compact_body(CompactRequest(model="m", input=[]))
    assert caught.value.param == "input"
    with pytest.raises(InvalidRequest):
        decode_summary("e30", "input[0]")  # "{}": no summary in it


def test_long_tool_results_are_cut_to_their_head_and_tail() -> None:
    output = "first line\n" + "x" * 50_000 + "\nlast line"
    body = compact_body(
        CompactRequest.model_validate(
            {
                "model": "m",
                "input": [
                    {"role": "user", "content": "Read it"},
                    {"type": "function_call", "call_id": "c", "name": "read", "arguments": "{}"},
                    {"type": "function_call_output", "call_id": "c", "output": output},
                ],
            }
        )
    )
    transcript = body["messages"][-1]["content"]
    assert "first line" in transcript and "last line" in transcript
    assert f"[... {len(output) - TOOL_TEXT_CHARS:,} characters left out ...]" in transcript
    assert len(transcript) < TOOL_TEXT_CHARS + 2_000
