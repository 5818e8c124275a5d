"""The values crossing the cache's interface: a prepared request, a hit, the counters."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from interlock.cache.entry import CacheEntry
from interlock.cache.policy import CacheDirective
from interlock.cache.tiers import Tier

__all__ = ["CacheHit", "CacheRequest", "CacheStats", "CacheStatus"]

# The ``x-interlock-cache`` header: served from the cache, computed for this
# request, or shared with an identical request in flight (here or on another
# instance). Embeddings add "partial": some inputs cached, the rest computed.
CacheStatus = Literal["hit", "miss", "coalesced", "partial"]


@dataclass(frozen=True, slots=True)
class CacheRequest:
    """One request as the cache sees it, from ``ResponseCache.prepare``.

    The key is resolved once, with the generations current at that moment, so
    an answer computed across an invalidation is stored where nobody looks.
    """

    namespace: str
    model: str
    key: str
    directive: CacheDirective
    include_usage: bool
    generations: tuple[int, int]
    body_digest: str


@dataclass(frozen=True, slots=True)
class CacheHit:
    entry: CacheEntry
    tier: Tier
    completion_id: str
    created: int
    piece_chars: int

    def completion(self) -> dict[str, Any]:
        return self.entry.completion(self.completion_id, self.created)

    def chunks(self, *, include_usage: bool) -> list[bytes]:
        return self.entry.chunks(
            self.completion_id,
            self.created,
            include_usage=include_usage,
            piece_chars=self.piece_chars,
        )


@dataclass(slots=True)
class CacheStats:
    """Counters for metrics; monotonic except the gauges filled by ``snapshot``."""

    hits: int = 0  # answered from a tier (l1 + l2)
    hits_l2: int = 0
    misses: int = 0  # upstream called for a cacheable request
    coalesced: int = 0  # answered by an identical request in flight here
    coalesced_remote: int = 0  # ... or on another instance, via the shared tier
    fallbacks: int = 0  # followers that called upstream after their leader failed
    fills: int = 0
    fills_skipped: int = 0  # answers that could not be stored (partial, too big)
    skipped: int = 0  # requests that bypassed the cache: generations unknowable
    embedding_hits: int = 0  # per input
    embedding_misses: int = 0
    saved_prompt_tokens: int = 0
    saved_completion_tokens: int = 0
    saved_usd: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
