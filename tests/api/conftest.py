"""The ``openai`` client of an API test module, on that module's own
``gateway`` fixture (a module that needs another client defines its own
``client``)."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.support.openai_clients import openai_client
from tests.support.servers import GatewayProcess


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai_client(gateway) as client:
        yield client
