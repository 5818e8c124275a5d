"""Shared routing vocabulary: what a strategy sees and what it returns.

A strategy is a plain policy object: given the eligible candidates of one
model group (breakers already consulted) and the request's routing context,
it returns them in preference order: the first is tried first, the rest are
the failover order. Strategies that learn (least-latency, bandit) are told
each attempt's outcome through ``observe``. No I/O, no clocks of their own:
time and randomness are injected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Candidate", "Decision", "DeploymentInfo", "Outcome", "RouteContext", "Strategy"]


@dataclass(frozen=True, slots=True)
class DeploymentInfo:
    """Static facts about a deployment, from the config."""

    id: str
    weight: float = 1.0
    priority: int = 0  # lower is preferred
    input_price: float = 0.0  # USD per million tokens
    output_price: float = 0.0
    version: str | None = None
    tags: frozenset[str] = frozenset()
    # A registered version's life cycle (``interlock.registry``): "staging"
    # serves only requests naming its version; "canary" takes ``share`` of
    # the model's requests (the same callers each time when ``sticky``).
    # The config file's deployments are all "live".
    stage: str = "live"
    share: float = 1.0
    sticky: bool = False


@dataclass(frozen=True, slots=True)
class Candidate:
    """A deployment plus what the gateway currently knows about it."""

    info: DeploymentInfo
    in_flight: int = 0
    latency_avg_s: float | None = None  # moving average; None until observed

    @property
    def id(self) -> str:
        return self.info.id


@dataclass(frozen=True, slots=True)
class RouteContext:
    """Per-request inputs to routing."""

    # Stable caller identity for sticky strategies (API key name or `user`).
    caller: str = ""
    # Explicit pin (request header); consistent hashing maps it to a deployment.
    pin: str | None = None
    now: float = 0.0
    # The model version the request named (``/v1/infer``'s ``version``):
    # only deployments of that version serve it.
    version: str | None = None
    # The request offers Anthropic's own tools (server tools: ADR 0027):
    # only deployments that run them serve it.
    anthropic_tools: bool = False
    # A legacy completion only an upstream serving /completions itself can
    # answer (``suffix``, several prompts ...): only such deployments serve it.
    native_completion: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    success: bool
    latency_s: float
    cost_usd: float = 0.0


@dataclass(slots=True)
class Decision:
    """The strategy's answer: preference order and a short reason for headers/logs."""

    order: list[Candidate]
    reason: str
    # e.g. the A/B arm or canary bucket, reported in a response header.
    labels: dict[str, str] = field(default_factory=dict)


class Strategy(Protocol):
    name: str

    def choose(self, candidates: Sequence[Candidate], ctx: RouteContext) -> Decision: ...

    def observe(self, deployment_id: str, outcome: Outcome) -> None: ...
