"""Single-flight and the stream broadcaster on their own."""

from __future__ import annotations

import asyncio

import pytest

from interlock.cache.coalesce import LeaderFailed, SingleFlight, StreamFlight
from tests.cache.support import drain, until


async def test_single_flight_shares_one_call() -> None:
    flight: SingleFlight[str] = SingleFlight(follower_timeout_s=5)
    gate, calls = asyncio.Event(), 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "answer"

    tasks = [asyncio.create_task(flight.run("k", call)) for _ in range(5)]
    await until(lambda: "k" in flight)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert sorted(led for _, led in results) == [False] * 4 + [True]
    assert "k" not in flight


async def test_followers_of_a_cancelled_leader_get_leader_failed() -> None:
    flight: SingleFlight[str] = SingleFlight(follower_timeout_s=5)
    leader = asyncio.create_task(flight.run("k", asyncio.Event().wait))  # type: ignore[arg-type]
    await until(lambda: "k" in flight)
    follower = asyncio.create_task(flight.run("k", asyncio.Event().wait))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    leader.cancel()
    with pytest.raises(LeaderFailed):
        await follower


async def test_a_follower_waits_at_most_its_bound() -> None:
    flight: SingleFlight[str] = SingleFlight(follower_timeout_s=0.01)
    never = asyncio.Event()
    leader = asyncio.create_task(flight.run("k", never.wait))  # type: ignore[arg-type]
    await until(lambda: "k" in flight)
    with pytest.raises(LeaderFailed, match="within"):
        await flight.run("k", never.wait)  # type: ignore[arg-type]
    leader.cancel()


async def test_stream_late_joiner_gets_the_prefix_then_live_chunks() -> None:
    flight = StreamFlight(max_buffer_bytes=1000, follower_timeout_s=5)
    early = flight.subscribe(leader=True)
    flight.publish(b"1")
    flight.publish(b"2")
    late = flight.subscribe()
    reader = asyncio.create_task(drain(late))
    flight.publish(b"3")
    flight.finish()
    assert await drain(early) == [b"1", b"2", b"3"]
    assert await reader == [b"1", b"2", b"3"]


async def test_stream_followers_get_leader_failed_and_the_leader_its_own_error() -> None:
    flight = StreamFlight(max_buffer_bytes=1000, follower_timeout_s=5)
    leader, follower = flight.subscribe(leader=True), flight.subscribe()
    flight.publish(b"1")
    flight.fail(ValueError("upstream"))
    assert await anext(follower) == b"1"
    with pytest.raises(LeaderFailed) as caught:
        await anext(follower)
    assert isinstance(caught.value.__cause__, ValueError)
    assert await anext(leader) == b"1"
    with pytest.raises(ValueError):
        await anext(leader)
    assert flight.subscribers == 0


async def test_stream_follower_gives_up_after_its_bound() -> None:
    flight = StreamFlight(max_buffer_bytes=1000, follower_timeout_s=0.01)
    flight.subscribe(leader=True)
    with pytest.raises(LeaderFailed, match="within"):
        await anext(flight.subscribe())


async def test_past_the_buffer_bound_no_joiners_and_read_chunks_are_dropped() -> None:
    flight = StreamFlight(max_buffer_bytes=10, follower_timeout_s=5)
    fast, slow = flight.subscribe(), flight.subscribe()
    for chunk in (b"aaaa", b"bbbb", b"cccc"):
        flight.publish(chunk)
    assert not flight.joinable
    with pytest.raises(LeaderFailed):
        flight.subscribe()
    assert [await anext(fast) for _ in range(3)] == [b"aaaa", b"bbbb", b"cccc"]
    assert await anext(slow) == b"aaaa"
    assert flight._buffered == 8  # only what the slow reader still needs
    flight.finish()
    assert await drain(slow) == [b"bbbb", b"cccc"]
    assert flight._buffered == 0


async def test_last_subscriber_leaving_early_abandons_the_flight() -> None:
    abandoned = []
    flight = StreamFlight(
        max_buffer_bytes=100, follower_timeout_s=5, on_abandoned=lambda: abandoned.append(1)
    )
    a, b = flight.subscribe(leader=True), flight.subscribe()
    await a.aclose()
    assert not abandoned
    await b.aclose()
    assert abandoned == [1] and not flight.joinable


async def test_waiting_subscribers_get_each_chunk_live() -> None:
    flight = StreamFlight(max_buffer_bytes=1000, follower_timeout_s=5)
    subscription = flight.subscribe()
    reader = asyncio.create_task(anext(subscription))
    await asyncio.sleep(0)
    flight.publish(b"1")  # no finish: the reader must wake for the chunk itself
    await until(reader.done)
    assert reader.result() == b"1"
