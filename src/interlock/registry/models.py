"""The registered versions as the router serves them.

``RegisteredModels.apply`` turns the registry's versions into model groups
and installs them in the router (and the health board) in one step. A
version whose deployment facts did not change keeps its running deployment
(connection pool, breaker, health) across reloads; a new or changed one gets
a new adapter, started before it is installed; a replaced one is closed
after a grace period, so requests still on it finish.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from interlock.config import DeploymentConfig, FailoverSettings
from interlock.providers.base import Provider
from interlock.registry.canary import CanaryJudge, Roles
from interlock.registry.records import ModelVersion, Status
from interlock.registry.rollout import Rollout
from interlock.routing.base import DeploymentInfo
from interlock.routing.retry import RetryBudget, RetryPolicy
from interlock.routing.router import Deployment, ModelGroup, Router
from interlock.telemetry.health import HealthBoard

__all__ = ["RegisteredModels", "version_info"]

log = logging.getLogger("interlock.registry")

# A replaced adapter is closed this long after it left the router: no unary
# call outlives it by default (timeouts.total_s is for stragglers).
CLOSE_GRACE_S = 60.0


def version_info(version: ModelVersion) -> DeploymentInfo:
    return DeploymentInfo(
        id=version.deployment_id,
        version=version.version,
        tags=frozenset(version.tags),
        stage=version.status.value,
        share=version.traffic_share,
        sticky=version.sticky,
    )


@dataclass(slots=True)
class _Running:
    fingerprint: tuple[object, ...]
    deployment: Deployment


class RegisteredModels:
    def __init__(
        self,
        router: Router,
        health: HealthBoard,
        *,
        make_provider: Callable[[DeploymentConfig], Provider],
        make_deployment: Callable[[Provider, DeploymentConfig, DeploymentInfo], Deployment],
        judge: CanaryJudge | None,
        rng: random.Random,
        settings: FailoverSettings | None = None,
        close_grace_s: float = CLOSE_GRACE_S,
    ):
        self._router = router
        self._health = health
        self._make_provider = make_provider
        self._make_deployment = make_deployment
        self._judge = judge
        self._rng = rng
        self._settings = FailoverSettings() if settings is None else settings
        self._close_grace_s = close_grace_s
        self._running: dict[str, _Running] = {}
        self._created: dict[str, int] = {}
        self._closing: dict[asyncio.Task[None], Provider] = {}
        self.versions: dict[str, ModelVersion] = {}  # by deployment id, as installed

    async def apply(self, versions: Iterable[ModelVersion]) -> None:
        running: dict[str, _Running] = {}
        by_model: dict[str, list[Deployment]] = {}
        installed: dict[str, ModelVersion] = {}
        for version in versions:
            if not version.routable:
                continue
            if version.name in self._router.configured_names:
                # Registered before the config file took the name: the file wins.
                log.warning("model %s: the config file serves this name", version.deployment_id)
                continue
            deployment = await self._deployment(version)
            if deployment is None:
                continue
            running[version.deployment_id] = _Running(version.fingerprint(), deployment)
            by_model.setdefault(version.name, []).append(deployment)
            installed[version.deployment_id] = version
        now = int(time.time())
        groups = {}
        settings = self._settings
        for name, deployments in by_model.items():
            groups[name] = ModelGroup(
                name,
                deployments,
                Rollout(name, self._rng, self._judge),
                settings,
                RetryPolicy(
                    settings.max_attempts,
                    settings.backoff_base_s,
                    settings.backoff_max_s,
                    rng=self._rng,
                ),
                RetryBudget(settings.retry_budget_ratio),
                self._created.setdefault(name, now),
            )
        self._router.install(groups)
        self._health.install({n: [d.health for d in ds] for n, ds in by_model.items()})
        if self._judge is not None:
            self._judge.watch(_roles(installed.values()))
        for deployment_id, old in self._running.items():
            if running.get(deployment_id) is not old:
                self._close_later(old.deployment.provider)
        self._running = running
        self.versions = installed

    async def aclose(self) -> None:
        """Close every adapter now (the gateway is shutting down)."""
        closing, self._closing = self._closing, {}
        for task in closing:
            task.cancel()
        if closing:
            await asyncio.wait(closing)
        for provider in [
            *closing.values(),
            *(r.deployment.provider for r in self._running.values()),
        ]:
            await provider.aclose()
        self._running = {}

    async def _deployment(self, version: ModelVersion) -> Deployment | None:
        info = version_info(version)
        old = self._running.get(version.deployment_id)
        if old is not None and old.fingerprint == version.fingerprint():
            old.deployment.info = info  # its life cycle may have changed
            return old.deployment
        try:
            config = version.deployment()
            provider = self._make_provider(config)
            await provider.start()
        except Exception as exc:  # one bad version must not stop the others
            log.error("model %s: not served: %s", version.deployment_id, exc)
            return None
        return self._make_deployment(provider, config, info)

    def _close_later(self, provider: Provider) -> None:
        async def close() -> None:
            await asyncio.sleep(self._close_grace_s)
            await provider.aclose()

        task = asyncio.create_task(close())
        self._closing[task] = provider
        task.add_done_callback(lambda done: self._closing.pop(done, None))


def _roles(versions: Iterable[ModelVersion]) -> list[Roles]:
    by_model: dict[str, list[ModelVersion]] = {}
    for version in versions:
        by_model.setdefault(version.name, []).append(version)
    roles = []
    for name, members in by_model.items():
        live = frozenset(v.deployment_id for v in members if v.status is Status.LIVE)
        for v in members:
            if v.status is Status.CANARY and live:
                roles.append(Roles(name, v.deployment_id, v.version, live))
    return roles
