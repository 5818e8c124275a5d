"""The rollout strategy: the canary's share of requests, sticky callers, and
failover to the other side."""

from __future__ import annotations

import random
from collections import Counter

from interlock.registry.rollout import Rollout
from interlock.routing.base import Candidate, DeploymentInfo, RouteContext


def _candidates(share: float, sticky: bool = False) -> list[Candidate]:
    return [
        Candidate(DeploymentInfo("m@1", version="1")),
        Candidate(DeploymentInfo("m@2", version="2", stage="canary", share=share, sticky=sticky)),
    ]


def test_the_canary_gets_its_share_and_the_other_side_is_the_failover() -> None:
    rollout = Rollout("m", random.Random(7))
    firsts: Counter[str] = Counter()
    for _ in range(10_000):
        decision = rollout.choose(_candidates(0.1), RouteContext())
        firsts[decision.order[0].id] += 1
        assert {c.id for c in decision.order} == {"m@1", "m@2"}
        assert decision.labels == {"version": decision.order[0].info.version}
    assert 800 < firsts["m@2"] < 1200  # 10 % of 10,000, seeded


def test_sticky_callers_always_land_on_the_same_side() -> None:
    rollout = Rollout("m", random.Random(7))
    sides = {}
    for n in range(200):
        ctx = RouteContext(caller=f"user-{n}")
        seen = {rollout.choose(_candidates(0.3, sticky=True), ctx).order[0].id for _ in range(5)}
        assert len(seen) == 1
        sides[n] = seen.pop()
    assert 30 < Counter(sides.values())["m@2"] < 90  # about 30 % of 200 callers


def test_without_a_live_version_the_canary_serves_and_without_a_canary_live_does() -> None:
    rollout = Rollout("m", random.Random(7))
    canary_only = rollout.choose(_candidates(0.1)[1:], RouteContext())
    assert [c.id for c in canary_only.order] == ["m@2"] and canary_only.reason == "canary_only"
    live_only = rollout.choose(_candidates(0.1)[:1], RouteContext())
    assert [c.id for c in live_only.order] == ["m@1"] and live_only.reason == "live"
    named = rollout.choose(_candidates(0.1)[1:], RouteContext(version="2"))
    assert named.reason == "version" and named.labels == {"version": "2"}
