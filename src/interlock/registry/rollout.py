"""How a registered model's requests are shared among its versions.

The canary takes its ``share`` of requests and the live versions the rest;
whichever side a request lands on, the other is its failover. With
``sticky``, a caller (API key name or ``user``) lands on the same side every
time, by a stable hash, so one user does not flip between versions.
Outcomes go to the canary judge, which may roll the canary back.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from interlock.registry.canary import CanaryJudge
from interlock.routing.base import Candidate, Decision, Outcome, RouteContext
from interlock.routing.strategies import stable_unit, weighted_order

__all__ = ["Rollout"]


class Rollout:
    name = "rollout"

    def __init__(self, model: str, rng: random.Random, judge: CanaryJudge | None = None):
        self._model = model
        self._rng = rng
        self._judge = judge

    def choose(self, candidates: Sequence[Candidate], ctx: RouteContext) -> Decision:
        if ctx.version is not None:  # the router kept only that version's
            return Decision(list(candidates), "version", _labels(candidates))
        canary = [c for c in candidates if c.info.stage == "canary"]
        live = weighted_order([c for c in candidates if c.info.stage == "live"], self._rng)
        if not canary:
            return Decision(live, "live", _labels(live))
        if not live:
            return Decision(canary, "canary_only", _labels(canary))
        info = canary[0].info
        if info.sticky and ctx.caller:
            draw = stable_unit("rollout", self._model, info.version or "", ctx.caller)
        else:
            draw = self._rng.random()
        if draw < info.share:
            return Decision(canary + live, "canary", _labels(canary))
        return Decision(live + canary, "live", _labels(live))

    def observe(self, deployment_id: str, outcome: Outcome) -> None:
        if self._judge is not None:
            self._judge.observe(deployment_id, outcome.success, outcome.latency_s)


def _labels(order: Sequence[Candidate]) -> dict[str, str]:
    version = order[0].info.version if order else None
    return {"version": version} if version else {}
