"""Streams through the cache: replay, one upstream stream shared by many, failures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from openai.types.chat import ChatCompletionChunk

from interlock.cache import CachedStream, LeaderFailed, ResponseCache
from interlock.errors import UpstreamTimeout
from interlock.state import MemoryStateStore
from tests.cache.support import (
    USAGE,
    FakeStream,
    RecordingSleep,
    chat_body,
    drain,
    make_cache,
    parse,
    prepare,
    stream_chunks,
    text_of,
    until,
)

WORDS = [f"word{i} " for i in range(30)]
STREAM_BODY = chat_body(stream=True, stream_options={"include_usage": True})


def memory_cache(**settings: Any) -> ResponseCache:
    return make_cache(MemoryStateStore(), l2_enabled=False, **settings)


async def consume(
    cache: ResponseCache, upstream: FakeStream, body: dict[str, object]
) -> list[bytes]:
    stream = await cache.stream(await prepare(cache, body), upstream)
    return await drain(stream.chunks)


async def test_a_finished_stream_fills_the_cache_for_both_forms() -> None:
    cache = memory_cache()
    upstream = FakeStream(stream_chunks(WORDS))
    upstream.gate.set()
    first = await cache.stream(await prepare(cache, STREAM_BODY), upstream)
    assert first.status == "miss"
    assert await drain(first.chunks) == upstream.chunks

    replay = await cache.stream(await prepare(cache, STREAM_BODY), upstream)
    assert replay.status == "hit"
    chunks = await drain(replay.chunks)
    for chunk in chunks:
        ChatCompletionChunk.model_validate_json(chunk)
    assert text_of(chunks) == "".join(WORDS)
    assert parse(chunks)[-1]["usage"] == USAGE

    unary, status = await cache.complete(await prepare(cache, chat_body()), upstream)  # type: ignore[arg-type]
    assert status == "hit"
    assert unary["choices"][0]["message"]["content"] == "".join(WORDS)
    assert unary["usage"] == USAGE
    assert upstream.calls == 1


async def test_usage_chunk_only_for_clients_that_asked() -> None:
    cache = memory_cache()
    upstream = FakeStream(stream_chunks(WORDS))
    upstream.gate.set()
    live = await consume(cache, upstream, chat_body(stream=True))
    assert live == upstream.chunks[:-1]
    replayed = parse(await consume(cache, upstream, chat_body(stream=True)))
    assert all(p["choices"] for p in replayed)
    assert upstream.calls == 1


async def test_requests_served_without_upstream_report_the_original_usage() -> None:
    cache = memory_cache()
    upstream = FakeStream(stream_chunks(WORDS), hold_after=2)
    reported: dict[str, list[Any]] = {"leader": [], "follower": [], "hit": []}

    async def open_stream(body: dict[str, Any], who: str) -> CachedStream:
        req = await prepare(cache, body)
        return await cache.stream(req, upstream, on_usage=reported[who].append)

    leader = await open_stream(STREAM_BODY, "leader")
    follower = await open_stream(chat_body(stream=True), "follower")  # no usage chunk wanted
    assert (leader.status, follower.status) == ("miss", "coalesced")
    upstream.gate.set()
    await drain(leader.chunks)
    assert all(p["choices"] for p in parse(await drain(follower.chunks)))
    hit = await open_stream(chat_body(stream=True), "hit")
    assert hit.status == "hit"
    # The leader is accounted from its own upstream stream, not by the cache.
    assert reported == {"leader": [], "follower": [USAGE], "hit": [USAGE]}
    assert all(p["choices"] for p in parse(await drain(hit.chunks)))


async def test_a_follower_that_had_to_call_upstream_reports_no_usage() -> None:
    cache = memory_cache()
    upstream = FakeStream(stream_chunks(WORDS))
    upstream.fail_first, upstream.fail_with = 1, UpstreamTimeout("no first token")
    reported: list[Any] = []
    leader = asyncio.create_task(consume(cache, upstream, STREAM_BODY))
    await until(lambda: upstream.calls == 1)
    req = await prepare(cache, STREAM_BODY)
    follower = await cache.stream(req, upstream, on_usage=reported.append)
    assert follower.status == "coalesced"
    upstream.gate.set()
    with pytest.raises(UpstreamTimeout):
        await leader
    assert await drain(follower.chunks) == upstream.chunks  # it led the fallback
    assert reported == [] and upstream.calls == 2


async def test_fifty_identical_streams_share_one_upstream_stream() -> None:
    cache = memory_cache()
    upstream = FakeStream(stream_chunks(WORDS), hold_after=5)
    early = [asyncio.create_task(consume(cache, upstream, STREAM_BODY)) for _ in range(25)]
    await upstream.reached_hold.wait()  # 5 chunks out; the rest held back
    late = [asyncio.create_task(consume(cache, upstream, STREAM_BODY)) for _ in range(25)]
    await until(lambda: cache.stats.coalesced == 49)
    upstream.gate.set()
    async with asyncio.timeout(2):
        results = await asyncio.gather(*early, *late)
    assert upstream.calls == 1
    assert all(chunks == upstream.chunks for chunks in results)  # late joiners included
    assert cache.stats.misses == 1 and cache.stats.coalesced == 49
    assert cache.stats.saved_completion_tokens == 49 * 7


async def test_the_leaders_client_leaving_does_not_cut_off_followers() -> None:
    cache = memory_cache()
    upstream = FakeStream(stream_chunks(WORDS), hold_after=2)
    leader = await cache.stream(await prepare(cache, STREAM_BODY), upstream)
    follower = asyncio.create_task(consume(cache, upstream, STREAM_BODY))
    await until(lambda: cache.stats.coalesced == 1)
    assert await anext(leader.chunks) == upstream.chunks[0]
    await leader.chunks.aclose()  # type: ignore[attr-defined]
    upstream.gate.set()
    assert await follower == upstream.chunks


async def test_upstream_is_cancelled_when_every_subscriber_leaves() -> None:
    cache = memory_cache()
    upstream = FakeStream(stream_chunks(WORDS), hold_after=2)
    leader = await cache.stream(await prepare(cache, STREAM_BODY), upstream)
    await anext(leader.chunks)
    await leader.chunks.aclose()  # type: ignore[attr-defined]
    await until(lambda: not cache._streams._pumps)
    assert await cache.lookup(await prepare(cache, STREAM_BODY)) is None
    # The next identical request leads a new stream rather than joining a dead one.
    upstream.gate.set()
    assert await consume(cache, upstream, STREAM_BODY) == upstream.chunks
    assert upstream.calls == 2


async def test_leader_failure_reaches_followers_who_fall_back_once() -> None:
    cache = memory_cache()
    upstream = FakeStream(stream_chunks(WORDS))
    upstream.fail_first, upstream.fail_with = 1, UpstreamTimeout("no first token")
    leader = asyncio.create_task(consume(cache, upstream, STREAM_BODY))
    followers = [asyncio.create_task(consume(cache, upstream, STREAM_BODY)) for _ in range(10)]
    await until(lambda: cache.stats.coalesced == 10)
    upstream.gate.set()
    with pytest.raises(UpstreamTimeout):
        await leader  # the leader's client sees the upstream's own error
    async with asyncio.timeout(2):
        results = await asyncio.gather(*followers)
    assert all(chunks == upstream.chunks for chunks in results)
    assert upstream.calls == 2  # one fallback led, the other nine joined it
    assert cache.stats.fallbacks == 10


async def test_a_second_failure_ends_every_follower_with_the_upstream_error() -> None:
    cache = memory_cache()
    upstream = FakeStream(stream_chunks(WORDS))
    upstream.fail_first, upstream.fail_with = 2, UpstreamTimeout("no first token")
    tasks = [asyncio.create_task(consume(cache, upstream, STREAM_BODY)) for _ in range(10)]
    await until(lambda: cache.stats.coalesced == 9)
    upstream.gate.set()
    async with asyncio.timeout(2):
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(o, UpstreamTimeout) for o in outcomes)
    assert upstream.calls == 2  # the failed leader and one fallback, not one per request


async def test_failure_after_chunks_were_sent_is_the_upstream_error() -> None:
    cache = memory_cache()
    upstream = FakeStream(stream_chunks(WORDS), hold_after=3)
    upstream.fail_first, upstream.fail_with = 1, UpstreamTimeout("stalled")
    leader = await cache.stream(await prepare(cache, STREAM_BODY), upstream)
    follower = await cache.stream(await prepare(cache, STREAM_BODY), upstream)
    assert follower.status == "coalesced"
    received = [await anext(follower.chunks) for _ in range(3)]
    upstream.gate.set()
    with pytest.raises(UpstreamTimeout):  # an SSE error event at the edge, not a restart
        await anext(follower.chunks)
    with pytest.raises(UpstreamTimeout):
        await drain(leader.chunks)
    assert received == upstream.chunks[:3] and upstream.calls == 1
    assert await cache.lookup(await prepare(cache, STREAM_BODY)) is None  # nothing partial stored


async def test_started_awaits_the_first_chunk_like_the_pipeline() -> None:
    cache = memory_cache()
    upstream = FakeStream(stream_chunks(WORDS))
    upstream.fail_first, upstream.fail_with = 1, UpstreamTimeout("down")
    upstream.gate.set()
    stream = await cache.stream(await prepare(cache, STREAM_BODY), upstream)
    with pytest.raises(UpstreamTimeout):  # before any byte: still an HTTP status
        await stream.started()
    stream = await cache.stream(await prepare(cache, STREAM_BODY), upstream)
    first, rest = await stream.started()
    assert first == upstream.chunks[0]
    assert [first, *await drain(rest)] == upstream.chunks


async def test_a_flight_past_its_buffer_takes_no_late_joiners() -> None:
    cache = memory_cache(stream_buffer_bytes=600)
    upstream = FakeStream(stream_chunks(WORDS), hold_after=6)  # > 600 bytes of chunks
    leader = asyncio.create_task(consume(cache, upstream, STREAM_BODY))
    await upstream.reached_hold.wait()
    late = await cache.stream(await prepare(cache, STREAM_BODY), upstream)
    assert late.status == "miss"  # led its own stream
    upstream.gate.set()
    assert await leader == upstream.chunks
    assert await drain(late.chunks) == upstream.chunks
    assert upstream.calls == 2


async def test_second_instance_replays_the_first_instances_stream() -> None:
    store = MemoryStateStore()
    upstream = FakeStream(stream_chunks(WORDS), hold_after=1)
    a = make_cache(store)
    a_stream = await a.stream(await prepare(a, STREAM_BODY), upstream)

    async def while_b_waits(polls: int) -> None:
        if polls == 1:
            upstream.gate.set()
            await drain(a_stream.chunks)

    b = make_cache(store, sleep=RecordingSleep(while_b_waits))
    reported: list[Any] = []
    b_req = await prepare(b, STREAM_BODY)
    b_stream = await b.stream(b_req, upstream, on_usage=reported.append)
    assert b_stream.status == "coalesced"
    chunks = await drain(b_stream.chunks)
    assert text_of(chunks) == "".join(WORDS) and parse(chunks)[-1]["usage"] == USAGE
    assert upstream.calls == 1
    assert reported == [USAGE]


async def test_aclose_cancels_pumps_and_fails_their_subscribers() -> None:
    cache = memory_cache()
    upstream = FakeStream(stream_chunks(WORDS), hold_after=1)
    stream = await cache.stream(await prepare(cache, STREAM_BODY), upstream)
    await upstream.reached_hold.wait()
    await cache.aclose()
    with pytest.raises(LeaderFailed):  # a 503 / SSE error event, not a CancelledError
        await drain(stream.chunks)
