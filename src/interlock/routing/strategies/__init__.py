"""Routing strategies: pure policies that put a model group's candidates in order.

Every strategy returns *all* the candidates it was given: the first is tried
first, the rest are the failover order. Sticky strategies (pinned, canary,
A/B) hash with blake2b, never Python's ``hash()``, which is salted per
process and would move callers between workers and across restarts. When a
sticky target is missing (its breaker is open), its callers fall through to
the remaining candidates instead of failing.

Randomness comes in as a ``random.Random`` and time as ``RouteContext.now``,
so every strategy is reproducible in tests.

A decision's ``reason`` is a short snake_case token (``weighted``,
``explore_stale``, ``canary_unavailable``...), cheap to put in a response
header or a metric label; the strategy's ``name`` says whose reason it is.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Literal

from interlock.routing.base import Candidate, Decision, Outcome, RouteContext, Strategy

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


def stable_unit(*parts: str) -> float:
    """Map ``parts`` to (0, 1), the same in every process and on every restart."""
    data = "\x1f".join(parts).encode()
    digest = hashlib.blake2b(data, digest_size=8).digest()
    # +0.5 keeps the value strictly inside (0, 1), so log() never sees 0.
    return (int.from_bytes(digest, "big") + 0.5) / 2**64


def weighted_order(candidates: Sequence[Candidate], rng: random.Random) -> list[Candidate]:
    """Weighted sampling without replacement (an exponential race).

    Each candidate draws Exp(weight) and the earliest goes first, so the first
    is picked with probability weight / total and the rest are, in turn, a
    weighted draw from what is left. Zero-weight deployments never win while a
    weighted one is present: they are last-resort failover only.
    """
    keyed = [
        (rng.expovariate(c.info.weight) if c.info.weight > 0 else math.inf, i, c)
        for i, c in enumerate(candidates)
    ]
    keyed.sort(key=lambda item: (item[0], item[1]))
    return [c for _, _, c in keyed]


def _ranked(
    candidates: Sequence[Candidate],
    key: Callable[[Candidate], float],
    rng: random.Random | None,
) -> list[Candidate]:
    """Ascending ``key``; equal keys in weighted-random order (or kept as given)."""
    groups: dict[float, list[Candidate]] = {}
    for c in candidates:
        groups.setdefault(key(c), []).append(c)
    order: list[Candidate] = []
    for k in sorted(groups):
        order.extend(weighted_order(groups[k], rng) if rng is not None else groups[k])
    return order


def _to_front(order: list[Candidate], pick: Candidate) -> list[Candidate]:
    return [pick, *(c for c in order if c is not pick)]


def _number(name: str, value: object, low: float, high: float = math.inf) -> float:
    """Validate a config number once, at construction, with a message naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value!r}")
    return float(value)


def _positive(name: str, value: object) -> float:
    number = _number(name, value, 0.0)
    if number == 0:
        raise ValueError(f"{name} must be greater than 0")
    return number


class _Static:
    """Strategies whose order depends only on config and the candidates' state."""

    def observe(self, deployment_id: str, outcome: Outcome) -> None:
        return None


class WeightedRandom(_Static):
    """Spread traffic in proportion to ``DeploymentInfo.weight``."""

    name = "weighted"

    def __init__(self, *, rng: random.Random):
        self._rng = rng

    def choose(self, candidates: Sequence[Candidate], ctx: RouteContext) -> Decision:
        return Decision(weighted_order(candidates, self._rng), "weighted")


class PriorityFailover(_Static):
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
        order = _ranked(candidates, lambda c: c.info.priority, self._rng)
        return Decision(order, "priority")


class RoundRobin(_Static):
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


class LeastBusy(_Static):
    """Fewest requests in flight first; ties broken at random so none is favoured."""

    name = "least_busy"

    def __init__(self, *, rng: random.Random):
        self._rng = rng

    def choose(self, candidates: Sequence[Candidate], ctx: RouteContext) -> Decision:
        keyed = sorted((c.in_flight, self._rng.random(), i) for i, c in enumerate(candidates))
        return Decision([candidates[i] for _, _, i in keyed], "least_busy")


