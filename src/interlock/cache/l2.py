"""The shared tier: entries on the ``StateStore`` (Redis across instances).

A cache is an optimisation, so its failures must never become the caller's:
when the store is unavailable a read is a miss and a write is skipped, each
counted in ``errors`` for metrics. Keys live under ``cache:`` so they sit
apart from breakers and limiters in the same store.
"""

from __future__ import annotations

import logging

from interlock.state import StateStore, StateStoreUnavailable

__all__ = ["KEY_PREFIX", "SharedTier"]

KEY_PREFIX = "cache:"
log = logging.getLogger("interlock.cache")


class SharedTier:
    def __init__(self, store: StateStore, max_entry_bytes: int):
        self._store = store
        self.max_entry_bytes = max_entry_bytes
        self.errors = 0

    async def get(self, key: str) -> bytes | None:
        try:
            return await self._store.get(KEY_PREFIX + key)
        except StateStoreUnavailable as exc:
            self._failed("read", exc)
            return None

    async def set(self, key: str, value: bytes, ttl_s: float) -> bool:
        """Store for ``ttl_s``; False when skipped (too big, or the store is down)."""
        if len(value) > self.max_entry_bytes or not ttl_s > 0:
            return False
        try:
            await self._store.set(KEY_PREFIX + key, value, ttl_s=ttl_s)
        except StateStoreUnavailable as exc:
            self._failed("write", exc)
            return False
        return True

    def _failed(self, what: str, exc: StateStoreUnavailable) -> None:
        self.errors += 1
        log.debug("cache %s skipped: state store unavailable (%s)", what, exc)
