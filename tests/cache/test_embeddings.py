"""Per-input embeddings caching: partial hits, original order, only misses upstream."""

from __future__ import annotations

from typing import Any

import pytest

from interlock.cache.embeddings import EmbeddingBatch, pack_vector, split_inputs, unpack_vector
from interlock.errors import UpstreamProtocolError
from interlock.state import MemoryStateStore
from tests.cache.support import make_cache, prepare


def vector_for(item: Any) -> list[float]:
    text = item if isinstance(item, str) else ",".join(map(str, item))
    return [float(len(text)), float(sum(map(ord, text)) % 97) / 7, 0.1]


class FakeEmbeddings:
    """Answers in reverse order, as an upstream may: placement must use ``index``."""

    def __init__(self) -> None:
        self.seen: list[list[Any]] = []
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append(body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        self.seen.append(list(inputs))
        data = [
            {"object": "embedding", "index": i, "embedding": vector_for(item)}
            for i, item in enumerate(inputs)
        ]
        tokens = 3 * len(inputs)
        return {
            "object": "list",
            "data": data[::-1],
            "model": "emb-upstream",
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def body(inputs: Any, **extra: Any) -> dict[str, Any]:
    return {"model": "sim", "input": inputs, **extra}


async def test_partial_hit_sends_only_misses_and_keeps_the_order() -> None:
    cache = make_cache(MemoryStateStore(), l2_enabled=False)
    upstream = FakeEmbeddings()
    await cache.embed(
        await prepare(cache, body(["a", "bb"]), embedding=True), body(["a", "bb"]), upstream
    )

    inputs = ["ccc", "a", "dddd", "bb"]
    req = await prepare(cache, body(inputs), embedding=True)
    result, status = await cache.embed(req, body(inputs, encoding_format="base64"), upstream)
    assert status == "partial"
    assert upstream.seen[-1] == ["ccc", "dddd"]
    assert "encoding_format" not in upstream.bodies[-1]  # floats back; the pipeline encodes
    assert [item["index"] for item in result["data"]] == [0, 1, 2, 3]
    assert [item["embedding"] for item in result["data"]] == [vector_for(i) for i in inputs]
    assert result["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    assert cache.stats.embedding_hits == 2 and cache.stats.embedding_misses == 4


async def test_full_hit_calls_nothing() -> None:
    cache = make_cache(MemoryStateStore(), l2_enabled=False)
    upstream = FakeEmbeddings()
    for _ in range(2):
        req = await prepare(cache, body("hello"), embedding=True)
        result, status = await cache.embed(req, body("hello"), upstream)
    assert status == "hit" and len(upstream.seen) == 1
    assert result["data"][0]["embedding"] == vector_for("hello")
    assert result["usage"]["prompt_tokens"] == 0


async def test_token_inputs_and_dimensions_are_keyed() -> None:
    cache = make_cache(MemoryStateStore(), l2_enabled=False)
    upstream = FakeEmbeddings()
    tokens = [[1, 2, 3], [4, 5]]
    await cache.embed(await prepare(cache, body(tokens), embedding=True), body(tokens), upstream)
    _, status = await cache.embed(
        await prepare(cache, body([4, 5]), embedding=True), body([4, 5]), upstream
    )
    assert status == "hit"
    _, status = await cache.embed(
        await prepare(cache, body([4, 5], dimensions=2), embedding=True),
        body([4, 5], dimensions=2),
        upstream,
    )
    assert status == "miss"


async def test_vectors_are_per_tenant() -> None:
    cache = make_cache(MemoryStateStore(), l2_enabled=False)
    upstream = FakeEmbeddings()
    await cache.embed(await prepare(cache, body("x"), embedding=True), body("x"), upstream)
    req = await prepare(cache, body("x"), key="bob", embedding=True)
    assert (await cache.embed(req, body("x"), upstream))[1] == "miss"


def test_an_answer_with_a_hole_is_an_upstream_error() -> None:
    batch = EmbeddingBatch(["a", "b"], ["k1", "k2"], [None, None])
    with pytest.raises(UpstreamProtocolError):
        batch.absorb({"data": [{"index": 0, "embedding": [1.0]}]})
    with pytest.raises(UpstreamProtocolError):
        batch.absorb({"data": [{"index": 5, "embedding": [1.0]}]})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a", ["a"]),
        (["a", "b"], ["a", "b"]),
        ([1, 2], [[1, 2]]),
        ([[1], [2, 3]], [[1], [2, 3]]),
        ([], None),
        ([1, "a"], None),
        (None, None),
    ],
)
def test_input_shapes(raw: Any, expected: Any) -> None:
    assert split_inputs(raw) == expected


def test_vectors_round_trip_exactly() -> None:
    vector = [0.1, -1 / 3, 1e-300, 12345.678]
    packed = pack_vector(vector)
    assert packed is not None and unpack_vector(packed) == vector
    assert pack_vector("base64string") is None and pack_vector(["x"]) is None