class LeastLatency:
    """Fastest deployment first, with exploration so a recovered one is noticed.

    Latency is this strategy's own EWMA of observed outcomes, or the gateway's
    ``latency_avg_s`` for a deployment it has not observed. A failure counts as
    at least ``failure_penalty_s``: a fast error must not look like a fast
    deployment. Pure exploitation would starve a deployment that was slow once,
    so two kinds of exploration put a non-best deployment first:

    * staleness: a deployment neither observed nor probed for
      ``explore_after_s`` gets one probe (marked at decision time, so
      concurrent requests do not all pile onto it);
    * epsilon: with probability ``epsilon`` a random non-best one.

    The first sample after a stale gap replaces the average instead of being
    blended into it: the old average describes a deployment that may have
    changed since. ``observe`` has no clock, so it stamps samples with the
    latest ``ctx.now`` this strategy has seen.
    """

    name = "least_latency"

    def __init__(
        self,
        *,
        rng: random.Random,
        epsilon: float = 0.05,
        explore_after_s: float = 30.0,
        alpha: float = 0.3,
        failure_penalty_s: float = 10.0,
    ):
        self._rng = rng
        self._epsilon = _number("epsilon", epsilon, 0.0, 1.0)
        self._explore_after_s = _positive("explore_after_s", explore_after_s)
        self._alpha = _number("alpha", alpha, 0.0, 1.0)
        self._penalty_s = _number("failure_penalty_s", failure_penalty_s, 0.0)
        self._ewma: dict[str, float] = {}
        self._sampled_at: dict[str, float] = {}
        self._touched_at: dict[str, float] = {}
        self._now = -math.inf

    def choose(self, candidates: Sequence[Candidate], ctx: RouteContext) -> Decision:
        self._now = max(self._now, ctx.now)
        ranked = self._rank(candidates)
        if len(ranked) < 2:
            return Decision(ranked, "fastest")
        stale = self._stalest(ranked[1:], ctx.now)
        if stale is not None:
            self._touched_at[stale.id] = ctx.now
            return Decision(_to_front(ranked, stale), "explore_stale")
        if self._rng.random() < self._epsilon:
            return Decision(_to_front(ranked, self._rng.choice(ranked[1:])), "explore_epsilon")
        return Decision(ranked, "fastest")

    def observe(self, deployment_id: str, outcome: Outcome) -> None:
        sample = outcome.latency_s if outcome.success else max(outcome.latency_s, self._penalty_s)
        old = self._ewma.get(deployment_id)
        sampled_at = self._sampled_at.get(deployment_id, -math.inf)
        if old is None or self._now - sampled_at >= self._explore_after_s:
            self._ewma[deployment_id] = sample
        else:
            self._ewma[deployment_id] = old + self._alpha * (sample - old)
        self._sampled_at[deployment_id] = self._touched_at[deployment_id] = self._now

    def _rank(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """Known latencies ascending; unknown ones after them, shuffled."""
        known: list[tuple[float, int, Candidate]] = []
        unknown: list[Candidate] = []
        for i, c in enumerate(candidates):
            latency = self._ewma.get(c.id, c.latency_avg_s)
            if latency is None:
                unknown.append(c)
            else:
                known.append((latency, i, c))
        known.sort(key=lambda item: (item[0], item[1]))
        self._rng.shuffle(unknown)
        return [c for _, _, c in known] + unknown

    def _stalest(self, others: Sequence[Candidate], now: float) -> Candidate | None:
        """The least recently touched deployment, if it is due for a probe."""
        stalest = min(others, key=lambda c: self._touched_at.get(c.id, -math.inf))
        if now - self._touched_at.get(stalest.id, -math.inf) >= self._explore_after_s:
            return stalest
        return None


class CheapestHealthy(_Static):
    """Lowest input + output price first (breakers already removed the unhealthy)."""

    name = "cheapest"

    def __init__(self, *, rng: random.Random):
        self._rng = rng

    def choose(self, candidates: Sequence[Candidate], ctx: RouteContext) -> Decision:
        order = _ranked(candidates, lambda c: c.info.input_price + c.info.output_price, self._rng)
        return Decision(order, "cheapest")


class ConsistentHashPin(_Static):
    """Same key, same deployment: weighted rendezvous (HRW) hashing.

    The key is ``ctx.pin`` or else ``ctx.caller``. Every deployment gets a
    score ``weight / -ln(u)`` with ``u = blake2b(key, id)``; the order is by
    score, so a key's failover order is itself stable, removing a deployment
    moves only its own keys, and adding one to n moves about 1/(n+1) of them.
    With no key there is nothing to pin, so the order is weighted random.
    """

    name = "pinned"

    def __init__(self, *, rng: random.Random):
        self._rng = rng

    def choose(self, candidates: Sequence[Candidate], ctx: RouteContext) -> Decision:
        key = ctx.pin or ctx.caller
        if not key:
            return Decision(weighted_order(candidates, self._rng), "no_pin_key")
        return Decision(sorted(candidates, key=lambda c: -_hrw_score(key, c)), "pinned")


def _hrw_score(key: str, c: Candidate) -> float:
    if c.info.weight <= 0:
        return -1.0
    return c.info.weight / -math.log(stable_unit("pin", key, c.id))


class Canary(_Static):
    """Send ``percent``% of callers to deployments whose version is ``canary_version``.

    Membership is a stable hash of (version, caller), so a caller stays in or
    out for the whole rollout, and raising the percentage only adds callers.
    A caller without an identity cannot be kept sticky and stays on the stable
    version. Each group fails over to the other as a last resort. The label
    says whether the first choice really is a canary.
    """

    name = "canary"

    def __init__(self, percent: float, canary_version: str, *, rng: random.Random):
        self._percent = _number("percent", percent, 0.0, 100.0)
        if not isinstance(canary_version, str) or not canary_version:
            raise ValueError(f"canary_version must be a non-empty string, got {canary_version!r}")
        self._version = canary_version
        self._rng = rng

    def in_canary(self, caller: str) -> bool:
        """Whether ``caller`` belongs to the canary cohort."""
        return bool(caller) and stable_unit("canary", self._version, caller) * 100 < self._percent

    def choose(self, candidates: Sequence[Candidate], ctx: RouteContext) -> Decision:
        canary = [c for c in candidates if c.info.version == self._version]
        stable = [c for c in candidates if c.info.version != self._version]
        first, rest = (canary, stable) if self.in_canary(ctx.caller) else (stable, canary)
        order = weighted_order(first, self._rng) + weighted_order(rest, self._rng)
        served = bool(order) and order[0].info.version == self._version
        reason = "canary" if served else "stable"
        if order and not first:  # the caller's group is gone: served by the other one
            reason = "stable_unavailable" if served else "canary_unavailable"
        return Decision(order, reason, {"canary": "yes" if served else "no"})


class ABTest(_Static):
    """Sticky A/B assignment: caller → arm by a stable hash of (experiment, caller).

    ``arms`` maps an arm name to a deployment id or tag; ``split`` gives each
    arm's relative share (any scale; equal if omitted). A caller without an
    identity is assigned per request. If the arm's deployments are missing,
    the request is served by the rest and labelled ``arm="none"``, so the
    experiment's numbers count only traffic an arm actually served.
    """

    name = "ab"

    def __init__(
        self,
        experiment: str,
        arms: Mapping[str, str],
        split: Mapping[str, float] | None = None,
        *,
        rng: random.Random,
    ):
        if not isinstance(experiment, str) or not experiment:
            raise ValueError(f"experiment must be a non-empty string, got {experiment!r}")
        self._experiment = experiment
        self._arms = _check_arms(arms)
        self._cumulative = _cumulative_split(self._arms, split)
        self._rng = rng

    def assign(self, caller: str) -> str:
        """The arm ``caller`` is assigned to (random per call when anonymous)."""
        u = stable_unit("ab", self._experiment, caller) if caller else self._rng.random()
        for arm, upper in self._cumulative:
            if u < upper:
                return arm
        return self._cumulative[-1][0]

    def choose(self, candidates: Sequence[Candidate], ctx: RouteContext) -> Decision:
        arm = self.assign(ctx.caller)
        target = self._arms[arm]
        ours = [c for c in candidates if c.id == target or target in c.info.tags]
        rest = [c for c in candidates if not (c.id == target or target in c.info.tags)]
        order = weighted_order(ours, self._rng) + weighted_order(rest, self._rng)
        served = arm if ours else "none"
        reason = "assigned" if ours else "arm_unavailable"
        return Decision(order, reason, {"experiment": self._experiment, "arm": served})


def _check_arms(arms: object) -> dict[str, str]:
    if not isinstance(arms, Mapping) or not arms:
        raise ValueError(
            f"arms must be a non-empty mapping of arm -> deployment id or tag, got {arms!r}"
        )
    for arm, target in arms.items():
        if not isinstance(arm, str) or not isinstance(target, str) or not arm or not target:
            raise ValueError(f"arm {arm!r} -> {target!r}: names and targets must be strings")
    return dict(arms)


def _cumulative_split(
    arms: Mapping[str, str], split: Mapping[str, float] | None
) -> list[tuple[str, float]]:
    """Normalise the split to cumulative upper bounds in [0, 1], in ``arms`` order."""
    shares = dict.fromkeys(arms, 1.0) if split is None else dict(split)
    if set(shares) != set(arms):
        raise ValueError(f"split names {sorted(shares)} but arms are {sorted(arms)}")
    total = sum(_number(f"split[{arm!r}]", share, 0.0) for arm, share in shares.items())
    if total <= 0:
        raise ValueError("split must give at least one arm a positive share")
    bounds, running = [], 0.0
    for arm in arms:
        running += shares[arm] / total
        bounds.append((arm, running))
    return bounds


class Bandit:
    """Thompson sampling over deployments, with an exploration floor.

    Each outcome is scored as a reward in [0, 1]::

        reward = success / (1 + latency_s / latency_ref_s + cost_usd / cost_ref_usd)

    so a failure is worth 0, a fast free success nearly 1, and a success that
    takes ``latency_ref_s`` (or costs ``cost_ref_usd``) half that. Rewards
    update a Beta(1 + Σr, 1 + Σ(1 - r)) posterior per deployment; each
    request ranks deployments by one draw from each posterior. Evidence is
    capped at ``memory`` pseudo-observations (older evidence scaled down) so
    the bandit keeps adapting when a deployment changes. With probability
    ``floor * n`` the first choice is uniform instead, so every one of n
    deployments keeps at least a ``floor`` share and a recovery is noticed.
    """

    name = "bandit"

    def __init__(
        self,
        *,
        rng: random.Random,
        floor: float = 0.05,
        latency_ref_s: float = 2.0,
        cost_ref_usd: float = 0.01,
        memory: float = 500.0,
    ):
        self._rng = rng
        self._floor = _number("floor", floor, 0.0, 1.0)
        self._latency_ref_s = _positive("latency_ref_s", latency_ref_s)
        self._cost_ref_usd = _positive("cost_ref_usd", cost_ref_usd)
        self._memory = _number("memory", memory, 2.0)
        self._posterior: dict[str, tuple[float, float]] = {}

    def choose(self, candidates: Sequence[Candidate], ctx: RouteContext) -> Decision:
        draws = [self._rng.betavariate(*self._posterior.get(c.id, (1.0, 1.0))) for c in candidates]
        by_draw = sorted(range(len(candidates)), key=lambda i: -draws[i])
        ranked = [candidates[i] for i in by_draw]
        if ranked and self._rng.random() < min(1.0, self._floor * len(ranked)):
            return Decision(_to_front(ranked, self._rng.choice(ranked)), "floor")
        return Decision(ranked, "thompson")

    def reward(self, outcome: Outcome) -> float:
        """The score an outcome contributes (see the class docstring)."""
        if not outcome.success:
            return 0.0
        penalty = outcome.latency_s / self._latency_ref_s + outcome.cost_usd / self._cost_ref_usd
        return 1.0 / (1.0 + max(0.0, penalty))

    def observe(self, deployment_id: str, outcome: Outcome) -> None:
        r = self.reward(outcome)
        a, b = self._posterior.get(deployment_id, (1.0, 1.0))
        a, b = a + r, b + 1.0 - r
        if a + b > self._memory:
            scale = self._memory / (a + b)
            a, b = a * scale, b * scale
        self._posterior[deployment_id] = (a, b)


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
