"""Prices from the offline catalog (genai-prices), the config's override,
and an unknown price reported as unknown, never as a cost of 0."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from genai_prices import Usage, calc_price

from interlock.app import create_app
from interlock.config import DeploymentConfig, PriceConfig, parse_config
from interlock.pipeline.price_book import REFRESH_S, PriceBook
from interlock.pipeline.price_catalog import PriceCatalog
from interlock.pipeline.pricing import Price, Rates, usage_cost
from tests.conftest import TEST_KEY
from tests.support.servers import InProcessGateway
from tests.support.waiting import wait_for


@pytest.fixture(scope="module")
def catalog() -> PriceCatalog:
    return PriceCatalog()


def _usage(prompt: int, read: int, write: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "prompt_tokens_details": {"cached_tokens": read, "cache_write_tokens": write},
    }


@pytest.mark.parametrize(
    ("provider", "model", "provider_id"),
    [
        ("anthropic", "claude-sonnet-4-5", "anthropic"),  # long-context tiers
        ("gemini", "gemini-2.5-flash", "google"),  # no cache-write rate
        ("bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", "aws"),
        ("azure", "gpt-4o", "azure"),
    ],
)
@pytest.mark.parametrize(
    ("prompt", "read", "write", "completion"),
    [(1_000, 0, 0, 500), (12_000, 9_000, 1_000, 300), (300_000, 100, 50, 2_000)],
)
def test_catalog_costs_equal_the_catalogs_own_calculation(
    catalog: PriceCatalog,
    provider: str,
    model: str,
    provider_id: str,
    prompt: int,
    read: int,
    write: int,
    completion: int,
) -> None:
    price = catalog.lookup(provider, model, None)
    assert price is not None and price.source == "catalog"
    assert price.reference.startswith("genai-prices ")
    ours = usage_cost(_usage(prompt, read, write, completion), price)
    theirs = calc_price(
        Usage(
            input_tokens=prompt,
            cache_read_tokens=read,
            cache_write_tokens=write,
            output_tokens=completion,
        ),
        model,
        provider_id=provider_id,
    ).total_price
    assert Decimal(repr(ours)).quantize(Decimal("1e-12")) == theirs.quantize(Decimal("1e-12"))


def test_long_context_tiers_apply_to_the_whole_prompt(catalog: PriceCatalog) -> None:
    price = catalog.lookup("anthropic", "claude-sonnet-4-5", None)
    assert price is not None and price.tiers
    threshold, dearer = price.tiers[0]
    assert price.rates(threshold) == price.base
    assert price.rates(threshold + 1) == dearer and dearer.input > price.base.input


def test_openai_compatible_deployments_are_found_by_their_url(catalog: PriceCatalog) -> None:
    deepseek = catalog.lookup("openai", "deepseek-chat", "https://api.deepseek.com/v1")
    assert deepseek is not None and "deepseek" in deepseek.reference
    assert catalog.lookup("openai", "gpt-4o-mini", "https://api.openai.com/v1") is not None
    # A self-hosted server is nobody's price list.
    assert catalog.lookup("openai", "llama3", "http://127.0.0.1:8000/v1") is None
    assert catalog.lookup("anthropic", "claude-that-does-not-exist", None) is None
    assert catalog.lookup("kserve", "resnet", "http://127.0.0.1:8000") is None


class CountingCatalog(PriceCatalog):
    def __init__(self, price: Price | None):
        self.name = "counting"
        self.price = price
        self.lookups = 0

    def lookup(self, provider: str, model: str, base_url: str | None, at: Any = None) -> Any:
        self.lookups += 1
        return self.price


def _deployment(**fields: Any) -> DeploymentConfig:
    return DeploymentConfig(**{"id": "d1", "provider": "anthropic", "model": "m", **fields})


CATALOG_PRICE = Price(Rates(1.0, 2.0, 0.1, 1.25), "catalog", "counting: x/m")


def test_the_config_price_overrides_the_catalog() -> None:
    catalog = CountingCatalog(CATALOG_PRICE)
    book = PriceBook(catalog)
    configured = book.add(_deployment(price=PriceConfig(input_per_million=5.0)))
    assert configured is not None and configured.source == "config"
    assert configured.base == Rates(5.0, 0.0, 5.0, 5.0)
    assert catalog.lookups == 0
    assert book.add(_deployment(id="d2")) == CATALOG_PRICE


def test_in_process_engines_cost_nothing_and_unknown_prices_stay_unknown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    book = PriceBook(CountingCatalog(None))
    free = book.add(_deployment(id="sim", provider="simulator", model=None))
    assert free is not None and free.source == "in-process" and free.base.input == 0
    with caplog.at_level(logging.WARNING, "interlock.pricing"):
        assert book.add(_deployment(id="mystery")) is None
    assert "deployment mystery: no price" in caplog.text
    assert book.get("mystery") is None and book.get("never-added") is None


def test_catalog_prices_are_looked_up_again_after_the_refresh_interval() -> None:
    now = [0.0]
    catalog = CountingCatalog(CATALOG_PRICE)
    book = PriceBook(catalog, clock=lambda: now[0])
    book.add(_deployment())
    for _ in range(100):
        assert book.get("d1") == CATALOG_PRICE
    assert catalog.lookups == 1  # not per request
    now[0] = REFRESH_S
    catalog.price = Price(Rates(9.0, 9.0, 9.0, 9.0), "catalog", "counting: x/m")
    assert book.get("d1") == catalog.price
    assert catalog.lookups == 2


# -- through a gateway ---------------------------------------------------------


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[InProcessGateway]:
    config = parse_config(
        {
            "models": [
                {
                    "name": "sim",
                    "deployments": [{"id": "sim-1", "provider": "simulator"}],
                },
                {
                    "name": "priced",
                    "deployments": [
                        {
                            "id": "priced-1",
                            "provider": "simulator",
                            "price": {"input_per_million": 2.0, "output_per_million": 4.0},
                        }
                    ],
                },
                {
                    # A self-hosted server the catalog cannot know (nothing listens:
                    # only /v1/models is asked about it).
                    "name": "mystery",
                    "deployments": [
                        {
                            "id": "mystery-1",
                            "provider": "openai",
                            "model": "llama3",
                            "base_url": "http://127.0.0.1:9/v1",
                        }
                    ],
                },
                {
                    "name": "claude",
                    "deployments": [
                        {
                            "id": "claude-1",
                            "provider": "anthropic",
                            "model": "claude-sonnet-4-5",
                            "base_url": "http://127.0.0.1:9",
                        }
                    ],
                },
            ],
            "keys": [{"name": "test", "key": TEST_KEY}],
            "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"},
            "batch": {"enabled": False},
            "registry": {"enabled": False},
        }
    )
    gateway = InProcessGateway(create_app(config))
    yield gateway
    gateway.close()


def test_models_show_each_deployments_price_and_its_source(gateway: InProcessGateway) -> None:
    headers = {"authorization": f"Bearer {TEST_KEY}"}
    listing = httpx.get(f"{gateway.base_url}/v1/models", headers=headers).json()
    pricing = {card["id"]: card["pricing"] for card in listing["data"]}
    assert pricing["sim"] == [
        {
            "deployment": "sim-1",
            "input_per_million": 0.0,
            "output_per_million": 0.0,
            "cached_input_per_million": 0.0,
            "cache_write_per_million": 0.0,
            "source": "in-process",
        }
    ]
    assert pricing["priced"][0]["source"] == "config"
    assert pricing["priced"][0]["input_per_million"] == 2.0
    assert pricing["mystery"] == [{"deployment": "mystery-1", "source": "unknown"}]
    claude = pricing["claude"][0]
    assert claude["source"] == "catalog" and claude["input_per_million"] == 3.0
    assert claude["reference"].endswith("anthropic/claude-sonnet-4-5")
    assert claude["tiers"][0]["above_prompt_tokens"] == 200_000
    one = httpx.get(f"{gateway.base_url}/v1/models/claude", headers=headers).json()
    assert one["pricing"] == pricing["claude"]


def test_an_unpriced_answer_is_counted_apart_not_as_free(
    tmp_path: Path, fake_upstream: Any
) -> None:
    from aiohttp import web

    async def completion(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1,
                "model": "llama3",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hi"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completion)
    upstream = fake_upstream(app)
    config = parse_config(
        {
            "models": [
                {
                    "name": "llama",
                    "deployments": [
                        {
                            "id": "llama-1",
                            "provider": "openai",
                            "model": "llama3",
                            "base_url": f"{upstream.url}/v1",
                        }
                    ],
                }
            ],
            "keys": [{"name": "test", "key": TEST_KEY}],
            "server": {"admin_key": "admin-test-key"},
            "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"},
            "batch": {"enabled": False},
            "registry": {"enabled": False},
        }
    )
    gateway = InProcessGateway(create_app(config))
    try:
        headers = {"authorization": f"Bearer {TEST_KEY}"}
        body = {"model": "llama", "messages": [{"role": "user", "content": "hi"}]}
        answer = httpx.post(f"{gateway.base_url}/v1/chat/completions", json=body, headers=headers)
        assert answer.status_code == 200
        admin = {"authorization": "Bearer admin-test-key"}

        def totals() -> dict[str, Any]:
            got = httpx.get(f"{gateway.base_url}/admin/usage", headers=admin)
            assert got.status_code == 200, got.text
            return dict(got.json()["data"][0])

        wait_for(lambda: totals()["requests"] == 1)
        usage = totals()
        assert usage["unpriced_requests"] == 1 and usage["cost_usd"] == 0.0
        metrics = httpx.get(f"{gateway.base_url}/metrics").text
        assert 'interlock_unpriced_requests_total{key="test",model="llama"} 1.0' in metrics
    finally:
        gateway.close()


def test_web_searches_an_upstream_ran_cost_what_the_catalog_says(catalog: PriceCatalog) -> None:
    price = catalog.lookup("anthropic", "claude-sonnet-4-5", None)
    assert price is not None and price.base.web_search == 10.0  # US dollars per thousand
    usage = {**_usage(1_000, 0, 0, 500), "server_tool_use": {"web_search_requests": 3}}
    theirs = calc_price(
        Usage(input_tokens=1_000, output_tokens=500, web_searches=3),
        "claude-sonnet-4-5",
        provider_id="anthropic",
    ).total_price
    assert Decimal(repr(usage_cost(usage, price))).quantize(Decimal("1e-12")) == theirs
    assert price.card()["web_search_per_thousand"] == 10.0
