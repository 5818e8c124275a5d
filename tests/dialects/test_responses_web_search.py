"""Web search in OpenAI's shapes on an Anthropic deployment, which runs it
as its own server tool. The Responses API's hosted ``web_search``: its
searches come back as ``web_search_call`` items between the answer's
messages, answered or streamed (``dialects/responses/web_search.py``);
every other upstream leaves it out, as does Anthropic for a search that must
not reach the web (Codex's cached mode). Chat's ``web_search_options``: the
answer's cited text carries ``url_citation`` annotations."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from interlock.dialects.responses.answer import response_shell, to_response
from interlock.dialects.responses.schemas import validate_request
from interlock.dialects.responses.web_search import hosted_search
from interlock.providers.anthropic_wire import chat_request
from tests.support.fake_anthropic import CITED_ANSWER, SEARCH_RESULT
from tests.support.openai_clients import openai_client
from tests.support.provider_fleet import provider_gateway
from tests.support.servers import GatewayProcess

ASK = "What is the capital of France?"
SEARCH: Any = {
    "type": "web_search",
    "filters": {"allowed_domains": ["example.com"]},
    "user_location": {"type": "approximate", "country": "FR", "city": None},
}
SEARCHED = ["message", "web_search_call", "message"]


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, anthropic_requests: list[dict[str, Any]]
) -> Iterator[GatewayProcess]:
    with provider_gateway(
        tmp_path_factory.mktemp("gw"), anthropic_requests=anthropic_requests
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai_client(gateway) as client:
        yield client


def _shape(response: Any) -> list[dict[str, Any]]:
    """The output without the ids each answer makes afresh."""
    items = [item.model_dump(exclude_none=True) for item in response.output]
    return [{k: v for k, v in item.items() if k != "id"} for item in items]


def test_an_anthropic_deployment_runs_the_search(
    client: openai.OpenAI, anthropic_requests: list[dict[str, Any]]
) -> None:
    response = client.responses.create(model="claude", input=ASK, tools=[SEARCH])
    assert anthropic_requests[-1]["body"]["tools"] == [
        {
            "type": "web_search_20250305",
            "name": "web_search",
            "allowed_domains": ["example.com"],
            "user_location": {"type": "approximate", "country": "FR"},
        }
    ]
    assert [item.type for item in response.output] == SEARCHED
    call = response.output[1]
    assert call.id.startswith("ws_") and call.status == "completed"
    assert call.action.model_dump(exclude_none=True) == {
        "type": "search",
        "query": ASK,
        "sources": [{"type": "url", "url": SEARCH_RESULT["url"]}],
    }
    assert response.output_text == "Let me search. " + CITED_ANSWER["text"]
    assert [tool.type for tool in response.tools] == ["web_search"]
    # The cited block's citation, over its text in the message after the search.
    [part] = response.output[-1].content
    [citation] = CITED_ANSWER["citations"]
    assert [a.model_dump() for a in part.annotations] == [
        {
            "type": "url_citation",
            "start_index": 0,
            "end_index": len(CITED_ANSWER["text"]),
            "url": citation["url"],
            "title": citation["title"],
        }
    ]


def test_a_streamed_search_ends_as_the_same_response(client: openai.OpenAI) -> None:
    answered = client.responses.create(model="claude", input=ASK, tools=[SEARCH])
    with client.responses.stream(model="claude", input=ASK, tools=[SEARCH]) as stream:
        events = list(stream)
        streamed = stream.get_final_response()
    assert _shape(streamed) == _shape(answered)
    kinds = [e.type for e in events if e.type.startswith("response.web_search_call.")]
    assert kinds == [
        "response.web_search_call.in_progress",
        "response.web_search_call.searching",
        "response.web_search_call.completed",
    ]
    added = [e.item for e in events if e.type == "response.output_item.added"]
    assert [item.type for item in added] == SEARCHED
    assert added[1].status == "in_progress"
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(set(numbers))
    added_notes = [e for e in events if e.type == "response.output_text.annotation.added"]
    [note] = added_notes
    message = streamed.output[-1]
    assert (note.item_id, note.output_index, note.annotation_index) == (message.id, 2, 0)
    assert note.annotation.model_dump() == message.content[0].annotations[0].model_dump()


def test_the_search_continues_by_id(client: openai.OpenAI) -> None:
    first = client.responses.create(model="claude", input=ASK, tools=[SEARCH])
    second = client.responses.create(
        model="claude", input="Thanks!", tools=[SEARCH], previous_response_id=first.id
    )
    assert second.status == "completed"


@pytest.mark.parametrize("model", ["azure", "sim"])
def test_other_upstreams_leave_the_search_out(client: openai.OpenAI, model: str) -> None:
    response = client.responses.create(model=model, input=ASK, tools=[SEARCH])
    assert [item.type for item in response.output] == ["message"]


def test_a_search_that_must_not_reach_the_web_is_left_out_at_anthropic_too(
    client: openai.OpenAI, anthropic_requests: list[dict[str, Any]]
) -> None:
    cached: Any = {"type": "web_search", "external_web_access": False}
    response = client.responses.create(model="claude", input=ASK, tools=[cached])
    assert "tools" not in anthropic_requests[-1]["body"]
    assert [item.type for item in response.output] == ["message"]


def test_what_a_hosted_search_asks_is_said_in_anthropics_names() -> None:
    assert hosted_search([{"type": "function", "name": "f"}]) is None
    cached = hosted_search([{"type": "web_search", "external_web_access": False}])
    assert cached == {"external_web_access": False}  # for a Responses upstream alone
    assert hosted_search([{"type": "web_search_preview"}]) == {}
    assert hosted_search([SEARCH]) == {
        "allowed_domains": ["example.com"],
        "user_location": {"type": "approximate", "country": "FR"},
    }


CALL = {"type": "server_tool_use", "id": "s1", "name": "web_search", "input": {"query": "q"}}
FOUND = {"type": "web_search_tool_result", "tool_use_id": "s1", "content": [SEARCH_RESULT]}
FAILED = {
    "type": "web_search_tool_result",
    "tool_use_id": "s1",
    "content": {"type": "web_search_tool_result_error", "error_code": "unavailable"},
}


def _completion(content: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    message = {"role": "assistant", "content": content, "content_blocks": blocks}
    return {"choices": [{"message": message, "finish_reason": "stop"}], "usage": None}


def _shell() -> dict[str, Any]:
    request = validate_request({"model": "m", "input": "q", "tools": [{"type": "web_search"}]})
    return response_shell(request, "resp_1", 0)


def test_the_text_around_a_search_is_two_messages_and_a_failed_search_says_so() -> None:
    blocks = [
        {"type": "text", "text": "Looking. "},
        CALL,
        FAILED,
        {"type": "text", "text": "No luck."},
    ]
    output = to_response(_shell(), _completion("Looking. No luck.", blocks))["output"]
    assert [item["type"] for item in output] == SEARCHED
    assert output[1]["status"] == "failed" and "sources" not in output[1]["action"]
    assert [item["content"][0]["text"] for item in (output[0], output[2])] == [
        "Looking. ",
        "No luck.",
    ]


def test_each_message_gets_the_citations_of_its_own_text() -> None:
    blocks = [
        {"type": "text", "text": "Looking. "},
        CALL,
        FOUND,
        {"type": "text", "text": "Paris."},
    ]
    completion = _completion("Looking. Paris.", blocks)
    where = {"start_index": 9, "end_index": 15, "url": "https://a.example", "title": "A"}
    completion["choices"][0]["message"]["annotations"] = [
        {"type": "url_citation", "url_citation": where}
    ]
    output = to_response(_shell(), completion)["output"]
    assert output[0]["content"][0]["annotations"] == []
    assert output[2]["content"][0]["annotations"] == [
        {**where, "type": "url_citation", "start_index": 0, "end_index": 6}
    ]


def test_rewritten_text_comes_after_the_searches_as_it_was_rewritten() -> None:
    blocks = [
        {"type": "text", "text": "Mail a@b.c. "},
        CALL,
        FOUND,
        {"type": "text", "text": "Yes."},
    ]
    output = to_response(_shell(), _completion("Mail [EMAIL]. Yes.", blocks))["output"]
    assert [item["type"] for item in output] == ["web_search_call", "message"]
    assert output[1]["content"][0]["text"] == "Mail [EMAIL]. Yes."
    assert output[0]["action"]["sources"] == [{"type": "url", "url": SEARCH_RESULT["url"]}]


def test_a_client_tool_named_web_search_keeps_its_name_at_anthropic() -> None:
    own = {"type": "function", "function": {"name": "web_search", "parameters": {"type": "object"}}}
    body = {"messages": [{"role": "user", "content": "q"}], "tools": [own], "hosted_web_search": {}}
    wire = chat_request(body, "claude-x", ()).body
    assert [tool["name"] for tool in wire["tools"]] == ["web_search"]
    assert "type" not in wire["tools"][0]


def test_chats_web_search_options_search_at_anthropic_with_url_citations(
    client: openai.OpenAI, anthropic_requests: list[dict[str, Any]]
) -> None:
    options: Any = {"user_location": {"type": "approximate", "approximate": {"country": "FR"}}}
    messages: Any = [{"role": "user", "content": ASK}]
    answer = client.chat.completions.create(
        model="claude", messages=messages, web_search_options=options
    )
    assert anthropic_requests[-1]["body"]["tools"] == [
        {
            "type": "web_search_20250305",
            "name": "web_search",
            "user_location": {"type": "approximate", "country": "FR"},
        }
    ]
    message = answer.choices[0].message
    assert message.content == "Let me search. " + CITED_ANSWER["text"]
    [annotation] = message.annotations or []
    cited = annotation.url_citation
    assert (cited.url, cited.title) == (SEARCH_RESULT["url"], SEARCH_RESULT["title"])
    assert message.content[cited.start_index : cited.end_index] == CITED_ANSWER["text"]
    stream = client.chat.completions.create(
        model="claude", messages=messages, web_search_options=options, stream=True
    )
    with stream:
        deltas = [chunk.choices[0].delta for chunk in stream if chunk.choices]
    streamed = [a for d in deltas for a in (d.model_extra or {}).get("annotations") or ()]
    assert streamed == [annotation.model_dump()]
    assert "".join(d.content or "" for d in deltas) == message.content


def test_web_search_options_stay_a_400_where_nothing_can_search(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="gemini", messages=[{"role": "user", "content": ASK}], web_search_options={}
        )
    assert caught.value.body["param"] == "web_search_options"  # type: ignore[index]
