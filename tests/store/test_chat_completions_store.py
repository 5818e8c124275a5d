"""Stored chat completions on SQLite and PostgreSQL: scoped to the key,
ids unique per key (an upstream's repeated id keeps the latest), pages in
both orders, filters by model and metadata (a rare match scans a bounded
number of rows), metadata updates, deletes, and retention."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.store import ChatCompletionStore, StoredChatCompletion
from interlock.store.chat_completions import MAX_SCANNED
from tests.support.clock import FakeClock


def _record(n: int, *, key: str = "k", model: str = "m", **metadata: str) -> StoredChatCompletion:
    completion: dict[str, Any] = {
        "id": f"chatcmpl-{n:04d}",
        "object": "chat.completion",
        "created": 1_000 + n,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"a{n}"}}],
    }
    return StoredChatCompletion(
        id=completion["id"],
        key_name=key,
        created_at=1_000 + n,
        expires_at=10_000,
        model=model,
        metadata=metadata,
        messages=[{"role": "user", "content": f"q{n}"}],
        completion=completion,
    )


def _ids(found: list[StoredChatCompletion]) -> list[str]:
    return [record.id for record in found]


async def test_a_completion_is_the_keys_alone_and_reads_back(engine: AsyncEngine) -> None:
    store = ChatCompletionStore(engine, clock=FakeClock(2_000))
    await store.save(_record(1, run="a"))
    found = await store.get("k", "chatcmpl-0001")
    assert found is not None and found.messages == [{"role": "user", "content": "q1"}]
    assert found.to_json()["metadata"] == {"run": "a"}
    assert found.to_json()["choices"][0]["message"]["content"] == "a1"
    assert await store.get("other", "chatcmpl-0001") is None
    assert await store.update_metadata("other", "chatcmpl-0001", {}) is None
    assert not await store.delete("other", "chatcmpl-0001")
    updated = await store.update_metadata("k", "chatcmpl-0001", {"run": "b"})
    assert updated is not None and updated.metadata == {"run": "b"}
    assert await store.delete("k", "chatcmpl-0001")
    assert await store.get("k", "chatcmpl-0001") is None


async def test_an_id_repeated_by_the_upstream_keeps_the_latest(engine: AsyncEngine) -> None:
    store = ChatCompletionStore(engine, clock=FakeClock(2_000))
    await store.save(_record(1))
    again = _record(1, run="second")
    await store.save(again)
    await store.save(_record(1, key="other"))  # another key's is its own
    found = await store.get("k", "chatcmpl-0001")
    assert found is not None and found.metadata == {"run": "second"}
    assert (await store.get("other", "chatcmpl-0001")) is not None


async def test_pages_in_both_orders_and_filters(engine: AsyncEngine) -> None:
    store = ChatCompletionStore(engine, clock=FakeClock(2_000))
    for n in range(6):
        await store.save(_record(n, model="big" if n % 2 else "small", run=str(n % 3)))
    await store.save(_record(9, key="other"))
    page, more = await store.listing("k", limit=4)
    assert _ids(page) == [f"chatcmpl-000{n}" for n in range(4)] and more
    page, more = await store.listing("k", limit=4, after="chatcmpl-0003")
    assert _ids(page) == ["chatcmpl-0004", "chatcmpl-0005"] and not more
    page, more = await store.listing("k", limit=2, newest_first=True, after="chatcmpl-0004")
    assert _ids(page) == ["chatcmpl-0003", "chatcmpl-0002"] and more
    page, _ = await store.listing("k", limit=9, model="big")
    assert _ids(page) == ["chatcmpl-0001", "chatcmpl-0003", "chatcmpl-0005"]
    page, more = await store.listing("k", limit=1, metadata={"run": "0"})
    assert _ids(page) == ["chatcmpl-0000"] and more
    page, more = await store.listing("k", limit=9, metadata={"run": "0"}, model="big")
    assert _ids(page) == ["chatcmpl-0003"] and not more


async def test_a_rare_metadata_match_reads_a_bounded_number_of_rows(engine: AsyncEngine) -> None:
    store = ChatCompletionStore(engine, clock=FakeClock(2_000))
    for n in range(MAX_SCANNED + 5):
        await store.save(_record(n, **({"rare": "yes"} if n == MAX_SCANNED + 2 else {})))
    page, more = await store.listing("k", limit=5, metadata={"rare": "yes"})
    assert page == [] and more  # the rows past the bound are left to the next page
    last_read = f"chatcmpl-{MAX_SCANNED - 1:04d}"
    page, more = await store.listing("k", limit=5, metadata={"rare": "yes"}, after=last_read)
    assert _ids(page) == [f"chatcmpl-{MAX_SCANNED + 2:04d}"] and not more


async def test_expired_completions_are_not_read_and_are_swept(engine: AsyncEngine) -> None:
    clock = FakeClock(2_000)
    store = ChatCompletionStore(engine, clock=clock, sweep_batch=10)
    await store.save(_record(1))
    clock.advance(9_000)  # past expires_at (10,000)
    assert await store.get("k", "chatcmpl-0001") is None
    assert await store.listing("k", limit=5) == ([], False)
    await store.save(_with_expiry(_record(2), 20_000))  # its write sweeps the expired one
    clock.advance(-9_000)  # were the expired row still there, it would show again
    assert await store.get("k", "chatcmpl-0001") is None


def _with_expiry(record: StoredChatCompletion, expires_at: int) -> StoredChatCompletion:
    fields = {name: getattr(record, name) for name in StoredChatCompletion.__slots__}
    return StoredChatCompletion(**{**fields, "expires_at": expires_at})
