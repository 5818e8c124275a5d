"""Sticky strategies: the same caller keeps the same deployment (or cohort, or arm).

Pinned (weighted rendezvous hashing), canary and A/B all hash with blake2b,
never Python's ``hash()``, which is salted per process and would move callers
between workers and across restarts. When a sticky target is missing (its
breaker is open), its callers fall through to the remaining candidates
instead of failing.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from interlock.routing.base import Candidate, Decision, RouteContext
from interlock.routing.strategies._common import Static, number, stable_unit, weighted_order

__all__ = ["ABTest", "Canary", "ConsistentHashPin"]


class ConsistentHashPin(Static):
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


class Canary(Static):
    """Send ``percent``% of callers to deployments whose version is ``canary_version``.

    Membership is a stable hash of (version, caller), so a caller stays in or
    out for the whole rollout, and raising the percentage only adds callers.
    A caller without an identity cannot be kept sticky and stays on the stable
    version. Each group fails over to the other as a last resort. The label
    says whether the first choice really is a canary.
    """

    name = "canary"

    def __init__(self, percent: float, canary_version: str, *, rng: random.Random):
        self._percent = number("percent", percent, 0.0, 100.0)
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


class ABTest(Static):
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
    total = sum(number(f"split[{arm!r}]", share, 0.0) for arm, share in shares.items())
    if total <= 0:
        raise ValueError("split must give at least one arm a positive share")
    bounds, running = [], 0.0
    for arm in arms:
        running += shares[arm] / total
        bounds.append((arm, running))
    return bounds
