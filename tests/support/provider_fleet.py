"""One gateway process in front of every provider: the Anthropic, Azure,
Gemini and Bedrock fakes on loopback and the simulator, one model each
(``claude``, ``azure``, ``gemini``, ``bedrock``, ``sim``), for the suites
that drive an SDK through every provider."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import TEST_KEY
from tests.support.fake_anthropic import anthropic_app
from tests.support.fake_azure import azure_app
from tests.support.fake_bedrock import TEST_ACCESS_KEY_ID, TEST_SECRET_ACCESS_KEY, bedrock_app
from tests.support.fake_gemini import gemini_app
from tests.support.servers import FakeUpstream, GatewayProcess

__all__ = ["PROVIDER_MODELS", "provider_gateway"]

# Each model's one deployment; those of a provider with a fake get its URL.
PROVIDER_MODELS: Mapping[str, Mapping[str, Any]] = {
    "claude": {"provider": "anthropic", "model": "claude-sonnet-4-5", "api_key": "test"},
    "azure": {"provider": "azure", "model": "gpt-4o", "api_key": "test"},
    "gemini": {"provider": "gemini", "model": "gemini-2.5-flash", "api_key": "test"},
    "bedrock": {
        "provider": "bedrock",
        "model": "anthropic.claude-3-5-sonnet-20240620-v1:0",
        "aws": {
            "region": "us-east-1",
            "access_key_id": TEST_ACCESS_KEY_ID,
            "secret_access_key": TEST_SECRET_ACCESS_KEY,
        },
    },
    "sim": {"provider": "simulator"},
}


@contextmanager
def provider_gateway(
    directory: Path,
    *,
    more_models: Mapping[str, Mapping[str, Any]] | None = None,
    keys: list[dict[str, Any]] | None = None,
    anthropic_requests: list[dict[str, Any]] | None = None,
    azure_requests: list[dict[str, Any]] | None = None,
    sections: Mapping[str, Any] | None = None,
    groups: Mapping[str, Mapping[str, Any]] | None = None,
) -> Iterator[GatewayProcess]:
    """The gateway (``TEST_KEY`` is the key ``test``), every fake closed
    after it. ``more_models``: more models by name, each one deployment
    (``<name>-1``); ``anthropic_requests``, ``azure_requests``: the Anthropic
    and Azure fakes record what they receive there; ``sections``: more top-level config;
    ``groups``: model groups by name (``routing``, ``deployments`` each naming
    its ``provider`` and ``id``), a deployment of a faked provider sent to its fake."""
    with ExitStack() as stack:
        fakes = {
            "anthropic": FakeUpstream(anthropic_app(anthropic_requests)),
            "azure": FakeUpstream(azure_app(azure_requests)),
            "gemini": FakeUpstream(gemini_app()),
            "bedrock": FakeUpstream(bedrock_app()),
        }
        for fake in fakes.values():
            stack.callback(fake.close)
        models = []
        for name, deployment in {**PROVIDER_MODELS, **(more_models or {})}.items():
            fake = fakes.get(deployment["provider"])
            url = {"base_url": fake.url} if fake is not None else {}
            models.append({"name": name, "deployments": [{"id": f"{name}-1", **deployment, **url}]})
        for name, group in (groups or {}).items():
            deployments = [
                {**d, **({"base_url": fakes[d["provider"]].url} if d["provider"] in fakes else {})}
                for d in group["deployments"]
            ]
            models.append({**group, "name": name, "deployments": deployments})
        config = {
            "models": models,
            "keys": [{"name": "test", "key": "os.environ/TEST_KEY"}, *(keys or [])],
            "batch": {"enabled": False},
            "registry": {"enabled": False},
            **(sections or {}),
        }
        gateway = GatewayProcess(config, directory, env={"TEST_KEY": TEST_KEY})
        try:
            yield gateway
        finally:
            gateway.close()
