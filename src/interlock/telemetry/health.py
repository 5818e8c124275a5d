"""Passive per-deployment health: in-flight, latency average, error rate,
and the circuit breaker's state with its recent transitions.

Fed by the pipeline after every upstream attempt and by the breaker's
``on_transition`` callback; read by ``/health/*`` and by load-aware routing.
A deployment counts as unhealthy after ``unhealthy_after`` consecutive
upstream failures, and healthy again on its next success.

The breaker state shown is this instance's view, read live from the breaker
(``follow_breaker``): the router decides with that same view, and it turns
from open to half-open when ``open_until`` passes, with or without traffic.
The history is the transitions this instance observed (``breaker_changed``),
so a transition another instance made shows once this one has read it from
the state store, and open -> half-open shows once a request probes.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

__all__ = ["BREAKER_HISTORY", "BreakerView", "DeploymentHealth", "HealthBoard"]

# Transitions kept per deployment.
BREAKER_HISTORY = 20


class BreakerView(Protocol):
    """What the health board reads from a circuit breaker (``CircuitBreaker``)."""

    @property
    def state(self) -> str: ...


class DeploymentHealth:
    def __init__(
        self,
        deployment: str,
        provider: str,
        window: int = 100,
        alpha: float = 0.2,
        *,
        wall: Callable[[], float] = time.time,
    ):
        self.deployment = deployment
        self.provider = provider
        self.in_flight = 0
        self.latency_avg_s: float | None = None
        self.consecutive_failures = 0
        self._alpha = alpha
        self._outcomes: deque[bool] = deque(maxlen=window)
        self._wall = wall
        self._breaker: BreakerView | None = None
        self._breaker_state = "closed"  # as last reported, until a breaker is followed
        self._breaker_history: deque[tuple[float, str, str]] = deque(maxlen=BREAKER_HISTORY)

    def follow_breaker(self, breaker: BreakerView) -> None:
        """Report ``breaker.state`` as this deployment's breaker state."""
        self._breaker = breaker

    def breaker_changed(self, before: str, after: str) -> None:
        """The breaker's ``on_transition``: this instance's view moved."""
        self._breaker_state = str(after)
        self._breaker_history.append((self._wall(), str(before), str(after)))

    @property
    def breaker_state(self) -> str:
        """closed, open or half_open (``BreakerState`` values)."""
        breaker = self._breaker
        return self._breaker_state if breaker is None else str(breaker.state)

    def breaker_history(self) -> list[dict[str, Any]]:
        """Recent transitions, oldest first: ``{"at": epoch s, "from", "to"}``."""
        return [{"at": at, "from": was, "to": now} for at, was, now in self._breaker_history]

    def started(self) -> None:
        self.in_flight += 1

    def finished(self, seconds: float, ok: bool) -> None:
        self.in_flight -= 1
        self._outcomes.append(ok)
        if ok:
            self.consecutive_failures = 0
            avg = self.latency_avg_s
            self.latency_avg_s = seconds if avg is None else avg + self._alpha * (seconds - avg)
        else:
            self.consecutive_failures += 1

    @property
    def error_rate(self) -> float:
        outcomes = self._outcomes
        return (len(outcomes) - sum(outcomes)) / len(outcomes) if outcomes else 0.0

    def healthy(self, unhealthy_after: int) -> bool:
        return self.consecutive_failures < unhealthy_after

    def snapshot(self, unhealthy_after: int) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "provider": self.provider,
            "healthy": self.healthy(unhealthy_after),
            "breaker": self.breaker_state,
            "breaker_history": self.breaker_history(),
            "in_flight": self.in_flight,
            "latency_avg_ms": None
            if self.latency_avg_s is None
            else round(self.latency_avg_s * 1000, 3),
            "error_rate": round(self.error_rate, 4),
            "recent_requests": len(self._outcomes),
            "consecutive_failures": self.consecutive_failures,
        }


class HealthBoard:
    def __init__(self, groups: dict[str, Iterable[DeploymentHealth]], unhealthy_after: int = 5):
        self._configured = {name: tuple(members) for name, members in groups.items()}
        self.unhealthy_after = unhealthy_after
        self._index(self._configured)

    def _index(self, groups: dict[str, tuple[DeploymentHealth, ...]]) -> None:
        self.groups = groups
        self.by_deployment = {d.deployment: d for ds in groups.values() for d in ds}

    def install(self, registered: dict[str, Iterable[DeploymentHealth]]) -> None:
        """The registry's models next to the config file's (``Router.install``)."""
        groups = dict(self._configured)
        groups.update((name, tuple(members)) for name, members in registered.items())
        self._index(groups)

    def degraded_groups(self) -> list[str]:
        """Model groups with no healthy deployment left."""
        return [
            name
            for name, members in self.groups.items()
            if not any(d.healthy(self.unhealthy_after) for d in members)
        ]

    def deployments(self) -> list[dict[str, Any]]:
        return [d.snapshot(self.unhealthy_after) for d in self.by_deployment.values()]
