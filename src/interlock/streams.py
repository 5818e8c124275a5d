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

__all__ = ["StreamWatch", "observe_stream"]


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


async def observe_stream(chunks: AsyncIterator[bytes], watch: StreamWatch) -> AsyncIterator[bytes]:
    record, timeouts = watch.record, watch.deployment.timeouts
    began = last = time.perf_counter()
    limit, kind = timeouts.ttft_s, None
    token_gap = watch.token_gap
    iterator = chunks.__aiter__()
    try:
        while True:
            try:
                async with asyncio.timeout(limit):
                    chunk = await anext(iterator)
            except StopAsyncIteration:
                return
            except TimeoutError:
                what = "first token" if record.ttft_s is None else "next chunk"
                raise UpstreamTimeout(
                    f"upstream sent no {what} within {limit:g} s",
                    deployment=watch.deployment.id,
                ) from None
            now = time.perf_counter()
            if record.ttft_s is None:
                record.ttft_s = now - record.started
                record.stages["upstream"] = record.stages.get("upstream", 0.0) + now - began
                limit = timeouts.idle_s
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
    try:
        parsed = orjson.loads(chunk)
    except orjson.JSONDecodeError:
        return False
    record = watch.record
    choices = parsed.get("choices") or []
    for choice in choices:
        if choice.get("finish_reason"):
            record.finish_reason = choice["finish_reason"]
    record.response_model = parsed.get("model", record.response_model)
    usage = parsed.get("usage")
    if isinstance(usage, dict):
        watch.on_usage(usage)
        return not choices
    return False
