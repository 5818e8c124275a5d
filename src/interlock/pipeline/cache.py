"""The cache stage: whether the cache takes part in this call, and what an
answer served without an upstream call of its own is accounted at.

The cache itself (keys, tiers, coalescing) is ``interlock.cache``; the
pipeline hands it the call to make on a miss.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from interlock.cache import CacheRequest, ResponseCache
from interlock.pipeline.call import ModelCall
from interlock.telemetry.record import RequestRecord

__all__ = ["CacheStage"]


class CacheStage:
    def __init__(self, cache: ResponseCache | None):
        self.cache = cache

    async def prepare(self, call: ModelCall, *, embedding: bool = False) -> CacheRequest | None:
        """The call's cache handle, or None when the cache stays out of it."""
        if self.cache is None or call.options.forced is not None:
            return None  # a forced deployment is an incident repro: always upstream
        record = call.record
        began = time.perf_counter()
        request = await self.cache.prepare(
            call.principal.name,
            call.group.name,
            call.body,
            call.options.cache_headers,
            embedding=embedding,
        )
        record.stages["cache"] = time.perf_counter() - began
        return request

    @staticmethod
    def served_without_upstream(record: RequestRecord, usage: Any) -> None:
        """A hit or a coalesced follower: the original token counts, no cost."""
        if isinstance(usage, Mapping):
            record.input_tokens = int(usage.get("prompt_tokens") or 0)
            record.output_tokens = int(usage.get("completion_tokens") or 0)
        record.cost_usd = 0.0
