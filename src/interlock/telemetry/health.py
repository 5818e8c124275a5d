"""Passive per-deployment health: in-flight, latency average, error rate.

Fed by the pipeline after every upstream attempt; read by ``/health/*``
(and, later, by load-aware routing). Until circuit breakers land, a
deployment counts as unhealthy after ``unhealthy_after`` consecutive
upstream failures, and healthy again on its next success.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

__all__ = ["DeploymentHealth", "HealthBoard"]


class DeploymentHealth:
    def __init__(self, deployment: str, provider: str, window: int = 100, alpha: float = 0.2):
        self.deployment = deployment
        self.provider = provider
        self.in_flight = 0
        self.latency_avg_s: float | None = None
        self.consecutive_failures = 0
        self._alpha = alpha
        self._outcomes: deque[bool] = deque(maxlen=window)

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
            "breaker": "none",  # circuit breakers arrive with the router work
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
