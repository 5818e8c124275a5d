"""The official ``openai`` SDK pointed at a gateway under test, and the
Responses function tool the dialect tests share."""

from __future__ import annotations

import openai
from openai.types.responses import FunctionToolParam

from tests.conftest import TEST_KEY
from tests.support.servers import GatewayProcess

__all__ = ["WEATHER", "openai_client"]

# The tool every fake upstream calls first (the shared fake-server contract).
WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "strict": None,
}


def openai_client(gateway: GatewayProcess, key: str = TEST_KEY) -> openai.OpenAI:
    """No retries: a test sees the gateway's first answer."""
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
