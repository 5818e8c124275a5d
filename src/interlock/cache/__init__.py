"""The response cache: two tiers, streaming replay, request coalescing.

``ResponseCache`` (``service.py``) is the facade the pipeline calls; it is
built once in the app's lifespan from ``CacheSettings`` and the state store.
The pieces, each usable and tested on its own:

- ``keys`` / ``policy``: what determines an answer, and what may be cached (pure);
- ``entry`` / ``accumulate``: the stored answer, replayed as JSON or a stream;
- ``l1`` / ``l2`` / ``tiers``: in-process LRU, shared store, one get/put over both;
- ``coalesce`` / ``streaming`` / ``remote``: single-flight here, a lock across instances;
- ``invalidation``: generation numbers, so invalidating is one write;
- ``embeddings``: per-input caching of embeddings batches.
"""

from interlock.cache.coalesce import LeaderFailed
from interlock.cache.entry import CacheEntry
from interlock.cache.policy import TTL_HEADER, CacheDirective, CachePolicy, CacheSettings
from interlock.cache.request import CacheHit, CacheRequest, CacheStats, CacheStatus
from interlock.cache.service import ResponseCache
from interlock.cache.streaming import CachedStream

__all__ = [
    "TTL_HEADER",
    "CacheDirective",
    "CacheEntry",
    "CacheHit",
    "CachePolicy",
    "CacheRequest",
    "CacheSettings",
    "CacheStats",
    "CacheStatus",
    "CachedStream",
    "LeaderFailed",
    "ResponseCache",
]
