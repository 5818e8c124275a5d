"""A model's aliases: other names a client may send (the model name an agent
hard-codes), answered as the model itself in every dialect, for keys that
may use it, counted under its own name; unique across every name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from interlock.app import create_app
from interlock.config import ConfigError, parse_config
from tests.conftest import TEST_KEY
from tests.support.servers import InProcessGateway

LIMITED_KEY = "sk-aliases-limited"


def _config(tmp_path: Path, **model: Any) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": "chat-small",
                "deployments": [{"id": "small-1", "provider": "simulator"}],
                **model,
            },
            {"name": "other", "deployments": [{"id": "other-1", "provider": "simulator"}]},
        ],
        "keys": [
            {"name": "test", "key": "os.environ/TEST_KEY"},
            {"name": "limited", "key": LIMITED_KEY, "allowed_models": ["chat-small"]},
        ],
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"},
        "batch": {"enabled": False},
        "server": {"access_log": False},
    }


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[InProcessGateway]:
    raw = _config(tmp_path, aliases=["claude-haiku-4-5", "gpt-4o-mini"])
    gateway = InProcessGateway(create_app(parse_config(raw, env={"TEST_KEY": TEST_KEY})))
    yield gateway
    gateway.close()


def test_an_alias_is_the_model_in_every_dialect_for_a_key_limited_to_it(
    gateway: InProcessGateway,
) -> None:
    url = gateway.base_url
    with openai.OpenAI(base_url=url + "/v1", api_key=LIMITED_KEY, max_retries=0) as client:
        chat = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        assert chat.http_response.status_code == 200
        assert chat.headers["x-interlock-deployment"] == "small-1"
        assert client.responses.create(model="gpt-4o-mini", input="hi").status == "completed"
        assert client.completions.create(model="gpt-4o-mini", prompt="hi").choices
        assert client.models.retrieve("gpt-4o-mini").id == "chat-small"
        with pytest.raises(openai.PermissionDeniedError):  # not an alias of it
            client.chat.completions.create(
                model="other", messages=[{"role": "user", "content": "hi"}]
            )
    with anthropic.Anthropic(base_url=url, api_key=LIMITED_KEY, max_retries=0) as claude:
        message = claude.messages.create(
            model="claude-haiku-4-5", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
        assert message.content
        counted = claude.messages.count_tokens(
            model="claude-haiku-4-5", messages=[{"role": "user", "content": "hi"}]
        )
        assert counted.input_tokens > 0
    metrics = httpx.get(url + "/metrics").text
    assert 'model="chat-small"' in metrics
    assert "gpt-4o-mini" not in metrics and "claude-haiku-4-5" not in metrics


def test_an_unknown_name_is_still_a_404(gateway: InProcessGateway) -> None:
    with openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=TEST_KEY, max_retries=0) as c:
        with pytest.raises(openai.NotFoundError):
            c.chat.completions.create(model="gpt-5", messages=[{"role": "user", "content": "x"}])
        assert [m.id for m in c.models.list()] == ["chat-small", "other"]  # aliases not listed


@pytest.mark.parametrize("clash", ["other", "chat-small"])
def test_an_alias_is_unique_across_every_name(tmp_path: Path, clash: str) -> None:
    with pytest.raises(ConfigError, match="duplicate model name or alias"):
        parse_config(_config(tmp_path, aliases=[clash]), env={"TEST_KEY": TEST_KEY})
