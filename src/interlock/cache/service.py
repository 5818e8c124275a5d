"""``ResponseCache``: the one object the pipeline talks to.

Per request the pipeline calls ``prepare`` (``None``: leave the cache out),
then one of ``complete`` (chat), ``stream`` (streamed chat) or ``embed``,
handing over the upstream call as a function; each returns the answer and
the ``x-interlock-cache`` status. The lower-level steps (``lookup``,
``fill``, ``coalesce_unary``, ``coalesce_stream``) are public for callers
that need to stage them differently.

A cache must never be why a request fails: store outages are misses and
skipped fills, a failed leader makes its followers call upstream
themselves, and only ``invalidate`` (an admin action that should report
failure) raises ``StateStoreUnavailable``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import orjson

from interlock.cache.coalesce import LeaderFailed, SingleFlight, original_error
from interlock.cache.core import CacheCore, Pricing, new_completion_id
from interlock.cache.embeddings import EmbeddingCache
from interlock.cache.entry import CacheEntry
from interlock.cache.invalidation import Generations
from interlock.cache.keys import body_digest, storage_key
from interlock.cache.l1 import LocalTier
from interlock.cache.l2 import SharedTier
from interlock.cache.policy import CachePolicy, CacheSettings
from interlock.cache.remote import InstanceLock
from interlock.cache.request import CacheHit, CacheRequest, CacheStats, CacheStatus
from interlock.cache.streaming import CachedStream, OnUsage, StartStream, StreamCoalescer
from interlock.cache.tiers import TieredStore
from interlock.state import StateStore

__all__ = ["ResponseCache"]

JSONDict = dict[str, Any]


class ResponseCache:
    def __init__(
        self,
        settings: CacheSettings,
        store: StateStore,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        pricing: Pricing | None = None,
        new_id: Callable[[], str] = new_completion_id,
    ):
        """``store`` holds generations and locks, and is the shared tier when
        ``settings.l2_enabled`` (turn that off on the memory store: one
        process already has the local tier)."""
        self.policy = CachePolicy(settings)
        self.generations = Generations(store, ttl_s=settings.generation_ttl_s, clock=clock)
        local = LocalTier(settings.l1_max_entries, settings.l1_max_bytes, clock)
        shared = SharedTier(store, settings.l2_max_entry_bytes) if settings.l2_enabled else None
        lock = None
        if settings.remote_wait_s > 0 and shared is not None:
            lock = InstanceLock(
                store,
                ttl_s=settings.lock_ttl_s,
                wait_s=settings.remote_wait_s,
                poll_s=settings.remote_poll_s,
                poll_max_s=settings.remote_poll_max_s,
                sleep=sleep,
            )
        self._core = CacheCore(
            settings,
            TieredStore(local, shared, wall_clock),
            lock,
            wall_clock=wall_clock,
            pricing=pricing,
            new_id=new_id,
        )
        self._unary: SingleFlight[tuple[JSONDict, CacheStatus]] = SingleFlight(
            settings.follower_timeout_s
        )
        self._streams = StreamCoalescer(self._core)
        self.embeddings = EmbeddingCache(self._core)

    @property
    def stats(self) -> CacheStats:
        return self._core.stats

    def gauges(self) -> dict[str, int]:
        """Current sizes, for metrics next to ``stats``."""
        tiers = self._core.tiers
        return {
            "l1_entries": len(tiers.local),
            "l1_bytes": tiers.local.total_bytes,
            "l1_evictions": tiers.local.evictions,
            "l2_errors": tiers.shared.errors if tiers.shared is not None else 0,
            "unary_followers_waiting": self._unary.following,
        }

    async def prepare(
        self,
        key_name: str,
        model: str,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
        *,
        embedding: bool = False,
        dialect: str = "openai",
        dialect_headers: Mapping[str, str] | None = None,
    ) -> CacheRequest | None:
        """The request's cache handle, or None when the cache stays out of it.

        ``model`` is the model group; ``headers`` a case-insensitive mapping
        (or lowercase names). Raises ``InvalidRequest`` for a bad TTL header.
        """
        directive = self.policy.directive(model, body, headers, embedding=embedding)
        if directive is None:
            return None
        namespace = self.policy.namespace(key_name)
        generations = await self.generations.current(namespace, model)
        if generations is None:
            self._core.stats.skipped += 1
            return None
        digest = body_digest(
            body, embedding=embedding, dialect=dialect, dialect_headers=dialect_headers
        )
        options = body.get("stream_options")
        include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
        key = storage_key(namespace, model, generations, digest)
        return CacheRequest(namespace, model, key, directive, include_usage, generations, digest)

    # -- chat ------------------------------------------------------------------

    async def lookup(self, req: CacheRequest) -> CacheHit | None:
        return await self._core.lookup(req)

    async def fill(self, req: CacheRequest, entry: CacheEntry | None) -> None:
        await self._core.store(req, entry)

    async def complete(
        self, req: CacheRequest, call: Callable[[], Awaitable[JSONDict]]
    ) -> tuple[JSONDict, CacheStatus]:
        """A ``chat.completion`` from the cache, an identical request, or ``call``."""
        hit = await self._core.lookup(req)
        if hit is not None:
            return hit.completion(), "hit"
        return await self.coalesce_unary(req, call)

    async def coalesce_unary(
        self, req: CacheRequest, call: Callable[[], Awaitable[JSONDict]], fallbacks: int = 1
    ) -> tuple[JSONDict, CacheStatus]:
        """Share ``call`` with identical requests in flight; fill on success.

        A follower whose leader failed tries once more (the first such
        follower leads, the rest join it); a second failure is raised as the
        leader's own error, so a failure wave costs at most two upstream calls.
        """
        if not (self.policy.settings.coalesce and req.directive.lookup):
            return await self._call_and_fill(req, call), "miss"
        failure: LeaderFailed | None = None
        try:
            (result, status), led = await self._unary.run(
                req.key, lambda: self._lead_unary(req, call)
            )
        except LeaderFailed as exc:
            failure = exc
        if failure is not None:
            if fallbacks <= 0:
                raise original_error(failure)
            self._core.stats.fallbacks += 1
            return await self.coalesce_unary(req, call, fallbacks - 1)
        if led:
            return result, status
        usage = result.get("usage") or {}
        self._core.stats.coalesced += 1
        self._core.count_saved(usage, self._core.price(req.model, usage))
        return orjson.loads(orjson.dumps(result)), "coalesced"  # followers get their own copy

    async def _lead_unary(
        self, req: CacheRequest, call: Callable[[], Awaitable[JSONDict]]
    ) -> tuple[JSONDict, CacheStatus]:
        claim = await self._core.claim(req)
        try:
            if claim.hit is not None:
                return claim.hit.completion(), "coalesced"
            return await self._call_and_fill(req, call), "miss"
        finally:
            await self._core.release(req, claim)

    async def _call_and_fill(
        self, req: CacheRequest, call: Callable[[], Awaitable[JSONDict]]
    ) -> JSONDict:
        result = await call()
        self._core.stats.misses += 1
        await self._core.store(req, self._core.entry_for(req, result))
        return result

    # -- streamed chat -----------------------------------------------------------

    async def stream(
        self, req: CacheRequest, start: StartStream, on_usage: OnUsage | None = None
    ) -> CachedStream:
        """Replay a hit, join an identical stream in flight, or lead ``start``.

        Unless this request calls upstream itself, ``on_usage`` is told the
        original answer's usage (a streamed client may not see it): at once
        for a hit, when it passes for a stream shared with another request.
        """
        hit = await self._core.lookup(req)
        if hit is not None:
            if on_usage is not None:
                on_usage(hit.entry.usage)
            return CachedStream("hit", _replay(hit.chunks(include_usage=req.include_usage)))
        return await self.coalesce_stream(req, start, on_usage)

    async def coalesce_stream(
        self, req: CacheRequest, start: StartStream, on_usage: OnUsage | None = None
    ) -> CachedStream:
        return await self._streams.open(req, start, on_usage=on_usage)

    # -- embeddings ---------------------------------------------------------------

    async def embed(
        self, req: CacheRequest, body: JSONDict, call: Callable[[JSONDict], Awaitable[JSONDict]]
    ) -> tuple[JSONDict, CacheStatus]:
        """An embeddings list with cached inputs filled in; ``call`` gets only the misses."""
        return await self.embeddings.embed(req, body, call)

    # -- invalidation and lifecycle -------------------------------------------------

    async def invalidate(self, *, namespace: str | None = None, model: str | None = None) -> None:
        """Make every instance miss on a namespace and/or model group.

        Other instances notice within ``generation_ttl_s``; this one at once.
        Raises ``StateStoreUnavailable``: the admin should learn it failed.
        """
        local = self._core.tiers.local
        if namespace is not None:
            await self.generations.bump_namespace(namespace)
            local.drop(namespace=namespace)
        if model is not None:
            await self.generations.bump_model(model)
            local.drop(model=model)

    async def aclose(self) -> None:
        """Cancel in-flight stream pumps (their subscribers get the failure)."""
        await self._streams.aclose()


async def _replay(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
