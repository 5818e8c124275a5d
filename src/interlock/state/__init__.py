"""Shared runtime state: one interface, an in-memory and a Redis implementation.

``build_state_store`` is the chooser the composition root calls once at
startup; nothing here connects at import.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from interlock.state.base import DEFAULT_PREFIX, StateStore, StateStoreUnavailable
from interlock.state.health import StoreHealth
from interlock.state.memory import MemoryStateStore
from interlock.state.redis_store import RedisStateStore

__all__ = [
    "DEFAULT_PREFIX",
    "MemoryStateStore",
    "RedisStateStore",
    "StateStore",
    "StateStoreUnavailable",
    "StoreHealth",
    "build_state_store",
]


def build_state_store(
    backend: Literal["memory", "redis"],
    url: str | None = None,
    *,
    prefix: str = DEFAULT_PREFIX,
    timeout_s: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
    health: StoreHealth | None = None,
) -> StateStore:
    """The store for ``backend``: memory for one process, Redis to share across instances.

    ``clock`` only matters to the memory store (Redis keeps its own time);
    ``url``, ``prefix``, ``timeout_s`` and ``health`` (the latch shared with
    the other clients of that Redis) only to Redis.
    """
    if backend == "memory":
        return MemoryStateStore(clock)
    if backend == "redis":
        if not url:
            raise ValueError("the redis state store needs a url")
        return RedisStateStore(url, prefix, timeout_s, health=health)
    raise ValueError(f"unknown state store backend {backend!r}")
