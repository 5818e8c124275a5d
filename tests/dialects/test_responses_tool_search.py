"""Codex's tool search and added tools with the official ``openai`` SDK, on
an OpenAI-wire upstream (the Azure fake, which records what it was sent):
the ``exec`` tool an ``additional_tools`` item adds, the client's
``tool_search`` offered as a function and its call answered as a
``tool_search_call`` (unary and streamed), the tools a
``tool_search_output`` loads offered from then on and called under their
namespace, a conversation chained by id keeping them; OpenAI's server-run
searches, replayed, read the same."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from interlock.dialects.responses.schemas import validate_request
from tests.support.provider_fleet import provider_gateway
from tests.support.servers import GatewayProcess

SEARCH: dict[str, Any] = {
    "type": "tool_search",
    "execution": "client",
    "description": "Search the MCP tools.",
    "parameters": {
        "type": "object",
        "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
        "required": ["query"],
    },
}
# Codex's code-mode tool, as it sends it with its first request.
EXEC: dict[str, Any] = {
    "type": "additional_tools",
    "role": "developer",
    "tools": [
        {
            "type": "namespace",
            "name": "functions",
            "description": "Code mode.",
            "tools": [{"type": "custom", "name": "exec", "description": "Run JavaScript."}],
        },
        {"type": "namespace", "name": "collaboration", "tools": []},  # nothing in it yet
    ],
}
GITHUB: dict[str, Any] = {
    "type": "namespace",
    "name": "mcp__github",
    "description": "GitHub's MCP server.",
    "tools": [
        {
            "type": "function",
            "name": "create_issue",
            "description": "Open an issue.",
            "parameters": {"type": "object", "properties": {"title": {"type": "string"}}},
            "defer_loading": True,
        }
    ],
}
ASK = {"role": "user", "content": "Open an issue about the flaky test."}


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, azure_requests: list[dict[str, Any]]
) -> Iterator[GatewayProcess]:
    with provider_gateway(tmp_path_factory.mktemp("gw"), azure_requests=azure_requests) as gateway:
        yield gateway


def _offered(sent: dict[str, Any]) -> list[str]:
    return [(tool.get("function") or tool.get("custom"))["name"] for tool in sent["tools"]]


def _dumped(output: list[Any]) -> list[dict[str, Any]]:
    return [item.model_dump(exclude_none=True, warnings=False) for item in output]


def _search(client: openai.OpenAI) -> tuple[Any, dict[str, Any]]:
    first = client.responses.create(
        model="azure",
        input=[EXEC, ASK],  # type: ignore[list-item]
        tools=[SEARCH],  # type: ignore[list-item]
    )
    [call] = first.output
    found = {
        "type": "tool_search_output",
        "call_id": call.call_id,  # type: ignore[union-attr]
        "execution": "client",
        "tools": [GITHUB],
    }
    return first, found


def test_the_search_is_offered_and_called_as_the_client_s_tool(
    client: openai.OpenAI, azure_requests: list[dict[str, Any]]
) -> None:
    first, _ = _search(client)
    sent = azure_requests[-1]["body"]
    # The client's search (its own description and parameters), then the added exec tool.
    assert _offered(sent) == ["tool_search", "functions__exec"]
    assert sent["tools"][0]["function"]["description"] == "Search the MCP tools."
    assert [message["role"] for message in sent["messages"]] == ["user"]
    [call] = _dumped(first.output)
    assert call["type"] == "tool_search_call" and call["execution"] == "client"
    assert call["arguments"] == {"query": "Paris", "limit": 3}  # the fake's values, an object
    assert call["status"] == "completed" and call["call_id"]
    echoed = [tool.get("name", tool["type"]) for tool in first.model_dump()["tools"]]
    assert echoed == ["tool_search", "functions", "collaboration"]


def test_the_tools_a_search_loaded_are_offered_and_called_under_their_namespace(
    client: openai.OpenAI, azure_requests: list[dict[str, Any]]
) -> None:
    first, found = _search(client)
    conversation: list[Any] = [EXEC, ASK, *_dumped(first.output), found]
    answered = client.responses.create(
        model="azure",
        input=conversation,
        tools=[SEARCH],  # type: ignore[list-item]
    )
    sent = azure_requests[-1]["body"]
    assert _offered(sent) == ["tool_search", "functions__exec", "mcp__github__create_issue"]
    assert [message["role"] for message in sent["messages"]] == ["user", "assistant", "tool"]
    [searched] = sent["messages"][1]["tool_calls"]
    assert searched["function"] == {
        "name": "tool_search",
        "arguments": '{"query":"Paris","limit":3}',
    }
    result = sent["messages"][2]
    assert result["tool_call_id"] == searched["id"]
    assert result["content"] == "Tools loaded:\n- mcp__github__create_issue: Open an issue."
    assert answered.output_text.startswith("Tool said: Tools loaded:")
    # Asked to call the loaded tool, the model's call comes back under its namespace.
    called = client.responses.create(
        model="azure",
        input=[*conversation, *_dumped(answered.output), {"role": "user", "content": "Open it."}],
        tools=[SEARCH],  # type: ignore[list-item]
        tool_choice={"type": "function", "name": "mcp__github__create_issue"},
    )
    [issue] = _dumped(called.output)
    assert issue["type"] == "function_call" and issue["name"] == "create_issue"
    assert issue["namespace"] == "mcp__github"


def test_a_streamed_search_call_comes_whole_at_its_end(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model="azure",
        input=[EXEC, ASK],  # type: ignore[list-item]
        tools=[SEARCH],  # type: ignore[list-item]
    ) as stream:
        events = [event for event in stream if event.type.startswith("response.output_item")]
        final = stream.get_final_response()
    added, done = (event.item.model_dump(exclude_none=True) for event in events)  # type: ignore[union-attr]
    assert added["type"] == "tool_search_call" and added["status"] == "in_progress"
    assert done["arguments"] == {"query": "Paris", "limit": 3} and done["status"] == "completed"
    assert _dumped(final.output) == [done]


def test_a_chained_conversation_keeps_its_added_and_loaded_tools(
    client: openai.OpenAI, azure_requests: list[dict[str, Any]]
) -> None:
    first, found = _search(client)
    second = client.responses.create(
        model="azure",
        previous_response_id=first.id,
        input=[found],
        tools=[SEARCH],  # type: ignore[list-item]
    )
    client.responses.create(
        model="azure",
        previous_response_id=second.id,
        input="Thanks.",
        tools=[SEARCH],  # type: ignore[list-item]
    )
    sent = azure_requests[-1]["body"]
    assert _offered(sent) == ["tool_search", "functions__exec", "mcp__github__create_issue"]
    roles = [message["role"] for message in sent["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]


def test_openai_s_server_searches_replayed_read_as_a_call_and_its_result(
    client: openai.OpenAI, azure_requests: list[dict[str, Any]]
) -> None:
    # From a conversation held at OpenAI: its hosted search, ids and all, no call ids.
    replayed: list[Any] = [
        ASK,
        {
            "type": "tool_search_call",
            "id": "tsc_1",
            "arguments": {"query": "issue"},
            "execution": "server",
            "status": "completed",
        },
        {"type": "tool_search_output", "id": "tso_1", "execution": "server", "tools": [GITHUB]},
        {"role": "user", "content": "Go on."},
    ]
    client.responses.create(
        model="azure",
        input=replayed,
        tools=[{"type": "tool_search"}, GITHUB],  # type: ignore[list-item]
    )
    sent = azure_requests[-1]["body"]
    assert _offered(sent) == ["mcp__github__create_issue"]  # OpenAI's search: left out
    call, result = sent["messages"][1:3]
    assert call["tool_calls"][0]["id"] == result["tool_call_id"] == "tsc_1"


def test_only_a_search_the_client_runs_is_offered() -> None:
    def kinds(tool: dict[str, Any]) -> str:
        asked = validate_request({"model": "m", "input": "Hi", "tools": [tool]})
        return type((asked.tools or [])[0]).__name__

    assert kinds(SEARCH) == "ToolSearchTool"
    assert kinds({"type": "tool_search"}) == "HostedTool"
    assert kinds({"type": "tool_search", "execution": "server"}) == "HostedTool"
