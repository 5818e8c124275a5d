"""The batch store's listing both ways, its delete and its per-outcome
counts, on SQLite and PostgreSQL (what Anthropic's Message Batches API
reads: ``before_id`` pages, deleting an ended batch, counts per outcome)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.batch.records import BatchRow, BatchStatus, ItemStatus, new_batch_id
from interlock.batch.store import BatchStore, ItemResult, NewItem
from tests.store.conftest import Backend, backend, engine  # noqa: F401 (fixtures)


def _batch(created_at: int, key_name: str = "k", kind: str = "message_batch") -> BatchRow:
    return BatchRow(
        id=new_batch_id(kind),
        key_name=key_name,
        kind=kind,
        endpoint="/v1/messages",
        completion_window="24h",
        status=BatchStatus.IN_PROGRESS,
        total=4,
        created_at=created_at,
        expires_at=created_at + 86_400,
        touched_at=float(created_at),
    )


def _items(count: int) -> list[NewItem]:
    return [NewItem(f"r{n}", n, 0, "{}") for n in range(count)]


async def test_pages_go_older_after_an_id_and_newer_before_one(engine: AsyncEngine) -> None:  # noqa: F811
    store = BatchStore(engine)
    made = [_batch(1_000 + n) for n in range(5)]
    for batch in made:
        await store.create(batch)
    await store.create(_batch(2_000, key_name="other"))
    await store.create(_batch(2_001, kind="batch"))
    newest_first = [b.id for b in reversed(made)]

    async def ids(**where: str) -> tuple[list[str], bool]:
        found, more = await store.listing("k", limit=2, kind="message_batch", **where)
        return [b.id for b in found], more

    assert await ids() == (newest_first[:2], True)
    assert await ids(after=newest_first[1]) == (newest_first[2:4], True)
    assert await ids(after=newest_first[3]) == (newest_first[4:], False)
    assert await ids(before=newest_first[4]) == (newest_first[2:4], True)
    assert await ids(before=newest_first[2]) == (newest_first[:2], False)


async def test_delete_takes_the_batch_and_its_items_of_that_key_only(
    engine: AsyncEngine,  # noqa: F811
) -> None:
    store = BatchStore(engine)
    kept, gone = _batch(1_000), _batch(1_001)
    await store.create(kept, _items(2))
    await store.create(gone, _items(3))
    assert not await store.delete(gone.id, "another key")
    assert await store.delete(gone.id, "k")
    assert await store.get(gone.id) is None
    assert [i async for i in store.items(gone.id)] == []
    assert not await store.delete(gone.id, "k")
    assert len([i async for i in store.items(kept.id)]) == 2


async def test_counts_keep_each_outcome_apart(engine: AsyncEngine) -> None:  # noqa: F811
    store = BatchStore(engine)
    batch = _batch(1_000)
    await store.create(batch, _items(4))
    await store.write_results(
        batch.id,
        [
            ItemResult("r0", ItemStatus.SUCCEEDED, 200, "{}", "req-0", 1),
            ItemResult("r1", ItemStatus.FAILED, 400, "{}", "req-1", 1),
        ],
        "worker-1",
    )
    await store.close_pending(batch.id, ItemStatus.CANCELLED)
    counts = (await store.get(batch.id, "k")).counts  # type: ignore[union-attr]
    assert (counts.succeeded, counts.errored, counts.cancelled, counts.expired) == (1, 1, 2, 0)
    assert (counts.failed, counts.done, counts.total) == (3, 4, 4)
