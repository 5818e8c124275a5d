"""observe_stream's time limits: first token, then the gap to each next chunk.

Real time with short limits (tenths of a second): the deadline lives on the
event loop's clock, which is what it must get right.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from interlock.config import TimeoutConfig
from interlock.errors import UpstreamTimeout
from interlock.pipeline.watch import StreamWatch, note_summary, observe_stream
from interlock.telemetry.record import RequestRecord


def _watch(ttft_s: float, idle_s: float) -> tuple[StreamWatch, list[Any]]:
    ended: list[Any] = []
    deployment = SimpleNamespace(id="d", timeouts=TimeoutConfig(ttft_s=ttft_s, idle_s=idle_s))
    watch = StreamWatch(
        record=RequestRecord("req_test", "POST", "/v1/chat/completions"),
        deployment=deployment,  # type: ignore[arg-type]
        client_wants_usage=False,
        on_end=lambda elapsed, kind: ended.append(kind),
        on_usage=lambda usage: None,
        token_gap=SimpleNamespace(observe=lambda gap: None),
    )
    return watch, ended


async def _chunks(*delays: float) -> AsyncIterator[bytes]:
    for i, delay in enumerate(delays):
        await asyncio.sleep(delay)
        yield b'{"n": %d}' % i


async def test_no_first_token_within_ttft_s() -> None:
    watch, ended = _watch(ttft_s=0.1, idle_s=5)
    began = asyncio.get_running_loop().time()
    with pytest.raises(UpstreamTimeout, match=r"no first token within 0\.1 s"):
        [c async for c in observe_stream(_chunks(5), watch)]
    assert asyncio.get_running_loop().time() - began < 1
    assert ended == ["timeout"]


async def test_the_gap_limit_applies_from_the_first_chunk_on() -> None:
    """ttft_s is long and idle_s short: after the first chunk a stall must end
    the stream within idle_s, not when the first token's limit would have."""
    watch, _ = _watch(ttft_s=10, idle_s=0.1)
    received = []
    began = asyncio.get_running_loop().time()
    with pytest.raises(UpstreamTimeout, match=r"no next chunk within 0\.1 s"):
        async for chunk in observe_stream(_chunks(0, 0.02, 0.02, 5), watch):
            received.append(chunk)
    assert len(received) == 3
    assert asyncio.get_running_loop().time() - began < 1


async def test_slow_consumer_time_is_not_the_upstreams() -> None:
    """Time the reader spends elsewhere between chunks does not count as a gap."""
    watch, _ = _watch(ttft_s=1, idle_s=0.1)
    received = []
    async for chunk in observe_stream(_chunks(0, 0.05, 0.05), watch):
        received.append(chunk)
        await asyncio.sleep(0.15)  # longer than idle_s, but not waiting on upstream
    assert len(received) == 3


async def test_chunks_read_from_another_task_and_outside_cancels_pass_through() -> None:
    """The first chunk is read by one task and the rest by another (as the
    edge does); a cancel from outside stays a cancel, not a timeout."""
    watch, ended = _watch(ttft_s=1, idle_s=0.2)
    stream = observe_stream(_chunks(0, 0.05, 5), watch)
    first = await asyncio.ensure_future(anext(stream))
    assert first == b'{"n": 0}'

    async def rest() -> list[bytes]:
        return [c async for c in stream]

    reader = asyncio.ensure_future(rest())
    await asyncio.sleep(0.1)  # the second chunk arrived; the third is 5 s away
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert ended == [None]


async def test_a_stream_served_without_upstream_still_notes_finish_reason_and_model() -> None:
    record = RequestRecord("req_test", "POST", "/v1/chat/completions")
    closed: list[bool] = []
    chunks = [
        b'{"model":"m-2024","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}',
        b'{"model":"m-2024","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}',
        b'{"model":"m-2024","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}',
        b"not json",
    ]

    async def replay() -> AsyncIterator[bytes]:
        try:
            for chunk in chunks:
                yield chunk
        finally:
            closed.append(True)

    passed = [chunk async for chunk in note_summary(replay(), record)]
    assert passed == chunks and closed == [True]
    assert (record.finish_reason, record.response_model) == ("length", "m-2024")
