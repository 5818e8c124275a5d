"""Invalidation by namespace or by model group, reaching every instance.

Each namespace and each model group has a generation number in the state
store, and both are hashed into every cache key. Invalidating bumps one
(``incr``): from then on every instance computes different keys, so old
entries are unreachable at once and expire by their TTL. Nothing is scanned
and nothing is deleted, so it costs one write whatever the cache holds.

Why not pub/sub: a generation is *state*, read by whoever looks, so an
instance that was disconnected or restarting when the invalidation happened
still sees it; a missed pub/sub message would leave stale answers until
their TTL. It works the same on the memory and the Redis store (one test
suite for both), needs no extra subscribed connection, and
``RedisStateStore`` keeps its client private anyway.

The price is reads: each lookup needs both generations. An instance trusts
what it read for ``ttl_s`` (default 1 s), so another instance's invalidation
reaches it within that time; its own take effect at once. When the store is
down the last-known values are used (nobody can bump them then either); with
none known, the cache is skipped rather than guessing 0.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from interlock.state import StateStore, StateStoreUnavailable

__all__ = ["Generations"]

_PREFIX = "cache:gen:"


class Generations:
    def __init__(
        self,
        store: StateStore,
        *,
        ttl_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        max_known: int = 10_000,
    ):
        self._store = store
        self._ttl_s = ttl_s
        self._clock = clock
        self._max_known = max_known
        # store key -> (generation, when it was read)
        self._known: dict[str, tuple[int, float]] = {}

    async def current(self, namespace: str, model: str) -> tuple[int, int] | None:
        """(namespace generation, model generation), or None when unknowable."""
        ns = await self._read(_PREFIX + "ns:" + namespace)
        if ns is None:
            return None
        group = await self._read(_PREFIX + "model:" + model)
        return None if group is None else (ns, group)

    async def bump_namespace(self, namespace: str) -> int:
        """Invalidate a namespace everywhere; raises ``StateStoreUnavailable``."""
        return await self._bump(_PREFIX + "ns:" + namespace)

    async def bump_model(self, model: str) -> int:
        """Invalidate a model group everywhere; raises ``StateStoreUnavailable``."""
        return await self._bump(_PREFIX + "model:" + model)

    async def _bump(self, key: str) -> int:
        value = await self._store.incr(key)
        self._remember(key, value)
        return value

    async def _read(self, key: str) -> int | None:
        known = self._known.get(key)
        if known is not None and self._clock() - known[1] < self._ttl_s:
            return known[0]
        try:
            raw = await self._store.get(key)
            value = 0 if raw is None else int(raw)
        except StateStoreUnavailable:
            return None if known is None else known[0]
        except ValueError:
            return None  # not ours to repair; skip the cache rather than guess
        self._remember(key, value)
        return value

    def _remember(self, key: str, value: int) -> None:
        self._known.pop(key, None)
        if len(self._known) >= self._max_known:
            del self._known[next(iter(self._known))]  # the longest-unrefreshed
        self._known[key] = (value, self._clock())
