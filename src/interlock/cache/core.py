"""What the unary, streaming and embeddings paths share: tiers, lock, counters.

``CacheCore`` turns stored bytes into hits, stores entries (the local tier
at once, the shared tier after), runs the cross-instance claim (take the
lock, or wait for another instance's answer) and keeps the counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from interlock.cache.entry import CacheEntry
from interlock.cache.policy import CacheSettings
from interlock.cache.remote import InstanceLock
from interlock.cache.request import CacheHit, CacheRequest, CacheStats
from interlock.cache.tiers import Tier, TieredStore
from interlock.ids import random_hex

__all__ = ["CacheCore", "Claim", "Pricing", "new_completion_id"]

# (model group, usage) -> US dollars the answer cost; for the "saved" counter.
Pricing = Callable[[str, Mapping[str, Any]], float]


def new_completion_id() -> str:
    return "chatcmpl-cache-" + random_hex(24)


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of the cross-instance claim for one miss."""

    locked: bool  # this instance holds ``lock:<key>``: release it after storing
    hit: CacheHit | None = None  # another instance answered while we waited


class CacheCore:
    def __init__(
        self,
        settings: CacheSettings,
        tiers: TieredStore,
        lock: InstanceLock | None,
        *,
        wall_clock: Callable[[], float] = time.time,
        pricing: Pricing | None = None,
        new_id: Callable[[], str] = new_completion_id,
    ):
        self.settings = settings
        self.tiers = tiers
        self.lock = lock
        self.stats = CacheStats()
        self._wall_clock = wall_clock
        self._pricing = pricing
        self._new_id = new_id

    def new_hit(self, entry: CacheEntry, tier: Tier) -> CacheHit:
        created = int(self._wall_clock())
        return CacheHit(entry, tier, self._new_id(), created, self.settings.replay_piece_chars)

    async def lookup(self, req: CacheRequest) -> CacheHit | None:
        if not req.directive.lookup:
            return None
        found = await self.tiers.get(req.key, namespace=req.namespace, model=req.model)
        entry = None if found is None else CacheEntry.from_bytes(found[0])
        if found is None or entry is None:
            return None
        self.stats.hits += 1
        self.stats.hits_l2 += found[1] == "l2"
        self.count_saved(entry.usage, entry.cost_usd)
        return self.new_hit(entry, found[1])

    # -- cross-instance ---------------------------------------------------------

    async def claim(self, req: CacheRequest) -> Claim:
        """Take the lock, or wait (bounded) for the instance that holds it.

        Requests that skip the lookup neither wait nor lock: they want their
        own answer, and nobody should be kept waiting on it.
        """
        if self.lock is None or not req.directive.lookup:
            return Claim(locked=False)
        if await self.lock.acquire(req.key):
            return Claim(locked=True)
        found = await self.lock.wait_for(req.key, lambda: self._shared_read(req))
        entry = None if found is None else CacheEntry.from_bytes(found)
        if entry is None:
            return Claim(locked=False)
        self.stats.coalesced_remote += 1
        self.count_saved(entry.usage, entry.cost_usd)
        return Claim(locked=False, hit=self.new_hit(entry, "l2"))

    async def _shared_read(self, req: CacheRequest) -> bytes | None:
        found = await self.tiers.get(req.key, namespace=req.namespace, model=req.model)
        return None if found is None else found[0]

    async def release(self, req: CacheRequest, claim: Claim) -> None:
        if claim.locked and self.lock is not None:
            await self.lock.release(req.key)

    # -- storing ----------------------------------------------------------------

    def price(self, model: str, usage: Any) -> float:
        if self._pricing is None or not isinstance(usage, Mapping):
            return 0.0
        return self._pricing(model, usage)

    def entry_for(self, req: CacheRequest, result: dict[str, Any]) -> CacheEntry | None:
        return CacheEntry.from_completion(
            result, cost_usd=self.price(req.model, result.get("usage"))
        )

    def store_local(self, req: CacheRequest, entry: CacheEntry | None) -> bytes | None:
        """Store in this process now (no await); the wrapped bytes for ``store_shared``."""
        if entry is None or not req.directive.fill:
            self.stats.fills_skipped += entry is None
            return None
        self.stats.fills += 1
        return self.tiers.put_local(
            req.key,
            entry.to_bytes(),
            req.directive.ttl_s,
            namespace=req.namespace,
            model=req.model,
        )

    async def store_shared(self, req: CacheRequest, wrapped: bytes | None) -> None:
        if wrapped is not None:
            await self.tiers.put_shared(req.key, wrapped, req.directive.ttl_s)

    async def store(self, req: CacheRequest, entry: CacheEntry | None) -> None:
        await self.store_shared(req, self.store_local(req, entry))

    def count_saved(self, usage: Mapping[str, Any], cost_usd: float, times: int = 1) -> None:
        self.stats.saved_prompt_tokens += times * int(usage.get("prompt_tokens") or 0)
        self.stats.saved_completion_tokens += times * int(usage.get("completion_tokens") or 0)
        self.stats.saved_usd += times * cost_usd
