"""The streaming path: where a streamed answer comes from, and when the
response may start.

``StreamSource`` runs the cache, route and attempt stages for a stream: a
cache hit is replayed, an identical stream in flight is joined, otherwise
the router's first deployment whose stream starts serves it (continued on
another deployment mid-stream where the model group allows), and the
guardrails filter whatever comes out.

``ChatStream`` is what the edge writes out, and the one place that decides
when the response starts (status and headers sent):

- as soon as the first chunk arrives, if it comes within the group's
  ``heartbeat_after_s``; a failure before then keeps its HTTP status;
- after ``heartbeat_after_s`` without one, with heartbeats every
  ``heartbeat_interval_s`` until it comes; a failure then is an error event;
- never before the cache's verdict, which goes out with the headers
  (``x-interlock-cache``). Only a wait for another instance's identical
  request (bounded by ``cache.remote_wait_s``) makes that later than
  ``heartbeat_after_s``, and no chunk can come before the verdict anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from interlock.chat_markers import prompt_token_ids
from interlock.pipeline.cache import CacheStage
from interlock.pipeline.call import ModelCall
from interlock.pipeline.failover import continue_on_failure
from interlock.pipeline.guard import GuardrailsStage
from interlock.pipeline.request import JSONDict
from interlock.pipeline.route import RouteStage, StreamStart

__all__ = ["ChatStream", "StreamSource"]


class StreamSource:
    def __init__(self, call: ModelCall, cache: CacheStage, route: RouteStage):
        self._call = call
        self._cache = cache
        self._route = route
        # Always ask for usage, so every stream is accounted; the usage chunk
        # is dropped again unless passed on (``_pass_usage``).
        options = {**(call.body.get("stream_options") or {}), "include_usage": True}
        self._upstream_body = {**call.body, "stream_options": options}
        # Whether the usage chunk goes on: the client's wish, or the cache's
        # need to store the whole answer (it drops the chunk again for a
        # client that did not ask for it).
        self._pass_usage = call.include_usage
        # Set once the cache has given its verdict or stayed out.
        self.settled = asyncio.Event()

    async def start(self) -> StreamStart:
        """Open the stream and wait for its first chunk."""
        cached = await self._cache.prepare(self._call)
        if cached is None:
            self.settled.set()
            return await self._guarded()
        self._pass_usage = True  # the cache stores the whole answer
        stream = await self._cache.stream(self._call, cached, self._guarded)
        self.settled.set()
        return await stream.started()

    async def _guarded(self) -> StreamStart:
        first, chunks = await self._routed()
        guard = self._call.guard
        if guard is None:
            return first, chunks
        rest = GuardrailsStage.filter_stream(guard, _prepend(first, chunks))
        return await anext(rest, None), rest

    async def _routed(self) -> StreamStart:
        call = self._call
        if call.web_search is None:
            return await self._round(self._upstream_body)
        # Rounds, the gateway searching between them (``web_search.py``).
        first, chunks = await self._round(self._upstream_body)
        return None, call.web_search.stream(
            self._upstream_body, first, chunks, self._round, call.record
        )

    async def _round(self, body: JSONDict) -> StreamStart:
        """One upstream stream for ``body``, continued on another deployment
        mid-stream where the model group allows."""
        call = self._call
        first, chunks = await self._route.stream(call, body, self._pass_usage)
        if (
            not call.group.settings.mid_stream_failover
            or call.options.forced is not None
            or prompt_token_ids(body) is not None  # ids cannot be followed by the text so far
        ):
            return first, chunks
        resumed = continue_on_failure(first, chunks, body, call.record, self._resume)
        return None, resumed

    async def _resume(self, continuation: JSONDict, exclude: frozenset[str]) -> StreamStart:
        return await self._route.stream(self._call, continuation, self._pass_usage, exclude)


class ChatStream:
    """A streamed chat answer the edge writes out: ``opening()`` (heartbeat
    ticks while the first chunk is awaited), then ``first`` and ``chunks``.
    ``aclose`` ends it however far it got and gives back what admission took.

    Once the first chunk is in, only the chunks are kept: a stream can be
    open for minutes, thousands at a time, so what opened it is let go."""

    __slots__ = (
        "_chunks",
        "_first",
        "_heartbeat_after_s",
        "_release",
        "_source",
        "_start",
        "heartbeat_interval_s",
    )

    def __init__(
        self,
        source: StreamSource,
        *,
        heartbeat_after_s: float,
        heartbeat_interval_s: float,
        release: Callable[[], None],
    ):
        self._source: StreamSource | None = source
        self._heartbeat_after_s = heartbeat_after_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self._release = release
        self._start: asyncio.Future[StreamStart] | None = None
        self._first: bytes | None = None
        self._chunks: AsyncIterator[bytes] | None = None

    async def open(self) -> None:
        """Return once the response may start (see the module docstring);
        a failure before then raises here."""
        source, self._source = self._source, None
        assert source is not None, "open() once"
        start = self._start = asyncio.ensure_future(source.start())
        try:
            await asyncio.wait({start}, timeout=self._heartbeat_after_s)
            if not start.done() and not source.settled.is_set():
                settled = asyncio.ensure_future(source.settled.wait())
                try:
                    await asyncio.wait({start, settled}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    settled.cancel()
        except BaseException:
            start.cancel()
            raise
        if start.done():
            self._take(start)

    async def opening(self) -> AsyncIterator[None]:
        """One tick per ``heartbeat_interval_s`` while the first chunk is still
        awaited (usually none); raises the start's failure, if it fails."""
        while self._chunks is None:
            start = self._start
            assert start is not None, "open() first"
            done, _ = await asyncio.wait({start}, timeout=self.heartbeat_interval_s)
            if done:
                self._take(start)
            else:
                yield

    def _take(self, start: asyncio.Future[StreamStart]) -> None:
        """The first chunk and the rest from a finished start (or its failure)."""
        self._start = None
        self._first, self._chunks = start.result()

    @property
    def first(self) -> bytes | None:
        return self._first

    @property
    def chunks(self) -> AsyncIterator[bytes]:
        assert self._chunks is not None, "read after opening()"
        return self._chunks

    async def aclose(self) -> None:
        try:
            start = self._start
            if start is not None and not start.done():
                start.cancel()
                await asyncio.gather(start, return_exceptions=True)
            chunks = self._chunks
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            self._release()


async def _prepend(first: bytes | None, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first is not None:
        yield first
    async for chunk in rest:
        yield chunk
