"""``POST /v1/moderations`` with the official ``openai`` SDK, unchanged:
the simulator's keyword scoring, an OpenAI-compatible upstream's own
``/moderations`` (the model renamed, the answer passed through), failover
between the two, the default model, a model that cannot moderate, bad
input, and the usage ledger and metrics seeing every call."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from aiohttp import web

from interlock.app import create_app
from interlock.config import parse_config
from interlock.providers.simulator_moderation import CATEGORIES, moderation_result
from tests.conftest import TEST_KEY
from tests.support.sdk_clients import closed_after_test
from tests.support.servers import FakeUpstream, InProcessGateway
from tests.support.waiting import wait_for


@pytest.fixture
def upstream() -> Iterator[tuple[FakeUpstream, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    async def moderations(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(body)
        if body["input"] == "fail":
            return web.json_response({"error": {"message": "down"}}, status=500)
        result = moderation_result("kill" if "kill" in str(body["input"]) else "", 0, frozenset())
        return web.json_response({"id": "modr-up", "model": body["model"], "results": [result]})

    app = web.Application()
    app.router.add_post("/v1/moderations", moderations)
    with FakeUpstream(app) as server:
        yield server, seen


@pytest.fixture
def gateway(
    tmp_path: Path, upstream: tuple[FakeUpstream, list[dict[str, Any]]]
) -> Iterator[InProcessGateway]:
    server, _ = upstream
    openai_like = {
        "provider": "openai",
        "base_url": server.url + "/v1",
        "model": "text-moderation-stable",
    }
    raw: dict[str, Any] = {
        "models": [
            {
                "name": "omni-moderation-latest",
                "deployments": [{"id": "sim-mod", "provider": "simulator"}],
            },
            {"name": "upstream-mod", "deployments": [{"id": "up-mod", **openai_like}]},
            {
                "name": "azure-mod",
                "deployments": [
                    {
                        "id": "az-mod",
                        "provider": "azure",
                        "base_url": server.url,
                        "model": "x",
                        "api_key": "k",
                    }
                ],
            },
        ],
        "keys": [{"name": "test", "key": "os.environ/TEST_KEY"}],
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"},
        "server": {"access_log": False},
        "batch": {"enabled": False},
    }
    gateway = InProcessGateway(create_app(parse_config(raw, env={"TEST_KEY": TEST_KEY})))
    yield gateway
    gateway.close()


def _client(gateway: InProcessGateway) -> openai.OpenAI:
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=TEST_KEY, max_retries=0)
    return closed_after_test(client)


def test_the_default_model_scores_by_keywords(gateway: InProcessGateway) -> None:
    client = _client(gateway)
    flagged = client.moderations.create(input="I will attack the castle")
    assert flagged.model == "omni-moderation-latest" and flagged.id.startswith("modr-")
    [result] = flagged.results
    assert result.flagged and result.categories.violence and not result.categories.hate
    assert result.category_scores.violence >= 0.9 > result.category_scores.hate
    assert set(result.model_dump(by_alias=True)["categories"]) == set(CATEGORIES)
    many = client.moderations.create(input=["a calm day", "you idiot"])
    assert [r.flagged for r in many.results] == [False, True]
    assert many.results[1].categories.harassment
    again = client.moderations.create(input=["a calm day", "you idiot"])
    assert again.results[0].category_scores == many.results[0].category_scores  # deterministic
    parts: Any = [
        {"type": "text", "text": "a picture"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ]
    mixed = client.moderations.create(input=parts, model="omni-moderation-latest")
    assert mixed.results[0].category_applied_input_types.violence == ["image", "text"]


def test_an_openai_upstream_answers_with_its_own_model_name(
    gateway: InProcessGateway, upstream: tuple[FakeUpstream, list[dict[str, Any]]]
) -> None:
    _, seen = upstream
    answer = _client(gateway).moderations.create(input="kill it", model="upstream-mod")
    assert answer.results[0].flagged and answer.results[0].categories.violence
    assert seen[-1] == {"input": "kill it", "model": "text-moderation-stable"}


def test_what_cannot_be_moderated_is_named(gateway: InProcessGateway) -> None:
    client = _client(gateway)
    with pytest.raises(openai.BadRequestError) as unsupported:
        client.moderations.create(input="x", model="azure-mod")
    assert "does not classify content" in unsupported.value.message
    for bad, says in (([], "at least 1"), (7, "string"), ([{"type": "audio"}], "'audio' part")):
        with pytest.raises(openai.BadRequestError) as refused:
            client.moderations.create(input=bad, model="omni-moderation-latest")  # type: ignore[arg-type]
        assert refused.value.param == "input" and says in refused.value.message
    with pytest.raises(openai.NotFoundError):
        client.moderations.create(input="x", model="no-such-model")
    with pytest.raises(openai.InternalServerError) as failed:
        client.moderations.create(input="fail", model="upstream-mod")
    assert failed.value.status_code == 503 and "upstream failed (500)" in failed.value.message


def test_every_call_is_in_the_metrics(gateway: InProcessGateway) -> None:
    _client(gateway).moderations.create(input="hello")

    def counted() -> bool:
        text = httpx.get(gateway.base_url + "/metrics").text
        return any(
            line.startswith("interlock_requests_total{")
            and '"/v1/moderations"' in line
            and 'status="200"' in line
            for line in text.splitlines()
        )

    wait_for(counted, what="the moderation request in the metrics")
