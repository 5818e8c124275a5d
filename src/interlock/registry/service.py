"""The registry's operations, as the admin API and CLI ask for them.

Each change is written (with its audit record) by ``RegistryStore``, then
served here at once and published to the other gateways (``RegistrySync``).
A new version is checked before it is stored: its deployment facts as the
config file's are checked, and its adapter is built and started once, so an
ONNX file that does not load or a name clashing with the config file's
models is a 400 now rather than a version that silently never serves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from interlock.config import ConfigError, DeploymentConfig
from interlock.errors import Conflict, InterlockError, InvalidRequest
from interlock.providers.base import Provider
from interlock.registry.canary import Breach
from interlock.registry.records import ModelVersion, VersionPatch, VersionSpec
from interlock.registry.store import AuditEntry, RegistryStore
from interlock.registry.sync import RegistrySync

__all__ = ["AUTO_ROLLBACK_ACTOR", "RegistryService"]

log = logging.getLogger("interlock.registry")

AUTO_ROLLBACK_ACTOR = "interlock:auto-rollback"


class RegistryService:
    def __init__(
        self,
        store: RegistryStore,
        sync: RegistrySync,
        *,
        configured_names: frozenset[str],
        make_provider: Callable[[DeploymentConfig], Provider],
        on_rollback: Callable[[str, str], None] = lambda model, trigger: None,
    ):
        self.store = store
        self.sync = sync
        self._configured = configured_names
        self._make_provider = make_provider
        self._on_rollback = on_rollback
        self._tasks: set[asyncio.Task[None]] = set()

    async def versions(self, name: str | None = None) -> list[ModelVersion]:
        return await self.store.versions(name)

    async def get(self, name: str, version: str) -> ModelVersion | None:
        return await self.store.get(name, version)

    async def audit(self, target: str | None, limit: int) -> list[AuditEntry]:
        return await self.store.audit(target=target, limit=limit)

    async def create(self, spec: VersionSpec, actor: str) -> ModelVersion:
        if spec.name in self._configured:
            raise Conflict(
                f"`{spec.name}` is a model of the config file; register versions under "
                "another name.",
                param="name",
            )
        await self._check_loads(spec.deployment())
        created = await self.store.create(spec, actor)
        await self.sync.changed()
        return created

    async def update(
        self, name: str, version: str, patch: VersionPatch, actor: str
    ) -> ModelVersion:
        current = await self.store.get(name, version)
        if current is not None and patch.changes_deployment:
            await self._check_loads(current.deployment(patch))
        updated = await self.store.update(name, version, patch, actor)
        await self.sync.changed()
        return updated

    async def delete(self, name: str, version: str, actor: str) -> ModelVersion:
        deleted = await self.store.delete(name, version, actor)
        await self.sync.changed()
        return deleted

    async def set_canary(
        self, name: str, version: str, share: float, sticky: bool, actor: str
    ) -> ModelVersion:
        changed = await self.store.set_canary(name, version, share, sticky, actor)
        await self.sync.changed()
        return changed

    async def promote(self, name: str, version: str, actor: str) -> ModelVersion:
        promoted = await self.store.promote(name, version, actor)
        await self.sync.changed()
        return promoted

    async def rollback(self, name: str, actor: str, reason: str = "") -> ModelVersion:
        serving = await self.store.rollback(name, actor, reason=reason)
        await self.sync.changed()
        self._on_rollback(name, "manual")
        return serving

    def breached(self, breach: Breach) -> None:
        """The canary judge's verdict: roll the canary back, in the background
        (the judge runs inside a request's routing)."""
        task = asyncio.create_task(self._auto_rollback(breach))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Wait (briefly) for a rollback under way, then stop syncing and
        close the registered versions' adapters."""
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        await self.sync.aclose()

    async def _auto_rollback(self, breach: Breach) -> None:
        try:
            await self.store.rollback(
                breach.model, AUTO_ROLLBACK_ACTOR, reason=breach.reason, canary=breach.version
            )
        except Conflict:
            return  # promoted or rolled back meanwhile (maybe by another gateway)
        except Exception as exc:
            log.error(
                "registry: automatic rollback of %s@%s failed: %s",
                breach.model,
                breach.version,
                exc,
            )
            return
        log.warning(
            "registry: canary %s@%s rolled back: %s", breach.model, breach.version, breach.reason
        )
        self._on_rollback(breach.model, "auto")
        try:
            await self.sync.changed()
        except Exception as exc:
            log.error("registry: reload after rollback failed: %s", exc)

    async def _check_loads(self, config: DeploymentConfig) -> None:
        """Build and start the adapter once: a version that cannot serve is a
        400 now, not a version the router silently leaves out."""
        try:
            provider = self._make_provider(config)
        except (ValueError, ConfigError) as exc:
            raise InvalidRequest(f"Invalid model version: {exc}", param="params") from None
        try:
            await provider.start()
        except InterlockError:
            raise
        except Exception as exc:
            raise InvalidRequest(
                f"Model version `{config.version}` does not load: {exc}", param="upstream_model"
            ) from None
        finally:
            await provider.aclose()
