"""Routing strategies: pure policies that put a model group's candidates in order.

Every strategy returns *all* the candidates it was given: the first is tried
first, the rest are the failover order. Sticky strategies (pinned, canary,
A/B) hash with blake2b, never Python's ``hash()``, which is salted per
process and would move callers between workers and across restarts. When a
sticky target is missing (its breaker is open), its callers fall through to
the remaining candidates instead of failing.

Modules: ``simple`` (weighted, priority, round robin, least busy, cheapest),
``sticky`` (pinned, canary, A/B), ``learning`` (least latency, bandit);
``_common`` holds the shared helpers.

Randomness comes in as a ``random.Random`` and time as ``RouteContext.now``,
so every strategy is reproducible in tests.

A decision's ``reason`` is a short snake_case token (``weighted``,
``explore_stale``, ``canary_unavailable``...), cheap to put in a response
header or a metric label; the strategy's ``name`` says whose reason it is.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Mapping
from typing import Final

from interlock.routing.base import Strategy
from interlock.routing.strategies._common import stable_unit, weighted_order
from interlock.routing.strategies.learning import Bandit, LeastLatency
from interlock.routing.strategies.simple import (
    CheapestHealthy,
    LeastBusy,
    PriorityFailover,
    RoundRobin,
    WeightedRandom,
)
from interlock.routing.strategies.sticky import ABTest, Canary, ConsistentHashPin

__all__ = [
    "STRATEGIES",
    "ABTest",
    "Bandit",
    "Canary",
    "CheapestHealthy",
    "ConsistentHashPin",
    "LeastBusy",
    "LeastLatency",
    "PriorityFailover",
    "RoundRobin",
    "WeightedRandom",
    "build_strategy",
    "stable_unit",
    "weighted_order",
]


STRATEGIES: Final[Mapping[str, Callable[..., Strategy]]] = {
    "weighted": WeightedRandom,
    "priority": PriorityFailover,
    "round_robin": RoundRobin,
    "least_busy": LeastBusy,
    "least_latency": LeastLatency,
    "cheapest": CheapestHealthy,
    "pinned": ConsistentHashPin,
    "canary": Canary,
    "ab": ABTest,
    "bandit": Bandit,
}


def build_strategy(name: str, params: Mapping[str, object], rng: random.Random) -> Strategy:
    """Build a strategy from its config name and parameters, failing loudly at startup.

    ``rng`` is passed to strategies that draw random numbers; it is not a
    config parameter. Unknown names, unknown or missing parameters and bad
    values all raise ``ValueError`` naming the strategy.
    """
    factory = STRATEGIES.get(name)
    if factory is None:
        known = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"unknown routing strategy {name!r}; known: {known}")
    signature = inspect.signature(factory)
    accepted = [p for p in signature.parameters if p != "rng"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        takes = ", ".join(accepted) or "no parameters"
        raise ValueError(f"strategy {name!r} does not take {', '.join(unknown)}; it takes: {takes}")
    missing = [
        p.name
        for p in signature.parameters.values()
        if p.default is p.empty and p.name != "rng" and p.name not in params
    ]
    if missing:
        raise ValueError(f"strategy {name!r} needs {', '.join(missing)}")
    kwargs = {**params, **({"rng": rng} if "rng" in signature.parameters else {})}
    try:
        return factory(**kwargs)
    except ValueError as exc:
        raise ValueError(f"strategy {name!r}: {exc}") from exc
