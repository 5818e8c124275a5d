"""Strategies that learn from outcomes: least latency and a Thompson-sampling bandit.

Both keep their own per-deployment statistics, fed through ``observe``, and
both keep exploring so a deployment that recovers is noticed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from interlock.routing.base import Candidate, Decision, Outcome, RouteContext
from interlock.routing.strategies._common import number, positive, to_front

__all__ = ["Bandit", "LeastLatency"]


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
        self._epsilon = number("epsilon", epsilon, 0.0, 1.0)
        self._explore_after_s = positive("explore_after_s", explore_after_s)
        self._alpha = number("alpha", alpha, 0.0, 1.0)
        self._penalty_s = number("failure_penalty_s", failure_penalty_s, 0.0)
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
            return Decision(to_front(ranked, stale), "explore_stale")
        if self._rng.random() < self._epsilon:
            return Decision(to_front(ranked, self._rng.choice(ranked[1:])), "explore_epsilon")
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
        self._floor = number("floor", floor, 0.0, 1.0)
        self._latency_ref_s = positive("latency_ref_s", latency_ref_s)
        self._cost_ref_usd = positive("cost_ref_usd", cost_ref_usd)
        self._memory = number("memory", memory, 2.0)
        self._posterior: dict[str, tuple[float, float]] = {}

    def choose(self, candidates: Sequence[Candidate], ctx: RouteContext) -> Decision:
        draws = [self._rng.betavariate(*self._posterior.get(c.id, (1.0, 1.0))) for c in candidates]
        by_draw = sorted(range(len(candidates)), key=lambda i: -draws[i])
        ranked = [candidates[i] for i in by_draw]
        if ranked and self._rng.random() < min(1.0, self._floor * len(ranked)):
            return Decision(to_front(ranked, self._rng.choice(ranked)), "floor")
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
