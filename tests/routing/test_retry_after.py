"""An upstream's Retry-After shapes failover: the deployment that sent it
rests (this instance routes around it) until then, capped; fake clock."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from interlock.app import build_providers, build_router, build_telemetry, provider_factory
from interlock.config import parse_config
from interlock.errors import NoHealthyDeployment, UpstreamStatusError
from interlock.pipeline.price_book import PriceBook
from interlock.routing.base import RouteContext
from interlock.routing.chaos import ChaosControl
from interlock.routing.router import Deployment, Router
from interlock.state import build_state_store
from interlock.telemetry.record import RequestRecord
from interlock.tokens import default_counter
from tests.support.clock import FakeClock


class Upstreams:
    """The deployments in ``failing`` answer 429 with that Retry-After (None:
    without one); the others answer."""

    def __init__(self, **failing: float | None):
        self.failing = failing
        self.calls: list[str] = []

    async def attempt(self, deployment: Deployment) -> str:
        self.calls.append(deployment.id)
        if deployment.id in self.failing:
            wait = self.failing[deployment.id]
            raise UpstreamStatusError(
                429, "slow down", deployment=deployment.id, retry_after_s=wait
            )
        return deployment.id


def _router(clock: FakeClock, *deployments: str) -> Router:
    raw: dict[str, Any] = {
        "models": [
            {
                "name": "m",
                "routing": {"strategy": "priority", "max_attempts": 3, "backoff_base_s": 0},
                "deployments": [
                    {"id": d, "provider": "simulator", "priority": i}
                    for i, d in enumerate(deployments)
                ],
            }
        ],
        "keys": [{"name": "k", "key": "sk-k"}],
    }
    config = parse_config(raw, env={})
    providers = build_providers(
        config, provider_factory(config, default_counter(), ChaosControl(config.chaos))
    )
    telemetry = build_telemetry(config, providers, None)
    state = build_state_store("memory", None)
    prices = PriceBook(None)
    return build_router(config, providers, telemetry, state, random.Random(1), prices, clock)


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    yield FakeClock()


async def _route(router: Router, upstreams: Upstreams) -> tuple[str, RequestRecord]:
    record = RequestRecord("req", "POST", "/v1/chat/completions")
    served = await router.run(router.group("m"), record, RouteContext(), upstreams.attempt)
    return served, record


async def test_a_deployment_that_asks_for_a_rest_gets_it(clock: FakeClock) -> None:
    router = _router(clock, "a", "b")
    upstreams = Upstreams(a=30.0)
    assert (await _route(router, upstreams))[0] == "b"
    assert upstreams.calls == ["a", "b"]

    clock.now += 29.0  # still resting: b serves at once, a is not asked
    upstreams.calls.clear()
    served, record = await _route(router, upstreams)
    assert (served, record.attempts, upstreams.calls) == ("b", 1, ["b"])

    clock.now += 1.0  # the rest is over: a is first again
    upstreams.failing.clear()
    upstreams.calls.clear()
    assert (await _route(router, upstreams))[0] == "a"
    assert upstreams.calls == ["a"]


async def test_a_rest_is_capped_by_the_breakers_longest_open_period(clock: FakeClock) -> None:
    router = _router(clock, "a", "b")
    upstreams = Upstreams(a=86_400.0)
    await _route(router, upstreams)
    clock.now += 60.0  # breaker.max_open_s, by default
    upstreams.failing.clear()
    upstreams.calls.clear()
    assert (await _route(router, upstreams))[0] == "a"


async def test_with_every_deployment_resting_the_503_says_when_to_come_back(
    clock: FakeClock,
) -> None:
    router = _router(clock, "a")
    upstreams = Upstreams(a=12.0)
    with pytest.raises(NoHealthyDeployment):
        await _route(router, upstreams)
    clock.now += 2.0
    upstreams.calls.clear()
    with pytest.raises(NoHealthyDeployment) as refused:
        await _route(router, upstreams)
    assert upstreams.calls == []  # not asked while it rests
    assert refused.value.retry_after_s == pytest.approx(10.0)


@pytest.mark.parametrize("hint", [None, 0.0, -5.0, float("nan")])
async def test_no_usable_hint_means_no_rest(clock: FakeClock, hint: float | None) -> None:
    router = _router(clock, "a", "b")
    upstreams = Upstreams(a=hint)
    assert (await _route(router, upstreams))[0] == "b"
    upstreams.failing.clear()
    upstreams.calls.clear()
    assert (await _route(router, upstreams))[0] == "a"
