"""Strategies that order by config and the candidates' current state alone.

Weighted, priority, round robin, least busy and cheapest: none of them learns
from outcomes, and none of them is sticky to a caller.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

from interlock.routing.base import Candidate, Decision, RouteContext
from interlock.routing.strategies._common import Static, ranked, weighted_order

__all__ = ["CheapestHealthy", "LeastBusy", "PriorityFailover", "RoundRobin", "WeightedRandom"]


class WeightedRandom(Static):
    """Spread traffic in proportion to ``DeploymentInfo.weight``."""

    name = "weighted"

    def __init__(self, *, rng: random.Random):
        self._rng = rng

    def choose(self, candidates: Sequence[Candidate], ctx: RouteContext) -> Decision:
        return Decision(weighted_order(candidates, self._rng), "weighted")


class PriorityFailover(Static):
    """Lowest ``priority`` first; the next tier only takes over when a tier is gone.

    ``ties="weighted"`` spreads a tier by weight; ``"stable"`` keeps config order,
    for primary/secondary setups that must be deterministic.
    """

    name = "priority"

    def __init__(self, *, rng: random.Random, ties: Literal["weighted", "stable"] = "weighted"):
        if ties not in ("weighted", "stable"):
            raise ValueError(f"ties must be 'weighted' or 'stable', got {ties!r}")
        self._rng = rng if ties == "weighted" else None

    def choose(self, candidates: Sequence[Candidate], ctx: RouteContext) -> Decision:
        order = ranked(candidates, lambda c: c.info.priority, self._rng)
        return Decision(order, "priority")


class RoundRobin(Static):
    """Each request starts one further along the candidate list."""

    name = "round_robin"

    def __init__(self) -> None:
        self._turn = 0

    def choose(self, candidates: Sequence[Candidate], ctx: RouteContext) -> Decision:
        if not candidates:
            return Decision([], "round_robin")
        k = self._turn % len(candidates)
        self._turn += 1
        return Decision([*candidates[k:], *candidates[:k]], "round_robin")


class LeastBusy(Static):
    """Fewest requests in flight first; ties broken at random so none is favoured."""

    name = "least_busy"

    def __init__(self, *, rng: random.Random):
        self._rng = rng

    def choose(self, candidates: Sequence[Candidate], ctx: RouteContext) -> Decision:
        keyed = sorted((c.in_flight, self._rng.random(), i) for i, c in enumerate(candidates))
        return Decision([candidates[i] for _, _, i in keyed], "least_busy")


class CheapestHealthy(Static):
    """Lowest input + output price first (breakers already removed the unhealthy)."""

    name = "cheapest"

    def __init__(self, *, rng: random.Random):
        self._rng = rng

    def choose(self, candidates: Sequence[Candidate], ctx: RouteContext) -> Decision:
        order = ranked(candidates, lambda c: c.info.input_price + c.info.output_price, self._rng)
        return Decision(order, "cheapest")
