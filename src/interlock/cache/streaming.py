"""Streams through the cache: replay a hit, or share one upstream stream.

The first request for a key leads: a pump task (not the leader's own task,
so the leader's client hanging up does not cut its followers off) claims
the key across instances, starts the upstream stream, publishes every chunk
into a ``StreamFlight`` and, at the end, stores the answer. Identical
requests arriving meanwhile subscribe to the flight. When every subscriber
has gone the pump is cancelled, which closes the upstream stream.

The pump sees the usage-only chunk (the pipeline should always let it
through); each subscriber gets it only if its own request asked for usage.

A follower whose leader failed before it sent a byte falls back once: it
looks for a new flight (the first fallback leads one, the others join it).
If that fails too, or a byte had already gone out, it raises the leader's
own error (an SSE error event at the edge). So a failure wave costs at most
two upstream calls, however many requests were waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import orjson

from interlock.cache.accumulate import StreamAccumulator
from interlock.cache.coalesce import LeaderFailed, StreamFlight, Subscription, original_error
from interlock.cache.core import CacheCore
from interlock.cache.request import CacheRequest, CacheStatus

__all__ = ["CachedStream", "StreamCoalescer", "StreamStart"]

# The pipeline's stream start: the first chunk (already awaited) and the rest.
StreamStart = tuple[bytes | None, AsyncIterator[bytes]]
StartStream = Callable[[], Awaitable[StreamStart]]


@dataclass(slots=True)
class CachedStream:
    status: CacheStatus
    chunks: AsyncIterator[bytes]

    async def started(self) -> StreamStart:
        """Wait for the first chunk, as the pipeline's ``StreamPlan.start`` does,
        so a failure before any byte can still be an HTTP status."""
        return await anext(self.chunks, None), self.chunks


class StreamCoalescer:
    def __init__(self, core: CacheCore):
        self._core = core
        self._flights: dict[str, StreamFlight] = {}
        self._pumps: set[asyncio.Task[None]] = set()

    async def open(self, req: CacheRequest, start: StartStream, fallbacks: int = 1) -> CachedStream:
        """Join the identical stream in flight, or lead a new one."""
        flight = self._flights.get(req.key)
        if flight is not None and flight.joinable and req.directive.lookup:
            self._core.stats.coalesced += 1
            chunks = self._follow(req, flight.subscribe(), start, fallbacks)
            return CachedStream("coalesced", chunks)
        return await self._lead(req, start, share=self._core.settings.coalesce)

    async def aclose(self) -> None:
        """Cancel every pump (shutdown); their subscribers get the failure."""
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _lead(self, req: CacheRequest, start: StartStream, *, share: bool) -> CachedStream:
        def abandoned() -> None:
            self._forget(req.key, flight)
            task.cancel()

        settings = self._core.settings
        flight = StreamFlight(
            max_buffer_bytes=settings.stream_buffer_bytes,
            follower_timeout_s=settings.follower_timeout_s,
            on_abandoned=abandoned,
        )
        if share:
            self._flights[req.key] = flight
        subscription = flight.subscribe(leader=True)
        decided: asyncio.Future[CacheStatus] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._pump(req, flight, start, decided))
        self._pumps.add(task)
        task.add_done_callback(self._pumps.discard)
        try:
            status = await asyncio.shield(decided)
        except BaseException:
            await subscription.aclose()
            raise
        return CachedStream(status, _for_client(subscription, req.include_usage))

    async def _pump(
        self,
        req: CacheRequest,
        flight: StreamFlight,
        start: StartStream,
        decided: asyncio.Future[CacheStatus],
    ) -> None:
        core = self._core
        claim = None
        try:
            claim = await core.claim(req)
            if claim.hit is not None:
                decided.set_result("coalesced")
                for chunk in claim.hit.chunks(include_usage=True):
                    flight.publish(chunk)
                self._forget(req.key, flight)
                flight.finish()
                return
            decided.set_result("miss")
            core.stats.misses += 1
            accumulator = StreamAccumulator(max_bytes=core.settings.stream_buffer_bytes)
            first, chunks = await start()
            try:
                if first is not None:
                    accumulator.feed(first)
                    flight.publish(first)
                async for chunk in chunks:
                    accumulator.feed(chunk)
                    flight.publish(chunk)
            finally:
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
            entry = accumulator.entry()
            if entry is not None:
                entry = replace(entry, cost_usd=core.price(req.model, entry.usage))
                core.count_saved(entry.usage, entry.cost_usd, times=flight.joined - 1)
            # Local store before the flight leaves the map: a request arriving
            # in between must find either the flight or the entry.
            wrapped = core.store_local(req, entry)
            self._forget(req.key, flight)
            flight.finish()
            await core.store_shared(req, wrapped)
        except BaseException as exc:
            self._forget(req.key, flight)
            if not decided.done():
                decided.set_result("miss")
            flight.fail(exc)
            if not isinstance(exc, Exception):
                raise
        finally:
            if claim is not None:
                await core.release(req, claim)

    async def _follow(
        self, req: CacheRequest, subscription: Subscription, start: StartStream, fallbacks: int
    ) -> AsyncIterator[bytes]:
        sent = False
        failure: LeaderFailed | None = None
        try:
            async for chunk in _for_client(subscription, req.include_usage):
                sent = True
                yield chunk
        except LeaderFailed as exc:
            failure = exc
        finally:
            await subscription.aclose()
        if failure is None:
            return
        # Raised outside the handler so the shared error object gains no __context__.
        if sent or fallbacks <= 0:
            raise original_error(failure)
        self._core.stats.fallbacks += 1
        retry = await self.open(req, start, fallbacks - 1)
        async for chunk in retry.chunks:
            yield chunk

    def _forget(self, key: str, flight: StreamFlight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]


async def _for_client(chunks: AsyncIterator[bytes], include_usage: bool) -> AsyncIterator[bytes]:
    """The flight's chunks as this client asked: the usage-only chunk only if wanted."""
    try:
        async for chunk in chunks:
            if include_usage or not _usage_only(chunk):
                yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def _usage_only(chunk: bytes) -> bool:
    # Cheap test first, so only the chunk that carries usage is parsed.
    if b'"usage":{' not in chunk and b'"usage": {' not in chunk:
        return False
    try:
        parsed = orjson.loads(chunk)
    except orjson.JSONDecodeError:
        return False
    return not parsed.get("choices") and isinstance(parsed.get("usage"), dict)
