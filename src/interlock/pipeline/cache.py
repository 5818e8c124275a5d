"""The cache stage: whether the cache takes part in this call, and the call
through it: a hit, an identical request in flight joined, or the upstream
call made (and its answer stored).

The cache itself (keys, tiers, coalescing) is ``interlock.cache``. An answer
served without an upstream call of its own is accounted at the original's
token counts and no cost.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from interlock.cache import CacheRequest, ResponseCache
from interlock.cache.streaming import CachedStream, StartStream
from interlock.pipeline.call import ModelCall
from interlock.pipeline.request import JSONDict
from interlock.pipeline.watch import note_summary
from interlock.telemetry.record import RequestRecord

__all__ = ["CacheStage"]


class CacheStage:
    def __init__(self, cache: ResponseCache | None):
        self.cache = cache

    async def prepare(self, call: ModelCall, *, embedding: bool = False) -> CacheRequest | None:
        """The call's cache handle, or None when the cache stays out of it."""
        if self.cache is None or call.options.forced is not None:
            return None  # a forced deployment is an incident repro: always upstream
        record = call.record
        began = time.perf_counter()
        request = await self.cache.prepare(
            call.principal.name,
            call.group.name,
            call.body,
            call.options.cache_headers,
            embedding=embedding,
            dialect=call.options.dialect,
            dialect_headers=call.options.dialect_headers,
        )
        record.stages["cache"] = time.perf_counter() - began
        return request

    async def complete(
        self, call: ModelCall, upstream: Callable[[], Awaitable[JSONDict]]
    ) -> JSONDict:
        """A chat completion through the cache, or straight from ``upstream``."""
        cached = await self.prepare(call)
        if cached is None:
            return await upstream()
        record = call.record
        result, record.cache = await self._cache().complete(cached, upstream)
        if record.cache != "miss":
            served_without_upstream(record, result.get("usage"))
        return result

    async def embed(
        self, call: ModelCall, upstream: Callable[[JSONDict], Awaitable[JSONDict]]
    ) -> JSONDict:
        """Embeddings with the cached inputs filled in; ``upstream`` is given
        a body with only the inputs the cache lacks."""
        cached = await self.prepare(call, embedding=True)
        if cached is None:
            return await upstream(call.body)
        result, call.record.cache = await self._cache().embed(cached, call.body, upstream)
        return result

    async def stream(
        self, call: ModelCall, cached: CacheRequest, start: StartStream
    ) -> CachedStream:
        """A stream through the cache (``cached`` from ``prepare``): a replayed
        hit, a stream in flight joined, or ``start`` led and recorded."""
        record = call.record
        stream = await self._cache().stream(
            cached, start, on_usage=lambda usage: served_without_upstream(record, usage)
        )
        record.cache = stream.status
        if stream.status != "miss":
            record.attempts = 0  # served from the cache or a peer's stream
            stream.chunks = note_summary(stream.chunks, record)
        return stream

    def _cache(self) -> ResponseCache:
        assert self.cache is not None, "prepare() stays out without a cache"
        return self.cache


def served_without_upstream(record: RequestRecord, usage: Any) -> None:
    """A hit or a coalesced follower: the original token counts, no cost."""
    if isinstance(usage, Mapping):
        record.usage = dict(usage)
        record.input_tokens = int(usage.get("prompt_tokens") or 0)
        record.output_tokens = int(usage.get("completion_tokens") or 0)
    record.cost_usd = 0.0
