"""One upstream stream attempt, watched: timeouts, telemetry, accounting.

``observe_stream`` wraps an adapter's chunk iterator. It enforces the
deployment's time-to-first-token and idle-gap limits (a stalled stream ends
with ``UpstreamTimeout``, which the edge turns into a well-formed SSE error
event), records time to first token and chunk gaps, reads the finish reason
and usage from the last chunks, and reports the attempt's outcome to the
deployment's health and metrics when it ends, however it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from interlock.errors import ProviderError, UpstreamTimeout
from interlock.routing.router import Deployment, error_kind
from interlock.telemetry.record import RequestRecord

__all__ = ["StreamWatch", "note_summary", "observe_stream"]


@dataclass(slots=True)
class StreamWatch:
    """What the pipeline wants done with the watched stream."""

    record: RequestRecord
    deployment: Deployment
    client_wants_usage: bool
    # Called once at the end: (elapsed seconds, error kind or None).
    on_end: Callable[[float, str | None], None]
    # Called with each usage object seen.
    on_usage: Callable[[dict[str, object]], None]
    # The chunk-gap histogram child for this stream (has ``observe``).
    token_gap: Any


class _ChunkDeadline:
    """How long the stream may wait for its next chunk, with one timer per
    stream re-armed lazily.

    A fresh ``asyncio.timeout`` per chunk (a Timeout, a timer handle and a
    task lookup each time) was about a fifth of the gateway's own work per
    streamed chunk. Here a wait only notes when it began; when the timer
    fires it cancels the waiting task if that wait has run out, and otherwise
    re-arms for when it would. A cancellation it caused is told apart from
    any other as ``asyncio.timeout`` does it, by the task's cancel count.
    """

    __slots__ = ("_cancelling", "_fired", "_handle", "_loop", "_since", "_task", "limit")

    def __init__(self, limit: float):
        self._loop = asyncio.get_running_loop()
        self.limit = limit
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[Any] | None = None
        self._since: float | None = None
        self._cancelling = 0
        self._fired = False

    def begin(self) -> None:
        """A wait for the next chunk starts (in whichever task reads the stream)."""
        task = self._task = asyncio.current_task()
        assert task is not None
        self._cancelling = task.cancelling()
        self._since = self._loop.time()
        if self._handle is None:
            self._handle = self._loop.call_at(self._since + self.limit, self._check)

    def end(self) -> None:
        self._since = None

    def change_limit(self, limit: float) -> None:
        self.limit = limit
        self.close()  # a timer armed for the old limit could fire too late

    def ours(self) -> bool:
        """After a ``CancelledError`` in a wait: whether this deadline caused it
        (and only it), in which case the cancellation is consumed."""
        return self._fired and self._task is not None and self._task.uncancel() <= self._cancelling

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        since = self._since
        if since is None or self._task is None:
            return  # not waiting now: the next wait arms the timer again
        due = since + self.limit
        if self._loop.time() >= due:
            self._fired = True
            self._task.cancel()
        else:
            self._handle = self._loop.call_at(due, self._check)


async def observe_stream(chunks: AsyncIterator[bytes], watch: StreamWatch) -> AsyncIterator[bytes]:
    record, timeouts = watch.record, watch.deployment.timeouts
    began = last = time.perf_counter()
    kind = None
    deadline = _ChunkDeadline(timeouts.ttft_s)
    token_gap = watch.token_gap
    iterator = chunks.__aiter__()
    try:
        while True:
            deadline.begin()
            try:
                chunk = await anext(iterator)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                if not deadline.ours():
                    raise
                what = "first token" if record.ttft_s is None else "next chunk"
                raise UpstreamTimeout(
                    f"upstream sent no {what} within {deadline.limit:g} s",
                    deployment=watch.deployment.id,
                ) from None
            finally:
                deadline.end()
            now = time.perf_counter()
            if record.ttft_s is None:
                record.ttft_s = now - record.started
                record.stages["upstream"] = record.stages.get("upstream", 0.0) + now - began
                deadline.change_limit(timeouts.idle_s)
            else:
                token_gap.observe(now - last)
            last = now
            record.chunks += 1
            if (
                _may_carry_summary(chunk)
                and _summarize(chunk, watch)
                and not watch.client_wants_usage
            ):
                continue  # usage-only chunk asked for our accounting, not the client's
            yield chunk
    except ProviderError as exc:
        kind = record.error_type = error_kind(exc)
        if exc.injected:
            record.injected.append(f"{watch.deployment.id}:{kind}")
        raise
    finally:
        deadline.close()
        end = time.perf_counter()
        if record.ttft_s is not None:
            record.stages["streaming"] = end - began - record.stages.get("upstream", 0.0)
        watch.on_end(end - began, kind)
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def _may_carry_summary(chunk: bytes) -> bool:
    """Cheap pre-check so only the last chunk or two are parsed."""
    return (
        b'"usage":{' in chunk
        or b'"usage": {' in chunk
        or b'"finish_reason":"' in chunk
        or b'"finish_reason": "' in chunk
    )


def _summarize(chunk: bytes, watch: StreamWatch) -> bool:
    """Read finish reason and usage; True for a usage-only chunk."""
    parsed = _note_summary(chunk, watch.record)
    if parsed is None:
        return False
    usage = parsed.get("usage")
    if isinstance(usage, dict):
        watch.on_usage(usage)
        return not parsed.get("choices")
    return False


def _note_summary(chunk: bytes, record: RequestRecord) -> dict[str, Any] | None:
    """Put the chunk's finish reason and model on the record; the parsed chunk."""
    try:
        parsed = orjson.loads(chunk)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(parsed, dict):
        return None
    for choice in parsed.get("choices") or ():
        if isinstance(choice, dict) and choice.get("finish_reason"):
            record.finish_reason = choice["finish_reason"]
    record.response_model = parsed.get("model", record.response_model)
    return parsed


async def note_summary(chunks: AsyncIterator[bytes], record: RequestRecord) -> AsyncIterator[bytes]:
    """``chunks`` unchanged, their finish reason and model noted on ``record``
    on the way: for a stream served without an upstream call of its own (a
    cache hit, a coalesced follower), which ``observe_stream`` never sees."""
    try:
        async for chunk in chunks:
            if _may_carry_summary(chunk):
                _note_summary(chunk, record)
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
