"""The two tiers behind one get/put: in-process first, then the shared store.

Every stored value is wrapped with its wall-clock expiry (8 bytes in front),
so an entry read from the shared tier fills the local tier for exactly the
time it has left, whichever instance stored it. Wall-clock because the
instances share nothing else; the local tier itself runs on the monotonic
clock.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Literal

from interlock.cache.l1 import LocalTier
from interlock.cache.l2 import SharedTier

__all__ = ["Tier", "TieredStore"]

Tier = Literal["l1", "l2"]
_EXPIRY = struct.Struct("<d")


class TieredStore:
    def __init__(
        self,
        local: LocalTier,
        shared: SharedTier | None,
        wall_clock: Callable[[], float] = time.time,
    ):
        self.local = local
        self.shared = shared
        self._wall_clock = wall_clock

    async def get(self, key: str, *, namespace: str, model: str) -> tuple[bytes, Tier] | None:
        """The payload and the tier it came from; a shared hit fills the local tier."""
        wrapped = self.local.get(key)
        if wrapped is not None:
            return wrapped[_EXPIRY.size :], "l1"
        if self.shared is None:
            return None
        wrapped = await self.shared.get(key)
        if wrapped is None or len(wrapped) < _EXPIRY.size:
            return None
        left_s = _EXPIRY.unpack_from(wrapped)[0] - self._wall_clock()
        if not left_s > 0:
            return None  # the shared tier's clock and ours disagree; treat as expired
        self.local.put(key, wrapped, left_s, namespace=namespace, model=model)
        return wrapped[_EXPIRY.size :], "l2"

    def put_local(
        self, key: str, payload: bytes, ttl_s: float, *, namespace: str, model: str
    ) -> bytes:
        """Store in this process now (no await); returns the wrapped value for ``put_shared``."""
        wrapped = _EXPIRY.pack(self._wall_clock() + ttl_s) + payload
        self.local.put(key, wrapped, ttl_s, namespace=namespace, model=model)
        return wrapped

    async def put_shared(self, key: str, wrapped: bytes, ttl_s: float) -> bool:
        if self.shared is None:
            return False
        return await self.shared.set(key, wrapped, ttl_s)

    async def put(
        self, key: str, payload: bytes, ttl_s: float, *, namespace: str, model: str
    ) -> None:
        wrapped = self.put_local(key, payload, ttl_s, namespace=namespace, model=model)
        await self.put_shared(key, wrapped, ttl_s)
