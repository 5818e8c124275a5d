"""Each class of input token at its own rate: plain input, prompt-cache
reads and prompt-cache writes, exactly; and through a gateway, an Anthropic
answer with cache reads and writes is charged exactly that in the ledger."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from interlock.app import create_app
from interlock.config import PriceConfig, parse_config
from interlock.pipeline.pricing import TokenClasses, token_classes, usage_cost
from tests.conftest import TEST_KEY
from tests.support.servers import FakeUpstream, InProcessGateway
from tests.support.waiting import wait_for

# Anthropic-like rates: cache reads a tenth of input, writes 1.25 times it.
PRICE = PriceConfig(
    input_per_million=3.0,
    output_per_million=15.0,
    cached_input_per_million=0.3,
    cache_write_per_million=3.75,
)
USAGE: dict[str, Any] = {
    "prompt_tokens": 1_000_000,
    "completion_tokens": 200_000,
    "prompt_tokens_details": {"cached_tokens": 600_000, "cache_write_tokens": 100_000},
}


def test_a_known_usage_with_cached_tokens_costs_exactly_its_classes() -> None:
    assert token_classes(USAGE) == TokenClasses(300_000, 600_000, 100_000, 200_000)
    # 0.3 M plain x 3 + 0.6 M read x 0.3 + 0.1 M written x 3.75 + 0.2 M out x 15
    assert usage_cost(USAGE, PRICE) == 0.9 + 0.18 + 0.375 + 3.0 == 4.455
    # Everything at the input rate, as before: 3 + 3 = 6.0, a third too much.
    assert usage_cost(USAGE, PriceConfig(input_per_million=3.0, output_per_million=15.0)) == 6.0


@pytest.mark.parametrize(
    ("details", "classes"),
    [
        (None, TokenClasses(100, 0, 0, 10)),
        ({"cached_tokens": 40}, TokenClasses(60, 40, 0, 10)),
        ({"cached_tokens": 500}, TokenClasses(0, 100, 0, 10)),  # never more than the prompt
        ({"cached_tokens": 80, "cache_write_tokens": 50}, TokenClasses(0, 80, 20, 10)),
        ({"cached_tokens": "40", "cache_write_tokens": -3}, TokenClasses(100, 0, 0, 10)),
    ],
)
def test_odd_details_never_count_a_token_twice(
    details: dict[str, Any] | None, classes: TokenClasses
) -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 10, "prompt_tokens_details": details}
    assert token_classes(usage) == classes


@pytest.mark.parametrize(
    ("extra", "read"),
    [
        ({"prompt_cache_hit_tokens": 70, "prompt_cache_miss_tokens": 30}, 70),  # DeepSeek's
        # OpenAI's name wins where both are (newer DeepSeek answers carry both, equal).
        ({"prompt_cache_hit_tokens": 70, "prompt_tokens_details": {"cached_tokens": 50}}, 50),
        ({"prompt_cache_hit_tokens": "70"}, 0),
    ],
)
def test_deepseek_s_cache_hits_are_cache_reads(extra: dict[str, Any], read: int) -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 10, **extra}
    assert token_classes(usage) == TokenClasses(100 - read, read, 0, 10)


@pytest.fixture
def gateway(
    fake_upstream: Callable[[web.Application], FakeUpstream], tmp_path: Path
) -> Iterator[InProcessGateway]:
    async def messages(request: web.Request) -> web.Response:
        usage = {
            "input_tokens": 300_000,
            "cache_read_input_tokens": 600_000,
            "cache_creation_input_tokens": 100_000,
            "output_tokens": 200_000,
        }
        return web.json_response(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude-x",
                "content": [{"type": "text", "text": "cached"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": usage,
            }
        )

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    upstream = fake_upstream(app)
    raw = {
        "models": [
            {
                "name": "claude",
                "deployments": [
                    {
                        "id": "claude-1",
                        "provider": "anthropic",
                        "model": "claude-x",
                        "base_url": upstream.url,
                        "api_key": "sk-ant-test",
                        "price": PRICE.model_dump(),
                    }
                ],
            }
        ],
        "keys": [{"name": "team", "key": TEST_KEY}],
        "server": {"admin_key": "sk-admin-pricing", "access_log": False},
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"},
        "batch": {"enabled": False},
        "registry": {"enabled": False},
    }
    gateway = InProcessGateway(create_app(parse_config(raw, env={})))
    yield gateway
    gateway.close()


def test_the_ledger_charges_anthropic_cache_reads_and_writes_at_their_rates(
    gateway: InProcessGateway,
) -> None:
    body = {"model": "claude", "messages": [{"role": "user", "content": "again"}]}
    answer = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {TEST_KEY}"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["prompt_tokens_details"] == {
        "cached_tokens": 600_000,
        "cache_write_tokens": 100_000,
    }

    def cost() -> float | None:
        totals = httpx.get(
            gateway.base_url + "/admin/usage",
            params={"key": "team"},
            headers={"authorization": "Bearer sk-admin-pricing"},
        ).json()["data"][0]
        return float(totals["cost_usd"]) if totals["requests"] else None

    assert wait_for(cost, timeout_s=15, what="the request in the ledger") == 4.455


def test_web_searches_are_billed_per_thousand_apart_from_tokens() -> None:
    usage = {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "server_tool_use": {"web_search_requests": 4},
    }
    assert usage_cost(usage, PriceConfig(web_search_per_thousand=10.0)) == 0.04
    assert usage_cost(usage, PRICE) == 0.0  # a price without a search rate charges none
    assert (
        usage_cost(
            {**usage, "server_tool_use": {"web_search_requests": "4"}},
            PriceConfig(web_search_per_thousand=10.0),
        )
        == 0.0
    )
