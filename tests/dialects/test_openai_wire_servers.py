"""Coding agents' tool loops on DeepSeek's thinking mode, through the
gateway: Claude Code's Messages, Codex's Responses and a chat client, each
with its official SDK, against a fake DeepSeek as strict as the real one
(``tests/support/fake_deepseek.py``): it refuses the ``developer`` role and,
once a tool was called, any assistant message without its
``reasoning_content``; and, the same fake answering and reading
``reasoning`` as vLLM does since 0.16, a vLLM-like server. The edges carry
a turn's reasoning as ``reasoning_content`` (from thinking blocks, reasoning
items) and read an answer's by either name; the deployment's
``reasoning_history`` and ``reasoning_field`` decide what reaches the
upstream (``providers/openai_messages.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import TEST_KEY
from tests.support.fake_deepseek import CACHE_HITS, MODEL, REASONED, deepseek_app
from tests.support.fake_mistral import ANSWER, mistral_app
from tests.support.servers import FakeUpstream, GatewayProcess

REDACTING_KEY = "sk-deepseek-redacting"
EMAIL = "jane.doe@example.com"
WEATHER: Any = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
FUNCTION: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": False,
}
ASK: Any = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def upstream() -> list[dict[str, Any]]:
    return []  # the bodies the fake DeepSeek was sent, in order


@pytest.fixture(scope="module")
def vllm_upstream() -> list[dict[str, Any]]:
    return []  # the bodies the vLLM-like fake was sent, in order


@pytest.fixture(scope="module")
def kimi_upstream() -> list[dict[str, Any]]:
    return []  # the bodies the Kimi-like fake was sent, in order


@pytest.fixture(scope="module")
def gpt_upstream() -> list[dict[str, Any]]:
    return []  # the bodies the fake OpenAI reasoning model was sent, in order


@pytest.fixture(scope="module")
def mistral_upstream() -> list[dict[str, Any]]:
    return []  # the bodies the fake Mistral was sent, in order


# Each reasoning model: the list its fake records in, and the name it reads
# a turn's reasoning by.
MODELS = [("deepseek", "reasoning_content"), ("vllm", "reasoning")]


@pytest.fixture(scope="module")
def sent(
    upstream: list[dict[str, Any]],
    vllm_upstream: list[dict[str, Any]],
    kimi_upstream: list[dict[str, Any]],
) -> dict[str, list[dict[str, Any]]]:
    return {"deepseek": upstream, "vllm": vllm_upstream, "kimi": kimi_upstream}


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    upstream: list[dict[str, Any]],
    vllm_upstream: list[dict[str, Any]],
    kimi_upstream: list[dict[str, Any]],
    gpt_upstream: list[dict[str, Any]],
    mistral_upstream: list[dict[str, Any]],
) -> Iterator[GatewayProcess]:
    fake = FakeUpstream(deepseek_app(upstream))
    vllm = FakeUpstream(deepseek_app(vllm_upstream, field="reasoning"))
    kimi = FakeUpstream(deepseek_app(kimi_upstream, empty_is_missing=True))
    gpt = FakeUpstream(deepseek_app(gpt_upstream, refuses_max_tokens=True))
    mistral = FakeUpstream(mistral_app(mistral_upstream))
    # The fake is on loopback: at api.deepseek.com ``always`` is the default.
    served = {"provider": "openai", "model": MODEL, "base_url": fake.url}
    config = {
        "models": [
            {
                "name": "deepseek",
                "deployments": [{"id": "ds", **served, "reasoning_history": "always"}],
            },
            # Moonshot's Kimi, which refuses "" (at api.moonshot.ai, ``always`` is the default).
            {
                "name": "kimi",
                "deployments": [
                    {
                        "id": "kimi",
                        "provider": "openai",
                        "model": "kimi-k2.6",
                        "base_url": kimi.url,
                        "reasoning_history": "always",
                    }
                ],
            },
            # An OpenAI reasoning model (at api.openai.com, max_completion_tokens is the default).
            {
                "name": "gpt-5",
                "deployments": [
                    {
                        "id": "gpt-5",
                        "provider": "openai",
                        "model": "gpt-5",
                        "base_url": gpt.url,
                        "max_tokens_field": "max_completion_tokens",
                    }
                ],
            },
            # Mistral, which refuses fields it does not know (at api.mistral.ai
            # strict_fields and max_tokens are the defaults).
            {
                "name": "mistral",
                "deployments": [
                    {
                        "id": "mistral",
                        "provider": "openai",
                        "model": "devstral-medium-latest",
                        "base_url": mistral.url + "/v1",
                        "strict_fields": True,
                        # reasoning_effort: what the Messages edge writes for thinking.
                        "drop_params": ["reasoning_effort"],
                        "max_tokens_field": "max_tokens",
                    }
                ],
            },
            # A compatible server's default: an edge's reasoning is not sent.
            {"name": "deepseek-unset", "deployments": [{"id": "ds-unset", **served}]},
            {
                "name": "vllm",
                "deployments": [
                    {
                        "id": "vllm",
                        "provider": "openai",
                        "model": "moonshotai/Kimi-K2.5",
                        "base_url": vllm.url,
                        "reasoning_history": "send",
                        "reasoning_field": "reasoning",
                    }
                ],
            },
        ],
        "keys": [
            {"name": "test", "key": "os.environ/TEST_KEY"},
            {
                "name": "redacting",
                "key": REDACTING_KEY,
                "guardrails": {"pii": {"action": "redact"}},
            },
        ],
        "batch": {"enabled": False},
        "registry": {"enabled": False},
    }
    gateway = GatewayProcess(config, tmp_path_factory.mktemp("gw"), env={"TEST_KEY": TEST_KEY})
    yield gateway
    gateway.close()
    fake.close()
    vllm.close()
    kimi.close()
    gpt.close()
    mistral.close()


def _anthropic(gateway: GatewayProcess, key: str = TEST_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def claude(gateway: GatewayProcess) -> Iterator[anthropic.Anthropic]:
    with _anthropic(gateway) as client:
        yield client


def _claude_turn(client: anthropic.Anthropic, model: str, messages: list[Any]) -> Any:
    with client.messages.stream(
        model=model,
        max_tokens=4096,
        thinking={"type": "enabled", "budget_tokens": 2048},
        tools=[WEATHER],
        messages=messages,
    ) as stream:
        return stream.get_final_message()


def _results(first: Any, said: str) -> dict[str, Any]:
    [call] = [block for block in first.content if block.type == "tool_use"]
    return {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": call.id, "content": said}],
    }


@pytest.mark.parametrize(("model", "field"), MODELS)
def test_claude_code_s_streamed_tool_loop_gives_deepseek_its_reasoning_back(
    claude: anthropic.Anthropic, sent: dict[str, list[dict[str, Any]]], model: str, field: str
) -> None:
    first = _claude_turn(claude, model, ASK)
    assert [block.type for block in first.content] == ["thinking", "tool_use"]
    assert first.content[0].thinking == f"{REASONED} 1."
    turns = [*ASK, {"role": "assistant", "content": first.content}, _results(first, "sunny")]
    second = _claude_turn(claude, model, turns)
    assert second.stop_reason == "end_turn"
    assert [block.type for block in second.content] == ["thinking", "text"]
    assert second.content[1].text == "Tool said: sunny."
    # DeepSeek's cache hits (prompt_cache_hit_tokens) are Anthropic's cache reads.
    assert (second.usage.cache_read_input_tokens, second.usage.input_tokens) == (CACHE_HITS, 4)
    request = sent[model][-1]
    assistant = request["messages"][1]
    assert assistant[field] == f"{REASONED} 1."
    assert [name for name in ("reasoning", "reasoning_content") if name in assistant] == [field]
    assert assistant["tool_calls"][0]["function"]["name"] == "get_weather"
    assert "thinking_blocks" not in assistant and "thinking" not in request


def test_without_the_setting_a_compatible_server_is_not_sent_an_edge_s_reasoning(
    claude: anthropic.Anthropic, upstream: list[dict[str, Any]]
) -> None:
    first = _claude_turn(claude, "deepseek-unset", ASK)
    turns = [*ASK, {"role": "assistant", "content": first.content}, _results(first, "sunny")]
    upstream.clear()
    with pytest.raises(anthropic.BadRequestError, match="reasoning_content"):
        _claude_turn(claude, "deepseek-unset", turns)
    assert "reasoning_content" not in upstream[-1]["messages"][1]


@pytest.mark.parametrize(("model", "field"), MODELS)
def test_codex_s_streamed_tool_loop_reaches_deepseek(
    client: openai.OpenAI, sent: dict[str, list[dict[str, Any]]], model: str, field: str
) -> None:
    """Codex's shape: instructions, a developer message, store false with
    the encrypted reasoning asked for, the output items as the next input."""
    conversation: list[Any] = [
        {"type": "message", "role": "developer", "content": "Work in /repo."},
        {"type": "message", "role": "user", "content": "What is the weather in Paris?"},
    ]
    asked: Any = {
        "model": model,
        "instructions": "You are a coding agent.",
        "tools": [FUNCTION],
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "reasoning": {"effort": "high", "summary": "auto"},
    }
    with client.responses.stream(input=conversation, **asked) as stream:
        first = stream.get_final_response()
    assert [item.type for item in first.output] == ["reasoning", "function_call"]
    assert first.output[0].summary[0].text == f"{REASONED} 1."
    [call] = [item for item in first.output if item.type == "function_call"]
    conversation += [item.model_dump(exclude_none=True) for item in first.output]
    conversation += [{"type": "function_call_output", "call_id": call.call_id, "output": "rain"}]
    with client.responses.stream(input=conversation, **asked) as stream:
        second = stream.get_final_response()
    assert second.output_text == "Tool said: rain."
    messages = sent[model][-1]["messages"]
    assert [m["role"] for m in messages] == ["system", "system", "user", "assistant", "tool"]
    assert messages[1]["content"] == "Work in /repo."  # the developer message, as system
    assert messages[3][field] == f"{REASONED} 1."


@pytest.mark.parametrize(("model", "field"), MODELS)
def test_a_stored_response_continued_gives_deepseek_its_reasoning_back(
    client: openai.OpenAI, sent: dict[str, list[dict[str, Any]]], model: str, field: str
) -> None:
    first = client.responses.create(
        model=model, input="What is the weather in Paris?", tools=[FUNCTION]
    )
    assert [item.type for item in first.output] == ["reasoning", "function_call"]
    [call] = [item for item in first.output if item.type == "function_call"]
    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "fog"}],
        tools=[FUNCTION],
    )
    assert second.output_text == "Tool said: fog."
    assert second.usage is not None
    assert second.usage.input_tokens_details.cached_tokens == CACHE_HITS
    assert sent[model][-1]["messages"][1][field] == f"{REASONED} 1."


@pytest.mark.parametrize("model", ["deepseek", "kimi"])
def test_a_chat_client_that_keeps_no_reasoning_still_runs_its_tool_loop(
    client: openai.OpenAI, sent: dict[str, list[dict[str, Any]]], model: str
) -> None:
    """Many agent frameworks keep only an answer's content and calls; a
    placeholder where the reasoning was not kept passes both APIs (Kimi
    refuses an empty one)."""
    tools: Any = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    messages: list[Any] = [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": "What is the weather in Paris?"},
    ]
    first = client.chat.completions.create(model=model, messages=messages, tools=tools)
    answer = first.choices[0].message
    assert answer.tool_calls is not None
    assert answer.model_extra is not None and answer.model_extra["reasoning_content"]
    [call] = answer.tool_calls
    messages.append({"role": "assistant", "content": None, "tool_calls": [call.model_dump()]})
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "snow"})
    stream = client.chat.completions.create(
        model=model, messages=messages, tools=tools, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Tool said: snow."
    request = sent[model][-1]["messages"]
    assert request[0]["role"] == "system" and request[2]["reasoning_content"] == " "


def test_the_reasoning_sent_back_is_redacted_like_the_rest(
    gateway: GatewayProcess, upstream: list[dict[str, Any]]
) -> None:
    turns: Any = [
        *ASK,
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": f"Mail {EMAIL} later.", "signature": ""},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "hail"}],
        },
    ]
    upstream.clear()
    with _anthropic(gateway, REDACTING_KEY) as redacting:
        answer = _claude_turn(redacting, "deepseek", turns)
    assert answer.content[-1].text == "Tool said: hail."
    reasoning = upstream[-1]["messages"][1]["reasoning_content"]
    assert EMAIL not in reasoning and reasoning.startswith("Mail ")


def test_claude_code_reaches_an_openai_reasoning_model_without_thinking(
    claude: anthropic.Anthropic, gpt_upstream: list[dict[str, Any]]
) -> None:
    """Claude Code's ``max_tokens`` (its small model's calls have no thinking)
    reaches gpt-5 as ``max_completion_tokens``, the only name it takes."""
    answer = claude.messages.create(model="gpt-5", max_tokens=512, messages=ASK)
    assert [block.type for block in answer.content] == ["thinking", "text"]
    sent = gpt_upstream[-1]
    assert sent["max_completion_tokens"] == 512 and "max_tokens" not in sent


def test_a_streamed_chat_reaches_mistral_and_is_accounted(
    client: openai.OpenAI, mistral_upstream: list[dict[str, Any]]
) -> None:
    """Mistral refuses ``stream_options``, which the gateway asks every
    upstream for (its accounting), and ``user``; it reports usage on its last
    chunk unasked, and the usage still counts."""
    stream = client.chat.completions.create(
        model="mistral",
        messages=[{"role": "user", "content": "Salut"}],
        stream=True,
        stream_options={"include_usage": True},
        max_completion_tokens=64,
        user="u-1",
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert [c.usage.total_tokens for c in chunks if c.usage] == [10]
    sent = mistral_upstream[-1]
    assert "stream_options" not in sent and "user" not in sent and sent["max_tokens"] == 64


def test_claude_code_streams_from_mistral_with_its_usage(
    claude: anthropic.Anthropic, mistral_upstream: list[dict[str, Any]]
) -> None:
    with claude.messages.stream(
        model="mistral",
        max_tokens=256,
        thinking={"type": "enabled", "budget_tokens": 1024},  # max_completion_tokens
        metadata={"user_id": "claude-code-user"},  # as Claude Code sends it: chat's user
        messages=[{"role": "user", "content": "Salut"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == ANSWER
    assert (final.usage.input_tokens, final.usage.output_tokens) == (7, 3)
    sent = mistral_upstream[-1]
    assert sent["max_tokens"] == 256 and "reasoning_effort" not in sent
