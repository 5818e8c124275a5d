"""Coalescing across instances: a short lock, and a bounded wait on the shared tier.

The instance that takes ``lock:<key>`` (``set_if_absent`` with a TTL) calls
upstream and fills the shared tier; another instance with the same request
polls the shared tier with growing pauses instead of calling upstream too,
and gives up after ``wait_s`` (or as soon as the lock is gone without an
answer) to call upstream itself. A wait can only ever delay a request by
``wait_s``, never fail it, and a store outage means "no coordination", not
an error.

Release deletes the lock unconditionally. Should a holder outlive its TTL
and delete a successor's lock, a third instance may call upstream once more:
a duplicate call, never a wrong answer, and cheaper than a script per release.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

from interlock.state import StateStore, StateStoreUnavailable

__all__ = ["InstanceLock"]

_PREFIX = "lock:"
log = logging.getLogger("interlock.cache")


class InstanceLock:
    def __init__(
        self,
        store: StateStore,
        *,
        ttl_s: float,
        wait_s: float,
        poll_s: float = 0.05,
        poll_max_s: float = 0.5,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self._store = store
        self._ttl_s = ttl_s
        self._wait_s = wait_s
        self._poll_s = poll_s
        self._poll_max_s = poll_max_s
        self._sleep = sleep
        self._token = os.urandom(8).hex().encode()  # who holds it, for debugging

    async def acquire(self, key: str) -> bool:
        """True when this instance should call upstream: it took the lock, or
        the store is down and there is nobody to coordinate with."""
        try:
            return await self._store.set_if_absent(_PREFIX + key, self._token, ttl_s=self._ttl_s)
        except StateStoreUnavailable:
            return True

    async def release(self, key: str) -> None:
        try:
            await self._store.delete(_PREFIX + key)
        except StateStoreUnavailable:
            log.debug("cache lock %s left to expire: state store unavailable", key)

    async def wait_for(self, key: str, read: Callable[[], Awaitable[bytes | None]]) -> bytes | None:
        """Poll ``read`` until it answers, the lock is gone, or ``wait_s`` is spent."""
        waited, pause = 0.0, self._poll_s
        while waited < self._wait_s:
            pause = min(pause, self._wait_s - waited)
            await self._sleep(pause)
            waited += pause
            value = await read()
            if value is not None:
                return value
            if not await self._held(key):
                # The holder may have filled just before releasing: one last read.
                return await read()
            pause = min(pause * 2, self._poll_max_s)
        return None

    async def _held(self, key: str) -> bool:
        try:
            return await self._store.get(_PREFIX + key) is not None
        except StateStoreUnavailable:
            return False
