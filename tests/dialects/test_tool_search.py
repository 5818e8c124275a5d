"""Claude Code's tool search through the Messages edge: its MCP tools
deferred (``defer_loading``), a ToolSearch tool, and results that load
tools with ``tool_reference`` blocks, driven with the ``anthropic`` SDK.
An Anthropic deployment is sent all of it as it came (the fake refuses a
reference to a tool it was not given, as the real API does); every other
upstream is offered what Anthropic's model would see: the tools not
deferred and those loaded so far, each reference a line of the result's
text (``pipeline/deferred_tools.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import pytest

from tests.conftest import TEST_KEY
from tests.support.fake_deepseek import MODEL, deepseek_app
from tests.support.provider_fleet import provider_gateway
from tests.support.servers import FakeUpstream, GatewayProcess


def _tool(name: str, deferred: bool) -> Any:
    tool: Any = {
        "name": name,
        "description": f"The {name} tool.",
        "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}},
    }
    return {**tool, "defer_loading": True} if deferred else tool


TOOLS = [_tool("ToolSearch", False), _tool("get_weather", True), _tool("get_time", True)]
ASK: Any = {"role": "user", "content": "What is the weather in Paris?"}


@pytest.fixture(scope="module")
def deepseek_sent() -> list[dict[str, Any]]:
    return []


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    anthropic_requests: list[dict[str, Any]],
    deepseek_sent: list[dict[str, Any]],
) -> Iterator[GatewayProcess]:
    fake = FakeUpstream(deepseek_app(deepseek_sent))
    deepseek = {
        "provider": "openai",
        "model": MODEL,
        "base_url": fake.url,
        "body_patch": {"thinking": {"type": "disabled"}},
    }
    try:
        with provider_gateway(
            tmp_path_factory.mktemp("gw"),
            more_models={"deepseek": deepseek},
            anthropic_requests=anthropic_requests,
        ) as gateway:
            yield gateway
    finally:
        fake.close()


@pytest.fixture(scope="module")
def claude(gateway: GatewayProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.base_url, api_key=TEST_KEY, max_retries=0) as c:
        yield c


def _turn(client: anthropic.Anthropic, model: str, messages: list[Any]) -> Any:
    with client.messages.stream(
        model=model, max_tokens=512, tools=TOOLS, messages=messages
    ) as stream:
        return stream.get_final_message()


def _searched(client: anthropic.Anthropic, model: str) -> tuple[Any, Any]:
    """The model's ToolSearch call, then its answer to a result that loads
    ``get_weather``."""
    first = _turn(client, model, [ASK])
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert call.name == "ToolSearch"  # the deferred tools are not loaded yet
    return first, _turn(client, model, _loading(first))


def _loading(first: Any) -> list[Any]:
    """The conversation after ``first``, its search's result loading ``get_weather``."""
    [call] = [block for block in first.content if block.type == "tool_use"]
    reference = {"type": "tool_reference", "tool_name": "get_weather"}
    result = {"type": "tool_result", "tool_use_id": call.id, "content": [reference]}
    return [
        ASK,
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [result]},
    ]


def test_anthropic_is_sent_the_deferred_tools_and_the_references_as_they_came(
    claude: anthropic.Anthropic, anthropic_requests: list[dict[str, Any]]
) -> None:
    _, answer = _searched(claude, "claude")
    assert answer.content[-1].text == "Tool said: loaded get_weather"
    body = anthropic_requests[-1]["body"]
    deferred = {tool["name"]: tool.get("defer_loading", False) for tool in body["tools"]}
    assert deferred == {"ToolSearch": False, "get_weather": True, "get_time": True}
    [result] = body["messages"][-1]["content"]
    assert result["content"] == [{"type": "tool_reference", "tool_name": "get_weather"}]


def test_another_upstream_is_offered_the_tools_the_search_loaded(
    claude: anthropic.Anthropic, deepseek_sent: list[dict[str, Any]]
) -> None:
    _, answer = _searched(claude, "deepseek")
    assert answer.content[-1].text == "Tool said: Tool loaded: get_weather."
    searching, answering = deepseek_sent[-2:]
    offered = [
        [tool["function"]["name"] for tool in body["tools"]] for body in (searching, answering)
    ]
    assert offered == [["ToolSearch"], ["ToolSearch", "get_weather"]]
    assert all("defer_loading" not in tool for tool in answering["tools"])
    result = answering["messages"][-1]
    assert (result["role"], result["content"]) == ("tool", "Tool loaded: get_weather")
    assert "tool_references" not in result and "deferred_tools" not in answering


@pytest.mark.parametrize("model", ["gemini", "bedrock", "sim"])
def test_every_provider_answers_a_tool_search(claude: anthropic.Anthropic, model: str) -> None:
    _, answer = _searched(claude, model)
    assert "get_weather" in answer.content[-1].text


def test_a_reference_counts_its_tokens(claude: anthropic.Anthropic) -> None:
    # count_tokens takes the same blocks (Claude Code counts before it sends).
    messages = _loading(_turn(claude, "sim", [ASK]))
    counted = claude.messages.count_tokens(model="sim", tools=TOOLS, messages=messages)
    assert counted.input_tokens > 0
