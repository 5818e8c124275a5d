"""Helpers shared by the strategies: stable hashing, weighted ordering, config checks."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence

from interlock.routing.base import Candidate, Outcome

__all__ = ["Static", "number", "positive", "ranked", "stable_unit", "to_front", "weighted_order"]


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


def ranked(
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


def to_front(order: list[Candidate], pick: Candidate) -> list[Candidate]:
    return [pick, *(c for c in order if c is not pick)]


def number(name: str, value: object, low: float, high: float = math.inf) -> float:
    """Validate a config number once, at construction, with a message naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value!r}")
    return float(value)


def positive(name: str, value: object) -> float:
    checked = number(name, value, 0.0)
    if checked == 0:
        raise ValueError(f"{name} must be greater than 0")
    return checked


class Static:
    """Strategies whose order depends only on config and the candidates' state."""

    def observe(self, deployment_id: str, outcome: Outcome) -> None:
        return None
