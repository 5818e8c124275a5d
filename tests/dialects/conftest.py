"""The ``openai`` client of a dialect test module, on that module's own
``gateway`` fixture (a module that speaks another SDK defines its own
``client``), and the lists a module's fake Anthropic and Azure upstreams
record their requests in (``provider_gateway``'s ``anthropic_requests`` and
``azure_requests``), one pair per module, newest last."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.openai_clients import openai_client
from tests.support.servers import GatewayProcess


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai_client(gateway) as client:
        yield client


@pytest.fixture(scope="module")
def anthropic_requests() -> list[dict[str, Any]]:
    return []


@pytest.fixture(scope="module")
def azure_requests() -> list[dict[str, Any]]:
    return []
