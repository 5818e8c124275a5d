"""The router: every failure-handling decision lives here.

For one request it asks the model group's strategy for a preference order,
skips deployments whose breaker is open or that asked for a rest, and tries
them in turn: a failed attempt (an upstream fault, never a client error)
counts against the deployment's breaker and, while attempts and the retry
budget allow, moves on to the next deployment after a jittered backoff.
When nothing is eligible the answer is a fast 503 naming the model group.

A deployment that refuses with ``Retry-After`` (a 429, a 503) has said when
it will take work again: until then (at most ``breaker.max_open_s``) this
instance routes around it, as around an open breaker, instead of sending it
requests it announced it would refuse.

Adapters stay dumb; the pipeline supplies the attempt itself (the adapter
call plus its telemetry) as a callback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from interlock.config import FailoverSettings, TimeoutConfig
from interlock.errors import (
    InvalidRequest,
    ModelNotFound,
    NoHealthyDeployment,
    ProviderError,
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from interlock.providers.base import Provider
from interlock.routing.base import Candidate, DeploymentInfo, Outcome, RouteContext, Strategy
from interlock.routing.breaker import BreakerState, CircuitBreaker
from interlock.routing.retry import RETRYABLE_KINDS, RetryBudget, RetryPolicy
from interlock.telemetry.health import DeploymentHealth
from interlock.telemetry.metrics import Metrics
from interlock.telemetry.record import RequestRecord

__all__ = ["Deployment", "ModelGroup", "Router", "error_kind"]

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

# Upstream faults: they count against a breaker and may be retried elsewhere.
# A client error (the upstream rejected the request's content) is neither.
CLIENT_ERROR = "client_error"


@dataclass(slots=True)
class Deployment:
    """One deployment at run time: its adapter and its resilience state."""

    provider: Provider
    info: DeploymentInfo
    breaker: CircuitBreaker
    health: DeploymentHealth
    timeouts: TimeoutConfig
    # The router's clock reading before which the deployment asked not to be
    # sent requests (its Retry-After); 0.0 when it did not.
    resting_until: float = 0.0

    @property
    def id(self) -> str:
        return self.info.id

    def resting(self, now: float) -> bool:
        return now < self.resting_until


class ModelGroup:
    """The deployments behind one public model name, and how to route among them."""

    def __init__(
        self,
        name: str,
        deployments: Sequence[Deployment],
        strategy: Strategy,
        settings: FailoverSettings,
        retry: RetryPolicy,
        budget: RetryBudget,
        created: int,
    ):
        if not deployments:
            raise ValueError(f"model {name!r} has no deployments")
        self.name = name
        self.deployments = {d.id: d for d in deployments}
        self.strategy = strategy
        self.settings = settings
        self.retry = retry
        self.budget = budget
        self.created = created

    @property
    def providers(self) -> tuple[Provider, ...]:
        return tuple(d.provider for d in self.deployments.values())

    @property
    def owned_by(self) -> str:
        owners = {d.provider.owned_by for d in self.deployments.values()}
        return owners.pop() if len(owners) == 1 else "interlock"

    def has_version(self, version: str) -> bool:
        return any(d.info.version == version for d in self.deployments.values())

    def candidates(self) -> list[Candidate]:
        return [
            Candidate(d.info, d.health.in_flight, d.health.latency_avg_s)
            for d in self.deployments.values()
        ]


class Router:
    def __init__(
        self,
        groups: Mapping[str, ModelGroup],
        metrics: Metrics,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        aliases: Mapping[str, str] | None = None,
    ):
        self._configured = dict(groups)
        self._groups = dict(groups)
        # Other names of configured groups: alias -> the group's name.
        self.aliases: Mapping[str, str] = dict(aliases or {})
        self._metrics = metrics
        self._sleep = sleep
        self._clock = clock

    def group(self, model: str) -> ModelGroup:
        """The group named ``model``, or one of whose aliases it is."""
        group = self._groups.get(model)
        if group is None:
            group = self._groups.get(self.aliases.get(model, ""))
            if group is None:
                raise ModelNotFound(model)
        return group

    def canonical(self, model: str) -> str:
        """``model``, or the name of the group it is an alias of."""
        return self.aliases.get(model, model)

    @property
    def groups(self) -> Sequence[ModelGroup]:
        return tuple(self._groups.values())

    @property
    def configured_names(self) -> frozenset[str]:
        """The config file's model names and aliases (the registry may not reuse them)."""
        return frozenset(self._configured) | frozenset(self.aliases)

    def install(self, registered: Mapping[str, ModelGroup]) -> None:
        """Serve the registry's models next to the config file's, in place of
        the registry's previous set. One assignment: a request looks its
        group up once, so it sees the old set or the new one, never a mix."""
        clash = set(registered) & self.configured_names
        if clash:
            raise ValueError(f"registered models clash with configured ones: {sorted(clash)}")
        self._groups = {**self._configured, **registered}

    async def run(
        self,
        group: ModelGroup,
        record: RequestRecord,
        route: RouteContext,
        attempt: Callable[[Deployment], Awaitable[T]],
        *,
        forced: str | None = None,
        exclude: frozenset[str] = frozenset(),
    ) -> T:
        """Try deployments in the strategy's order until one answers.

        ``forced`` (a permitted caller reproducing an incident) goes to that
        deployment only, past its breaker; ``exclude`` leaves deployments out
        (mid-stream failover never returns to the one that just died).
        """
        began = time.perf_counter()
        if forced is not None:
            return await self._forced(group, record, forced, attempt)
        # Open breakers and resting deployments are left out before the strategy
        # chooses, so sticky strategies' labels (canary, arm) describe what
        # really serves. Half-open ones stay in: allow() below decides who probes.
        now = self._clock()
        candidates = [
            c
            for c in group.candidates()
            if c.id not in exclude
            and self._eligible(group.deployments[c.id], now)
            and self._serves(c, route)
            and (
                not route.anthropic_tools or group.deployments[c.id].provider.takes_anthropic_tools
            )
            and (not route.native_completion or group.deployments[c.id].provider.serves_completions)
        ]
        decision = group.strategy.choose(candidates, route)
        record.route_reason = f"{group.strategy.name}:{decision.reason}"
        record.route_labels = decision.labels
        group.budget.record_request()
        record.stages["routing"] = time.perf_counter() - began
        last_error: ProviderError | None = None
        gave_up_early = False
        for candidate in decision.order:
            if record.attempts >= group.settings.max_attempts:
                gave_up_early = True
                break
            deployment = group.deployments[candidate.id]
            if not await deployment.breaker.allow():
                continue
            if record.attempts and not await self._before_retry(group, record):
                gave_up_early = True
                break
            try:
                return await self._attempt(group, deployment, record, attempt)
            except ProviderError as exc:
                if not self._retryable(exc):
                    raise
                last_error = exc
        if last_error is not None and gave_up_early:
            raise last_error  # attempts or retry budget ran out with deployments left
        raise self._unavailable(group, last_error, now)

    def anthropic_up(self, group: ModelGroup) -> bool:
        """Whether a deployment of ``group`` that runs Anthropic's own tools
        may take work now (not behind an open breaker, not resting)."""
        now = self._clock()
        return any(
            d.provider.takes_anthropic_tools and self._eligible(d, now)
            for d in group.deployments.values()
        )

    def hosted_search_up(self, group: ModelGroup) -> bool:
        """Whether a deployment of ``group`` that runs the Responses API's
        hosted web search itself may take work now."""
        now = self._clock()
        return any(
            d.provider.runs_hosted_web_search and self._eligible(d, now)
            for d in group.deployments.values()
        )

    @staticmethod
    def _serves(candidate: Candidate, route: RouteContext) -> bool:
        """A named version is served by its deployments only; a staging one
        by nothing else."""
        if route.version is not None:
            return candidate.info.version == route.version
        return candidate.info.stage != "staging"

    @staticmethod
    def _eligible(deployment: Deployment, now: float) -> bool:
        return deployment.breaker.state is not BreakerState.OPEN and not deployment.resting(now)

    async def _forced(
        self,
        group: ModelGroup,
        record: RequestRecord,
        deployment_id: str,
        attempt: Callable[[Deployment], Awaitable[T]],
    ) -> T:
        deployment = group.deployments.get(deployment_id)
        if deployment is None:
            raise InvalidRequest(
                f"Model `{group.name}` has no deployment `{deployment_id}`.",
                param="x-interlock-force-deployment",
            )
        record.route_reason = "forced:header"
        await deployment.breaker.allow()  # keeps probe accounting whole; the answer is ignored
        return await self._attempt(group, deployment, record, attempt)

    @staticmethod
    def _unavailable(
        group: ModelGroup, last_error: ProviderError | None, now: float
    ) -> NoHealthyDeployment:
        """Every deployment was tried, is behind an open breaker or resting: a
        fast 503. Retry-After: when the first may take work again (a rest's
        end, or about a breaker's first open period)."""
        open_s = group.settings.breaker.open_s
        retry_after = min(
            d.resting_until - now if d.resting(now) else open_s for d in group.deployments.values()
        )
        if last_error is None:
            return NoHealthyDeployment(
                f"No healthy deployment is available for model `{group.name}`; retry shortly.",
                retry_after_s=retry_after,
            )
        error = NoHealthyDeployment(
            f"Every deployment of model `{group.name}` failed; last error: {last_error.message}",
            code="all_deployments_failed",
            retry_after_s=retry_after,
        )
        error.__cause__ = last_error
        return error

    async def _attempt(
        self,
        group: ModelGroup,
        deployment: Deployment,
        record: RequestRecord,
        attempt: Callable[[Deployment], Awaitable[T]],
    ) -> T:
        record.attempts += 1
        record.deployment = deployment.id
        record.provider = deployment.provider.provider_name
        started = self._clock()
        # Every allow() that said yes gets exactly one record_*: a half-open
        # probe slot must never be left taken.
        try:
            result = await attempt(deployment)
        except ProviderError as exc:
            kind = error_kind(exc)
            if exc.injected:
                record.injected.append(f"{deployment.id}:{kind}")
            if kind == CLIENT_ERROR:  # the deployment answered; the request was at fault
                await deployment.breaker.record_success()
            else:
                await deployment.breaker.record_failure()
                group.strategy.observe(deployment.id, Outcome(False, self._clock() - started))
                self._rest(group, deployment, exc)
            raise
        except BaseException:  # cancelled (client left) or our own bug: no verdict
            await asyncio.shield(deployment.breaker.record_ignored())
            raise
        await deployment.breaker.record_success()
        cost = record.cost_usd or 0.0  # known here for unary calls; streams learn without it
        group.strategy.observe(deployment.id, Outcome(True, self._clock() - started, cost))
        record.error_type = None  # an earlier attempt's failure was recovered
        return result

    def _rest(self, group: ModelGroup, deployment: Deployment, exc: ProviderError) -> None:
        """Honour the upstream's Retry-After, capped by the breaker's longest
        open period: a wrong or hostile hint cannot bench a deployment for long."""
        wait = exc.retry_after_s
        if wait is None or not wait > 0:
            return
        until = self._clock() + min(wait, group.settings.breaker.max_open_s)
        deployment.resting_until = max(deployment.resting_until, until)

    @staticmethod
    def _retryable(exc: ProviderError) -> bool:
        """Worth another deployment? (How many attempts remain is the loop's business.)"""
        return error_kind(exc) in RETRYABLE_KINDS

    async def _before_retry(self, group: ModelGroup, record: RequestRecord) -> bool:
        """Spend retry budget and back off; False means stop trying."""
        if not group.budget.try_spend():
            return False
        # A Retry-After speaks for the deployment that sent it (which now
        # rests); the retry goes to another one, so only the backoff applies.
        delay = group.retry.backoff(record.attempts)
        self._metrics.retries.labels(group.name).inc()
        self._metrics.failovers.labels(group.name).inc()
        if delay > 0:
            await self._sleep(delay)
        return True


def error_kind(exc: ProviderError) -> str:
    """A small fixed vocabulary for metrics, logs, breakers and retries."""
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamConnectionError):
        return "connection"
    if isinstance(exc, UpstreamProtocolError):
        return "protocol"
    if isinstance(exc, UpstreamStatusError):
        if exc.upstream_status == 429:
            return "rate_limited"
        if exc.upstream_status in (401, 403):
            return "upstream_auth"
        if exc.upstream_status < 500:
            return CLIENT_ERROR
    return "server_error"
