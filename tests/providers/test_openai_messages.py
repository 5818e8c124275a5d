"""A conversation as each upstream on OpenAI's wire takes it: ``developer``
as ``system`` off OpenAI's API, and an earlier turn's ``reasoning_content``
sent, filled or dropped by the deployment's ``reasoning_history``
(``providers/openai_messages.py``). Through a gateway, with each dialect's
SDK against a strict fake DeepSeek: ``tests/dialects/test_openai_wire_servers.py``."""

from __future__ import annotations

from typing import Any

import pytest

from interlock.config import DeploymentConfig
from interlock.providers.base import CallContext
from interlock.providers.openai_compat import OpenAICompatibleProvider
from interlock.providers.openai_messages import fitted_messages

USER = {"role": "user", "content": "hi"}
CALLED = {
    "role": "assistant",
    "content": None,
    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
}
REASONED = {**CALLED, "reasoning_content": "I should call f."}
RESULT = {"role": "tool", "tool_call_id": "c1", "content": "42"}


def _fitted(messages: list[Any], **how: Any) -> list[Any]:
    settings = {"developer_as_system": False, "reasoning": None, "from_edge": False, **how}
    fitted = fitted_messages(messages, **settings)
    return messages if fitted is None else fitted


def test_a_chat_client_s_conversation_goes_as_sent_by_default() -> None:
    messages = [USER, REASONED, RESULT]
    assert (
        fitted_messages(messages, developer_as_system=False, reasoning=None, from_edge=False)
        is None
    )  # nothing copied for the usual request
    assert _fitted(messages) == [USER, REASONED, RESULT]


def test_an_edge_s_reasoning_goes_only_where_the_deployment_sends_it() -> None:
    messages = [USER, REASONED, RESULT]
    assert _fitted(messages, from_edge=True) == [USER, CALLED, RESULT]
    assert _fitted(messages, from_edge=True, reasoning="send") == messages
    assert _fitted(messages, from_edge=True, reasoning="drop") == [USER, CALLED, RESULT]
    assert _fitted(messages, reasoning="drop") == [USER, CALLED, RESULT]  # the client's too
    assert REASONED["reasoning_content"] == "I should call f."  # the body is not mutated


def test_always_fills_every_assistant_message_that_has_none() -> None:
    said = {"role": "assistant", "content": "Done."}
    emptied = {**CALLED, "reasoning_content": ""}
    fitted = _fitted([USER, CALLED, RESULT, said, USER, emptied, REASONED], reasoning="always")
    # Kimi refuses "" as missing; a space passes it and DeepSeek alike.
    assert [m.get("reasoning_content") for m in fitted] == [
        None,
        " ",
        None,
        " ",
        None,
        " ",
        "I should call f.",
    ]
    edge = _fitted([USER, REASONED], reasoning="always", from_edge=True)
    assert edge[1]["reasoning_content"] == "I should call f."  # kept, not emptied


def test_the_reasoning_goes_by_the_name_the_upstream_reads() -> None:
    as_vllm_writes = {**CALLED, "reasoning": "I should call f."}  # vLLM since 0.16
    to_vllm = _fitted([USER, REASONED], reasoning="send", field="reasoning", from_edge=True)
    assert to_vllm[1] == as_vllm_writes
    assert _fitted([USER, as_vllm_writes], reasoning="always")[1] == REASONED  # to DeepSeek
    assert _fitted([USER, as_vllm_writes], reasoning="drop")[1] == CALLED
    assert _fitted([USER, as_vllm_writes]) == [USER, as_vllm_writes]  # unset: as sent
    filled = _fitted([USER, CALLED], reasoning="always", field="reasoning")
    assert filled[1] == {**CALLED, "reasoning": " "}
    both = {**REASONED, "reasoning": "I should call f."}  # vLLM 0.11 to 0.15 wrote both
    assert _fitted([USER, both], reasoning="send")[1] == REASONED


def test_developer_becomes_system_where_the_upstream_knows_only_that() -> None:
    developer = {"role": "developer", "content": "Be brief."}
    assert _fitted([developer, USER], developer_as_system=True) == [
        {"role": "system", "content": "Be brief."},
        USER,
    ]
    assert _fitted([developer, USER]) == [developer, USER]


@pytest.mark.parametrize(
    ("deployment", "reasoning", "developer_as_system"),
    [
        ({"provider": "openai", "base_url": "https://api.deepseek.com"}, "always", True),
        ({"provider": "openai", "base_url": "https://api.deepseek.com/v1"}, "always", True),
        ({"provider": "openai", "base_url": "https://api.moonshot.ai/v1"}, "always", True),
        ({"provider": "openai", "base_url": "https://api.moonshot.cn/v1"}, "always", True),
        ({"provider": "openai", "base_url": "https://api.openai.com/v1"}, "drop", False),
        ({"provider": "openai", "base_url": "http://127.0.0.1:8000/v1"}, None, True),
        ({"provider": "azure", "base_url": "https://r.openai.azure.com"}, "drop", False),
        (
            {
                "provider": "openai",
                "base_url": "http://127.0.0.1:8000/v1",
                "reasoning_history": "send",
                "developer_role": "native",
            },
            "send",
            False,
        ),
        (
            {
                "provider": "openai",
                "base_url": "https://api.deepseek.com",
                "reasoning_history": "drop",
            },
            "drop",
            True,
        ),
        (
            {
                "provider": "azure",
                "base_url": "https://r.services.ai.azure.com",
                "reasoning_history": "always",
                "developer_role": "system",
            },
            "always",
            True,
        ),
    ],
)
def test_each_deployment_s_defaults(
    deployment: dict[str, Any], reasoning: str | None, developer_as_system: bool
) -> None:
    config = DeploymentConfig.model_validate({"id": "d", "model": "m", **deployment})
    assert config.reasoning_policy == reasoning
    assert config.developer_as_system is developer_as_system


@pytest.mark.parametrize(
    ("setting", "value"),
    [("reasoning_history", "send"), ("reasoning_field", "reasoning"), ("developer_role", "system")],
)
def test_only_openai_s_wire_takes_the_settings(setting: str, value: str) -> None:
    with pytest.raises(ValueError, match="for OpenAI's wire"):
        DeploymentConfig.model_validate(
            {"id": "d", "provider": "anthropic", "model": "m", setting: value}
        )


def test_openai_s_api_gets_no_earlier_reasoning_and_its_own_roles() -> None:
    """Not an edge's reasoning, nor a chat client's: a conversation failing
    over from DeepSeek carries its ``reasoning_content``, which OpenAI's
    models do not read."""
    config = DeploymentConfig.model_validate(
        {"id": "d", "provider": "openai", "model": "gpt-5", "base_url": "https://api.openai.com/v1"}
    )
    adapter = OpenAICompatibleProvider(config)
    developer = {"role": "developer", "content": "Be brief."}
    body = {"model": "public", "messages": [developer, USER, REASONED, RESULT]}
    sent = adapter._upstream_body(body, CallContext("r", "public", dialect="anthropic"))
    assert sent["messages"] == [developer, USER, CALLED, RESULT]
    assert sent["model"] == "gpt-5"
    assert body["messages"][2] is REASONED  # the pipeline's body is left as it was
    from_chat = adapter._upstream_body(body, CallContext("r", "public"))
    assert from_chat["messages"] == [developer, USER, CALLED, RESULT]
