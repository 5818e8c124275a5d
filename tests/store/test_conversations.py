"""The conversation store on SQLite and PostgreSQL: items in order, pages
both ways, ids unique in a conversation, concurrent appends from two
processes all kept, and every query scoped to the key."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.store import ConversationFull, ConversationStore, migrate
from tests.store.conftest import Backend

_fresh = itertools.count()


def fresh(item: dict[str, Any]) -> str:
    return f"fresh_{next(_fresh)}"


def _item(n: int, item_id: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "message", "role": "user", "content": [f"m{n}"]}
    if item_id is not None:
        item["id"] = item_id
    return item


async def test_items_keep_their_order_and_page_both_ways(engine: AsyncEngine) -> None:
    store = ConversationStore(engine)
    made, stored = await store.create("conv_1", "k", {"a": "b"}, [_item(0, "i0")], fresh)
    assert made.items == 1 and [i["id"] for i in stored] == ["i0"]
    added = await store.append("k", "conv_1", [_item(n, f"i{n}") for n in range(1, 5)], fresh)
    assert added is not None and [i["id"] for i in added] == ["i1", "i2", "i3", "i4"]
    assert [i["id"] for i in await store.all_items("k", "conv_1") or []] == [
        "i0",
        "i1",
        "i2",
        "i3",
        "i4",
    ]

    async def ids(**how: Any) -> tuple[list[str], bool]:
        page = await store.page("k", "conv_1", **how)
        assert page is not None
        return [i["id"] for i in page[0]], page[1]

    assert await ids(limit=2, after=None, newest_first=True) == (["i4", "i3"], True)
    assert await ids(limit=2, after="i3", newest_first=True) == (["i2", "i1"], True)
    assert await ids(limit=9, after="i1", newest_first=False) == (["i2", "i3", "i4"], False)
    assert await store.item("k", "conv_1", "i2") == {**_item(2), "id": "i2"}
    assert await store.delete_item("k", "conv_1", "i2")
    assert not await store.delete_item("k", "conv_1", "i2")
    found = await store.get("k", "conv_1")
    assert found is not None and found.items == 4 and found.metadata == {"a": "b"}


async def test_an_id_held_repeated_or_too_long_is_replaced(engine: AsyncEngine) -> None:
    store = ConversationStore(engine)
    await store.create("conv_1", "k", {}, [_item(0, "same")], fresh)
    added = await store.append(
        "k",
        "conv_1",
        [_item(1, "same"), _item(2, "new"), _item(3, "new"), _item(4, "x" * 65)],
        fresh,
    )
    assert added is not None
    ids = [i["id"] for i in added]
    assert ids[1] == "new" and len(set(ids)) == 4 and "same" not in ids
    assert all(i.startswith("fresh_") for i in (ids[0], ids[2], ids[3]))


async def test_concurrent_appends_from_two_processes_all_land(backend: Backend) -> None:
    one, two = backend.engine(), backend.engine()
    await migrate(one)
    first, second = ConversationStore(one), ConversationStore(two)
    await first.create("conv_1", "k", {}, [], fresh)
    await asyncio.gather(
        *(
            (first if n % 2 else second).append(
                "k", "conv_1", [_item(n, f"a{n}"), _item(n, f"b{n}")], fresh
            )
            for n in range(12)
        )
    )
    items = await first.all_items("k", "conv_1")
    assert items is not None and len(items) == 24
    ids = [i["id"] for i in items]
    assert sorted(ids) == sorted([f"a{n}" for n in range(12)] + [f"b{n}" for n in range(12)])
    for n in range(12):  # each append's items stay together, in order
        assert ids.index(f"b{n}") == ids.index(f"a{n}") + 1


async def test_another_keys_conversation_is_absent(engine: AsyncEngine) -> None:
    store = ConversationStore(engine)
    await store.create("conv_1", "k", {}, [_item(0, "i0")], fresh)
    assert await store.get("other", "conv_1") is None
    assert await store.all_items("other", "conv_1") is None
    assert await store.page("other", "conv_1", limit=5, after=None, newest_first=True) is None
    assert await store.item("other", "conv_1", "i0") is None
    assert await store.append("other", "conv_1", [_item(1)], fresh) is None
    assert not await store.delete_item("other", "conv_1", "i0")
    assert await store.update_metadata("other", "conv_1", {"x": "y"}) is None
    assert not await store.delete("other", "conv_1")
    assert await store.delete("k", "conv_1")
    assert await store.all_items("k", "conv_1") is None


async def test_an_append_past_the_limit_adds_nothing(engine: AsyncEngine) -> None:
    store = ConversationStore(engine)
    await store.create("conv_1", "k", {}, [_item(0, "i0"), _item(1, "i1")], fresh)
    assert await store.delete_item("k", "conv_1", "i0")  # a deleted item frees its place
    added = await store.append("k", "conv_1", [_item(2), _item(3)], fresh, max_items=3)
    assert added is not None and len(added) == 2
    with pytest.raises(ConversationFull) as full:
        await store.append("k", "conv_1", [_item(4)], fresh, max_items=3)
    assert (full.value.held, full.value.limit) == (3, 3)
    assert len(await store.all_items("k", "conv_1") or []) == 3
