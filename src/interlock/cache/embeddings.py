"""Per-input embedding caching: split a batch into cached vectors and misses.

Embeddings are deterministic, so every input is cached on its own: a batch
that repeats yesterday's inputs plus one new one sends only the new one
upstream. ``EmbeddingBatch`` keeps the original order; ``absorb`` places
the upstream vectors by their ``index`` in the miss request, and
``response`` rebuilds OpenAI's list in the client's order.

Vectors are stored as packed float64: exact (what was parsed is what is
served) and a third of their JSON size. ``encoding_format`` is dropped from
the miss request so upstreams answer in floats; the pipeline applies base64
after the cache, as it does for every answer.

``usage`` reports the tokens upstream processed for this request; cached
inputs count 0 (per-input token counts are not in OpenAI's batch answer).
"""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from interlock.cache.core import CacheCore
from interlock.cache.keys import embedding_input_digest, storage_key
from interlock.cache.request import CacheRequest, CacheStatus
from interlock.errors import UpstreamProtocolError

__all__ = ["EmbeddingBatch", "EmbeddingCache", "pack_vector", "split_inputs", "unpack_vector"]

EmbeddingInput = str | list[int]
JSONDict = dict[str, Any]


def split_inputs(raw: Any) -> list[EmbeddingInput] | None:
    """The inputs of an embeddings ``input``, or None for a shape we don't cache."""
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list) or not raw:
        return None
    if all(isinstance(item, str) for item in raw):
        return list(raw)
    if all(isinstance(item, int) and not isinstance(item, bool) for item in raw):
        return [list(raw)]  # one tokenized input
    if all(isinstance(item, list) and all(isinstance(t, int) for t in item) for item in raw):
        return [list(item) for item in raw]
    return None


def pack_vector(vector: Any) -> bytes | None:
    """The stored form, or None for anything but a list of numbers (e.g. base64)."""
    if not isinstance(vector, list):
        return None
    try:
        return array("d", vector).tobytes()
    except TypeError:
        return None


def unpack_vector(data: bytes) -> list[float] | None:
    if len(data) % 8:
        return None
    packed = array("d")
    packed.frombytes(data)
    return packed.tolist()


@dataclass(slots=True)
class EmbeddingBatch:
    inputs: list[EmbeddingInput]
    keys: list[str]
    # A vector per input: cached ones from the start, the rest after ``absorb``.
    vectors: list[Any]

    @property
    def missing(self) -> list[int]:
        return [i for i, vector in enumerate(self.vectors) if vector is None]

    def miss_body(self, body: JSONDict) -> JSONDict:
        """The request for the inputs not cached, in their original relative order."""
        out = {k: v for k, v in body.items() if k != "encoding_format"}
        out["input"] = [self.inputs[i] for i in self.missing]
        return out

    def absorb(self, result: JSONDict) -> list[int]:
        """Place the miss request's vectors; returns the batch positions filled.

        Raises ``UpstreamProtocolError`` when the answer lacks a vector: a
        response with holes would silently misalign the client's data.
        """
        missing = self.missing
        filled = []
        for item in result.get("data") or ():
            index = item.get("index") if isinstance(item, dict) else None
            if not isinstance(index, int) or not 0 <= index < len(missing):
                raise UpstreamProtocolError("embeddings answer has an item with a bad index")
            self.vectors[missing[index]] = item.get("embedding")
            filled.append(missing[index])
        if len(set(filled)) != len(missing):
            raise UpstreamProtocolError(
                f"embeddings answer has {len(set(filled))} vectors for {len(missing)} inputs"
            )
        return filled

    def response(self, model: str, usage: JSONDict | None = None) -> JSONDict:
        """OpenAI's embeddings list, in the client's order."""
        data = [
            {"object": "embedding", "index": i, "embedding": vector}
            for i, vector in enumerate(self.vectors)
        ]
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": usage or {"prompt_tokens": 0, "total_tokens": 0},
        }


class EmbeddingCache:
    """The embeddings path of ``ResponseCache``: split, call for the misses, fill, reassemble."""

    def __init__(self, core: CacheCore):
        self._core = core

    async def split(self, req: CacheRequest, body: Mapping[str, Any]) -> EmbeddingBatch | None:
        """Cached vectors and the inputs still to compute; None for an input shape we skip."""
        inputs = split_inputs(body.get("input"))
        if inputs is None:
            return None
        keys = [
            storage_key(
                req.namespace,
                req.model,
                req.generations,
                req.body_digest + ":" + embedding_input_digest(item),
            )
            for item in inputs
        ]
        vectors: list[Any] = [None] * len(inputs)
        if req.directive.lookup:
            tiers = self._core.tiers
            found = await asyncio.gather(
                *(tiers.get(key, namespace=req.namespace, model=req.model) for key in keys)
            )
            vectors = [None if f is None else unpack_vector(f[0]) for f in found]
        batch = EmbeddingBatch(inputs, keys, vectors)
        hits = len(inputs) - len(batch.missing)
        self._core.stats.embedding_hits += hits
        self._core.stats.embedding_misses += len(inputs) - hits
        return batch

    async def fill(self, req: CacheRequest, batch: EmbeddingBatch, filled: list[int]) -> None:
        """Store the vectors at ``filled`` (those ``absorb`` placed)."""
        if not req.directive.fill:
            return
        tiers, ttl_s = self._core.tiers, req.directive.ttl_s
        writes = []
        for i in filled:
            packed = pack_vector(batch.vectors[i])
            if packed is not None:
                key = batch.keys[i]
                wrapped = tiers.put_local(
                    key, packed, ttl_s, namespace=req.namespace, model=req.model
                )
                writes.append(tiers.put_shared(key, wrapped, ttl_s))
        await asyncio.gather(*writes)

    async def embed(
        self, req: CacheRequest, body: JSONDict, call: Callable[[JSONDict], Awaitable[JSONDict]]
    ) -> tuple[JSONDict, CacheStatus]:
        batch = await self.split(req, body)
        if batch is None:
            return await call(body), "miss"
        missing = len(batch.missing)
        if not missing:
            return batch.response(req.model), "hit"
        result = await call(batch.miss_body(body))
        await self.fill(req, batch, batch.absorb(result))
        status: CacheStatus = "miss" if missing == len(batch.inputs) else "partial"
        return batch.response(str(result.get("model") or req.model), result.get("usage")), status
