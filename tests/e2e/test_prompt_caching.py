"""Prompt caching for upstreams that cache only where marked, asked for in
OpenAI's terms, with the official ``openai`` SDK on both of its APIs: a
part's ``prompt_cache_breakpoint`` is an Anthropic ``cache_control`` marker
(the latest four kept, as OpenAI writes the latest four and Anthropic
refuses a fifth), a ``prompt_cache_key`` asks Anthropic to cache the request
at its top, a deployment with ``prompt_caching: auto`` caches every request;
an OpenAI-wire server other than OpenAI's is sent no breakpoint. The
Anthropic fake reports cache reads for any marker and refuses a fifth."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from interlock.config import parse_config
from tests.support.openai_clients import openai_client
from tests.support.provider_fleet import PROVIDER_MODELS, provider_gateway
from tests.support.servers import GatewayProcess

BREAK = {"mode": "explicit"}
LONG = {"mode": "explicit", "ttl": "12h"}


@pytest.fixture(scope="module")
def anthropic_sent() -> list[dict[str, Any]]:
    return []


@pytest.fixture(scope="module")
def azure_sent() -> list[dict[str, Any]]:
    return []


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    anthropic_sent: list[dict[str, Any]],
    azure_sent: list[dict[str, Any]],
) -> Iterator[GatewayProcess]:
    every = {**PROVIDER_MODELS["claude"], "prompt_caching": "auto"}
    with provider_gateway(
        tmp_path_factory.mktemp("gw"),
        more_models={"claude-cached": every},
        anthropic_requests=anthropic_sent,
        azure_requests=azure_sent,
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai_client(gateway) as client:
        yield client


def _text(text: str, breakpoint: dict[str, Any] | None = None) -> dict[str, Any]:
    part: dict[str, Any] = {"type": "text", "text": text}
    if breakpoint is not None:
        part["prompt_cache_breakpoint"] = breakpoint
    return part


def _markers(sent: dict[str, Any]) -> list[Any]:
    blocks = [
        block for m in sent["messages"] if isinstance(m["content"], list) for block in m["content"]
    ]
    if isinstance(sent.get("system"), list):
        blocks = [*sent["system"], *blocks]
    return [block.get("cache_control") for block in blocks if "cache_control" in block]


def test_chat_breakpoints_are_anthropic_markers_the_latest_four_kept(
    client: openai.OpenAI, anthropic_sent: list[dict[str, Any]]
) -> None:
    turns: list[Any] = [{"role": "system", "content": [_text("You are terse.", BREAK)]}]
    for n in range(3):
        turns.append({"role": "user", "content": [_text(f"Question {n}", BREAK)]})
        turns.append({"role": "assistant", "content": f"Answer {n}"})
    turns.append({"role": "user", "content": [_text("Last question", LONG)]})
    answer = client.chat.completions.create(model="claude", messages=turns, max_tokens=50)
    sent = anthropic_sent[-1]["body"]
    # Five breakpoints asked, four kept: the latest (the system's is dropped).
    assert _markers(sent) == [{"type": "ephemeral"}] * 3 + [{"type": "ephemeral", "ttl": "1h"}]
    assert sent["system"] == [{"type": "text", "text": "You are terse."}]
    assert "cache_control" not in sent
    assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens_details.cached_tokens == 100  # the fake read its cache


def test_a_cache_key_caches_the_request_at_its_top(
    client: openai.OpenAI, anthropic_sent: list[dict[str, Any]]
) -> None:
    client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "Hi"}], max_tokens=20
    )
    assert "cache_control" not in orjson.dumps(anthropic_sent[-1]["body"]).decode()
    client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "Hi"}],
        max_tokens=20,
        prompt_cache_key="conversation-1",
        prompt_cache_retention="24h",
    )
    assert anthropic_sent[-1]["body"]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}


def test_a_deployment_that_caches_every_request(
    client: openai.OpenAI, anthropic_sent: list[dict[str, Any]]
) -> None:
    client.chat.completions.create(
        model="claude-cached", messages=[{"role": "user", "content": "Hi"}], max_tokens=20
    )
    assert anthropic_sent[-1]["body"]["cache_control"] == {"type": "ephemeral"}
    # A marker of the client's own is where it caches, and nothing is added.
    client.chat.completions.create(
        model="claude-cached",
        messages=[{"role": "user", "content": [_text("Hi", BREAK)]}],
        max_tokens=20,
    )
    sent = anthropic_sent[-1]["body"]
    assert "cache_control" not in sent and _markers(sent) == [{"type": "ephemeral"}]


def test_responses_breakpoints_and_cache_key_reach_anthropic(
    client: openai.OpenAI, anthropic_sent: list[dict[str, Any]]
) -> None:
    part = {"type": "input_text", "text": "Read this", "prompt_cache_breakpoint": BREAK}
    marked = client.responses.create(
        model="claude",
        input=[{"role": "user", "content": [part]}],  # type: ignore[list-item]
        max_output_tokens=20,
    )
    assert _markers(anthropic_sent[-1]["body"]) == [{"type": "ephemeral"}]
    assert marked.usage is not None
    assert marked.usage.input_tokens_details.cached_tokens == 100
    # Codex's request: no breakpoints, its conversation's cache key.
    client.responses.create(
        model="claude", input="Go on", prompt_cache_key="thread-7", max_output_tokens=20
    )
    assert anthropic_sent[-1]["body"]["cache_control"] == {"type": "ephemeral"}


def test_a_compatible_server_is_sent_no_breakpoint(
    client: openai.OpenAI, azure_sent: list[dict[str, Any]]
) -> None:
    part = {"type": "input_text", "text": "Read this", "prompt_cache_breakpoint": BREAK}
    client.responses.create(
        model="azure",
        input=[{"role": "user", "content": [part]}],  # type: ignore[list-item]
        prompt_cache_options={"mode": "explicit"},  # type: ignore[arg-type]
    )
    sent = azure_sent[-1]["body"]
    assert sent["messages"][0]["content"] == [{"type": "text", "text": "Read this"}]
    assert "prompt_cache_options" not in sent


def test_automatic_caching_is_for_anthropic_deployments() -> None:
    models = [
        {
            "name": "m",
            "deployments": [{"id": "d", "provider": "simulator", "prompt_caching": "auto"}],
        }
    ]
    with pytest.raises(Exception, match="prompt_caching: auto"):
        parse_config({"models": models})
