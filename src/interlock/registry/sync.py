"""Keeping every gateway's routing in step with the registry.

The registry's records are the truth; each gateway holds them in its router
(``RegisteredModels``) and reloads when they change. A change made through
one gateway is published as the registry's revision (the audit log's last
id) under one key of the shared state store; every gateway reads that key
every ``poll_s`` (one GET) and reloads when it has moved past what it has.
While the state store is out, or on the memory backend with more than one
process, a slower comparison with the records store itself (``reload_s``)
still brings the change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from interlock.config import RegistryConfig
from interlock.registry.models import RegisteredModels
from interlock.registry.store import RegistryStore
from interlock.state import StateStore, StateStoreUnavailable

__all__ = ["REVISION_KEY", "RegistrySync"]

log = logging.getLogger("interlock.registry")

REVISION_KEY = "registry:revision"
# Shutdown waits at most this long for a reload caught mid-query.
_STOP_WAIT_S = 5.0


class RegistrySync:
    def __init__(
        self,
        store: RegistryStore,
        models: RegisteredModels,
        state: StateStore,
        settings: RegistryConfig,
        *,
        on_reload: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self._on_reload = on_reload
        self._models = models
        self._state = state
        self._settings = settings
        self._clock = clock
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.revision = -1  # the revision this gateway serves
        self.reloads = 0

    async def reload(self) -> None:
        """Read every version and install them (serialised: the last read wins)."""
        async with self._lock:
            # The revision first: a change landing between the two reads is
            # then seen again at the next poll, never missed.
            revision = await self.store.revision()
            versions = await self.store.versions()
            await self._models.apply(versions)
            self.revision = revision
            self.reloads += 1
            self._on_reload()

    async def changed(self) -> None:
        """After a change made here: serve it now and tell the others."""
        await self.reload()
        try:
            await self._state.set(REVISION_KEY, str(self.revision).encode())
        except StateStoreUnavailable:
            log.warning(
                "registry: state store unavailable; other gateways reload within %gs",
                self._settings.reload_s,
            )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="registry-sync")

    async def aclose(self) -> None:
        self._stopping.set()
        if self._task is not None:
            done, _ = await asyncio.wait([self._task], timeout=_STOP_WAIT_S)
            if not done:
                self._task.cancel()
                await asyncio.wait([self._task], timeout=_STOP_WAIT_S)
        await self._models.aclose()

    async def _run(self) -> None:
        checked_store = self._clock()
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self._settings.poll_s)
                return
            except TimeoutError:
                pass
            try:
                if await self._published() > self.revision:
                    await self.reload()
                    continue
                if self._clock() - checked_store >= self._settings.reload_s:
                    checked_store = self._clock()
                    if await self.store.revision() != self.revision:
                        await self.reload()
            except Exception as exc:  # the records store is out: keep serving what we have
                log.warning("registry: reload failed: %s", exc)

    async def _published(self) -> int:
        try:
            raw = await self._state.get(REVISION_KEY)
        except StateStoreUnavailable:
            return -1
        try:
            return int(raw) if raw is not None else -1
        except ValueError:
            return -1
