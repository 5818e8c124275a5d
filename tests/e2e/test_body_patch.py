"""A deployment's ``body_patch`` (``providers/body_patch.py``): the operator's
JSON merge patch over every chat request the deployment sends, in its own
API's shape, after the gateway's translation. Driven with the official
SDKs against fakes that record what they are sent: DeepSeek's fast mode
(thinking off), Kimi's fixed temperature (refused otherwise, as the real one
does), Anthropic, Gemini (a nested field beside the translated ones),
Bedrock (signed after the patch), OpenAI's Responses API and Azure (its
embeddings untouched)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import TEST_KEY
from tests.support.fake_anthropic import anthropic_app
from tests.support.fake_azure import azure_app
from tests.support.fake_bedrock import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, bedrock_app
from tests.support.fake_completions import BASE_MODEL, completions_app
from tests.support.fake_deepseek import MODEL, deepseek_app
from tests.support.fake_gemini import gemini_app
from tests.support.fake_responses import responses_app
from tests.support.servers import FakeUpstream, GatewayProcess

ASK: Any = [{"role": "user", "content": "Say hello."}]
FAST = {"thinking": {"type": "disabled"}}
# What every fake was sent, by its name.
FAKES = ("deepseek", "kimi", "anthropic", "gemini", "bedrock", "responses", "azure", "base")


@pytest.fixture(scope="module")
def sent() -> dict[str, list[dict[str, Any]]]:
    return {name: [] for name in FAKES}


def _deployment(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "deployments": [{"id": name, **fields}]}


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, sent: dict[str, list[dict[str, Any]]]
) -> Iterator[GatewayProcess]:
    with ExitStack() as stack:
        apps = {
            "deepseek": deepseek_app(sent["deepseek"]),
            "kimi": deepseek_app(sent["kimi"], fixed_temperature=True),
            "anthropic": anthropic_app(sent["anthropic"]),
            "gemini": gemini_app(sent["gemini"]),
            "bedrock": bedrock_app(sent["bedrock"]),
            "responses": responses_app(sent["responses"]),
            "azure": azure_app(sent["azure"]),
            "base": completions_app(sent["base"]),
        }
        url = {}
        for name, app in apps.items():
            fake = FakeUpstream(app)
            stack.callback(fake.close)
            url[name] = fake.url
        deepseek = {"provider": "openai", "model": MODEL, "base_url": url["deepseek"]}
        kimi = {"provider": "openai", "model": "kimi-k2.6", "base_url": url["kimi"]}
        models = [
            _deployment("deepseek", **deepseek),
            _deployment("deepseek-fast", **deepseek, body_patch=FAST),
            _deployment("kimi", **kimi),
            _deployment("kimi-fixed", **kimi, body_patch={"temperature": 1}),
            _deployment("kimi-dropped", **kimi, drop_params=["temperature"]),
            _deployment(
                "claude",
                provider="anthropic",
                model="claude-sonnet-4-5",
                api_key="test",
                base_url=url["anthropic"],
                body_patch={"temperature": None, "top_k": 5, "metadata": {"user_id": "ops"}},
            ),
            _deployment(
                "gemini",
                provider="gemini",
                model="gemini-2.5-flash",
                api_key="test",
                base_url=url["gemini"],
                body_patch={"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}},
            ),
            _deployment(
                "bedrock",
                provider="bedrock",
                model="anthropic.claude-3-5-sonnet-20240620-v1:0",
                base_url=url["bedrock"],
                aws={
                    "region": "us-east-1",
                    "access_key_id": TEST_ACCESS_KEY_ID,
                    "secret_access_key": TEST_SECRET_ACCESS_KEY,
                },
                body_patch={"performanceConfig": {"latency": "optimized"}},
            ),
            _deployment(
                "codex",
                provider="openai",
                model="gpt-5-codex",
                api_key="test",
                base_url=url["responses"] + "/v1",
                api="responses",
                body_patch={"reasoning": {"effort": "high"}, "text": {"verbosity": "low"}},
            ),
            _deployment(
                "azure",
                provider="azure",
                model="gpt-4o",
                api_key="test",
                base_url=url["azure"],
                body_patch={"temperature": 0.25},
            ),
            # A base model on vLLM: a legacy completion goes to its own /completions.
            _deployment(
                "base",
                provider="openai",
                model=BASE_MODEL,
                base_url=url["base"] + "/v1",
                body_patch={"temperature": 0, "repetition_penalty": 1.1},
            ),
        ]
        config = {
            "models": models,
            "keys": [{"name": "test", "key": "os.environ/TEST_KEY"}],
            "batch": {"enabled": False},
            "registry": {"enabled": False},
        }
        gateway = GatewayProcess(config, tmp_path_factory.mktemp("gw"), env={"TEST_KEY": TEST_KEY})
        stack.callback(gateway.close)
        yield gateway


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key=TEST_KEY, max_retries=0) as c:
        yield c


def _chat(client: openai.OpenAI, model: str, stream: bool, **params: Any) -> tuple[str, str]:
    """The answer's text and reasoning (DeepSeek's ``reasoning_content``)."""
    if not stream:
        message = client.chat.completions.create(model=model, messages=ASK, **params)
        said = message.choices[0].message
        return said.content or "", getattr(said, "reasoning_content", None) or ""
    text, reasoning = "", ""
    for chunk in client.chat.completions.create(model=model, messages=ASK, stream=True, **params):
        for choice in chunk.choices:
            text += choice.delta.content or ""
            reasoning += getattr(choice.delta, "reasoning_content", None) or ""
    return text, reasoning


@pytest.mark.parametrize("stream", [False, True])
def test_a_fast_deployment_turns_deepseek_s_thinking_off(
    client: openai.OpenAI, sent: dict[str, list[dict[str, Any]]], stream: bool
) -> None:
    text, reasoning = _chat(client, "deepseek", stream)
    assert text == "Hello from DeepSeek." and reasoning  # thinking is on by default
    assert "thinking" not in sent["deepseek"][-1]
    text, reasoning = _chat(client, "deepseek-fast", stream)
    assert (text, reasoning) == ("Hello from DeepSeek.", "")
    assert sent["deepseek"][-1]["thinking"] == {"type": "disabled"}


@pytest.mark.parametrize("stream", [False, True])
def test_kimi_s_fixed_temperature_is_sent_whatever_the_client_asked(
    client: openai.OpenAI, sent: dict[str, list[dict[str, Any]]], stream: bool
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        _chat(client, "kimi", stream, temperature=0.2)
    assert "only 1 is allowed" in str(refused.value)
    assert _chat(client, "kimi-fixed", stream, temperature=0.2)[0] == "Hello from DeepSeek."
    assert sent["kimi"][-1]["temperature"] == 1
    # Or left out, for the server to use the one it fixes.
    assert _chat(client, "kimi-dropped", stream, temperature=0.2)[0] == "Hello from DeepSeek."
    assert "temperature" not in sent["kimi"][-1]


@pytest.mark.parametrize("stream", [False, True])
def test_claude_code_s_request_reaches_anthropic_patched(
    gateway: GatewayProcess, sent: dict[str, list[dict[str, Any]]], stream: bool
) -> None:
    with anthropic.Anthropic(base_url=gateway.base_url, api_key=TEST_KEY, max_retries=0) as claude:
        params: Any = {
            "model": "claude",
            "max_tokens": 256,
            "extra_body": {"temperature": 0.5},  # this SDK has no parameter for it
            "metadata": {"user_id": "claude-code-session"},
            "messages": ASK,
        }
        if stream:
            with claude.messages.stream(**params) as events:
                answer = events.get_final_message()
        else:
            answer = claude.messages.create(**params)
    assert answer.content[0].type == "text"
    body = sent["anthropic"][-1]["body"]
    assert "temperature" not in body  # null takes the client's out
    assert (body["top_k"], body["metadata"]) == (5, {"user_id": "ops"})
    assert body["max_tokens"] == 256 and body["messages"][0]["role"] == "user"


@pytest.mark.parametrize("stream", [False, True])
def test_a_nested_field_joins_what_the_gateway_translated_for_gemini(
    client: openai.OpenAI, sent: dict[str, list[dict[str, Any]]], stream: bool
) -> None:
    assert _chat(client, "gemini", stream, temperature=0.3, max_tokens=50)[0]
    config = sent["gemini"][-1]["body"]["generationConfig"]
    assert config["temperature"] == 0.3 and config["maxOutputTokens"] == 50
    assert config["thinkingConfig"] == {"thinkingBudget": 0}


@pytest.mark.parametrize("stream", [False, True])
def test_bedrock_is_sent_the_patched_body_signed(
    client: openai.OpenAI, sent: dict[str, list[dict[str, Any]]], stream: bool
) -> None:
    # The fake checks the SigV4 signature over the bytes it received.
    assert _chat(client, "bedrock", stream, max_tokens=50)[0]
    body = sent["bedrock"][-1]["body"]
    assert body["performanceConfig"] == {"latency": "optimized"}
    assert body["inferenceConfig"]["maxTokens"] == 50


@pytest.mark.parametrize("stream", [False, True])
def test_a_responses_api_deployment_is_sent_the_patch_merged(
    client: openai.OpenAI, sent: dict[str, list[dict[str, Any]]], stream: bool
) -> None:
    assert _chat(client, "codex", stream, reasoning_effort="low")[0]
    body = sent["responses"][-1]["body"]
    assert body["reasoning"]["effort"] == "high"  # the operator's, over the client's low
    assert body["text"]["verbosity"] == "low"
    assert body["input"][0]["role"] == "user"


def test_embeddings_are_not_patched(
    client: openai.OpenAI, sent: dict[str, list[dict[str, Any]]]
) -> None:
    assert _chat(client, "azure", False, temperature=0.9)[0]
    assert sent["azure"][-1]["body"]["temperature"] == 0.25
    client.embeddings.create(model="azure", input="hello")
    embedded = sent["azure"][-1]
    assert embedded["path"].endswith("/embeddings") and "temperature" not in embedded["body"]


@pytest.mark.parametrize("stream", [False, True])
def test_a_legacy_completion_sent_to_the_server_s_own_completions_is_patched(
    client: openai.OpenAI, sent: dict[str, list[dict[str, Any]]], stream: bool
) -> None:
    if stream:
        chunks = client.completions.create(
            model="base", prompt="Rain falls", temperature=0.9, stream=True
        )
        said = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
    else:
        answer = client.completions.create(model="base", prompt="Rain falls", temperature=0.9)
        said = answer.choices[0].text
    assert said
    body = sent["base"][-1]["body"]
    assert sent["base"][-1]["path"] == "/v1/completions" and body["prompt"] == "Rain falls"
    assert (body["temperature"], body["repetition_penalty"]) == (0, 1.1)
