"""Streams through the cache: replay a hit, or share one upstream stream.

The first request for a key leads: a pump task (not the leader's own task,
so the leader's client hanging up does not cut its followers off) claims
the key across instances, starts the upstream stream, publishes every chunk
into a ``StreamFlight`` and, at the end, stores the answer. Identical
requests arriving meanwhile subscribe to the flight. When every subscriber
has gone the pump is cancelled, which closes the upstream stream.

The pump sees the usage-only chunk (the pipeline should always let it
through); each subscriber gets it only if its own request asked for usage.
A request served without calling upstream (a follower, or a leader whose
answer came from another instance) hands that usage to its ``on_usage`` as
it passes, so it is accounted with the original answer's token counts.

A follower whose leader failed before it sent a byte falls back once: it
looks for a new flight (the first fallback leads one, the others join it).
If that fails too, or a byte had already gone out, it raises the leader's
own error (an SSE error event at the edge). So a failure wave costs at most
two upstream calls, however many requests were waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import orjson

from interlock.cache.accumulate import StreamAccumulator
from interlock.cache.coalesce import LeaderFailed, StreamFlight, Subscription, original_error
from interlock.cache.core import CacheCore
from interlock.cache.request import CacheRequest, CacheStatus

__all__ = ["CachedStream", "OnUsage", "StreamCoalescer", "StreamStart"]

# The pipeline's stream start: the first chunk (already awaited) and the rest.
StreamStart = tuple[bytes | None, AsyncIterator[bytes]]
StartStream = Callable[[], Awaitable[StreamStart]]
# Told the original answer's usage when a request is served without calling upstream.
OnUsage = Callable[[Mapping[str, Any]], None]


@dataclass(slots=True)
class CachedStream:
    status: CacheStatus
    chunks: AsyncIterator[bytes]

    async def started(self) -> StreamStart:
        """Wait for the first chunk, as the pipeline's ``StreamSource.start`` does,
        so a failure before any byte can still be an HTTP status."""
        return await anext(self.chunks, None), self.chunks


class StreamCoalescer:
    def __init__(self, core: CacheCore):
        self._core = core
        self._flights: dict[str, StreamFlight] = {}
        self._pumps: set[asyncio.Task[None]] = set()

    async def open(
        self,
        req: CacheRequest,
        start: StartStream,
        fallbacks: int = 1,
        on_usage: OnUsage | None = None,
    ) -> CachedStream:
        """Join the identical stream in flight, or lead a new one.

        ``on_usage`` gets the answer's usage unless this request itself
        calls upstream (then the pipeline accounts it from that stream).
        """
        flight = self._flights.get(req.key)
        if flight is not None and flight.joinable and req.directive.lookup:
            self._core.stats.coalesced += 1
            chunks = self._follow(req, flight.subscribe(), start, fallbacks, on_usage)
            return CachedStream("coalesced", chunks)
        return await self._lead(req, start, share=self._core.settings.coalesce, on_usage=on_usage)

    async def aclose(self) -> None:
        """Cancel every pump (shutdown); their subscribers get the failure."""
        for task in list(self._pumps):
            task.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _lead(
        self, req: CacheRequest, start: StartStream, *, share: bool, on_usage: OnUsage | None
    ) -> CachedStream:
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
        if status == "miss":
            on_usage = None  # this request's own upstream call is accounted as such
        return CachedStream(status, _for_client(subscription, req.include_usage, on_usage))

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
        self,
        req: CacheRequest,
        subscription: Subscription,
        start: StartStream,
        fallbacks: int,
        on_usage: OnUsage | None,
    ) -> AsyncIterator[bytes]:
        sent = False
        failure: LeaderFailed | None = None
        try:
            async for chunk in _for_client(subscription, req.include_usage, on_usage):
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
        retry = await self.open(req, start, fallbacks - 1, on_usage)
        async for chunk in retry.chunks:
            yield chunk

    def _forget(self, key: str, flight: StreamFlight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]


async def _for_client(
    chunks: AsyncIterator[bytes], include_usage: bool, on_usage: OnUsage | None = None
) -> AsyncIterator[bytes]:
    """The flight's chunks as this client asked: the usage-only chunk only if
    wanted. ``on_usage`` is told the usage as it passes, sent on or not."""
    try:
        async for chunk in chunks:
            if include_usage and on_usage is None:
                yield chunk
                continue
            usage, usage_only = _usage_of(chunk)
            if usage is not None and on_usage is not None:
                on_usage(usage)
            if include_usage or not usage_only:
                yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def _usage_of(chunk: bytes) -> tuple[dict[str, Any] | None, bool]:
    """The chunk's usage object, if any, and whether it carries nothing else."""
    # Cheap test first, so only the chunk that carries usage is parsed.
    if b'"usage":{' not in chunk and b'"usage": {' not in chunk:
        return None, False
    try:
        parsed = orjson.loads(chunk)
    except orjson.JSONDecodeError:
        return None, False
    usage = parsed.get("usage")
    if not isinstance(usage, dict):
        return None, False
    return usage, not parsed.get("choices")
