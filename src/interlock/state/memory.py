"""In-process state store: the embedded default, for one gateway process.

Each operation runs without an ``await`` inside, so on one event loop it is
atomic just as a Lua script is in Redis. Expiry follows the injected clock:
keys expire lazily when touched, a sweep every ``purge_every_s`` drops the
ones nobody touches again, and ``max_keys`` bounds memory even when every key
is live (the oldest key is evicted first: for counters and locks that errs
towards forgetting, never towards refusing work).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from interlock.state.base import check_ttl

__all__ = ["MemoryStateStore"]


class MemoryStateStore:
    """``StateStore`` on a dict, with TTLs measured on ``clock``."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_keys: int = 100_000,
        purge_every_s: float = 60.0,
    ):
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._clock = clock
        self._max_keys = max_keys
        self._purge_every_s = purge_every_s
        self._next_purge = clock() + purge_every_s
        # key -> (value, expires_at on clock or None)
        self._data: dict[str, tuple[bytes, float | None]] = {}

    def __len__(self) -> int:
        """Keys held, expired ones not yet purged included (for tests and stats)."""
        return len(self._data)

    async def get(self, key: str) -> bytes | None:
        return self._read(key)

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        check_ttl(ttl_s)
        self._write(key, value, self._expiry(ttl_s))

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        check_ttl(ttl_s)
        now = self._clock()
        entry = self._live(key, now)
        if entry is None:
            value, expires_at = amount, self._expiry(ttl_s)
        else:
            try:
                value = int(entry[0]) + amount
            except ValueError:
                raise ValueError(f"value at {key!r} is not an integer") from None
            expires_at = entry[1]
        self._write(key, str(value).encode(), expires_at)
        return value

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        check_ttl(ttl_s)
        if self._read(key) is not None:
            return False
        self._write(key, value, self._expiry(ttl_s))
        return True

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes, ttl_s: float | None = None
    ) -> bool:
        check_ttl(ttl_s)
        if self._read(key) != expected:
            return False
        self._write(key, new, self._expiry(ttl_s))
        return True

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        self._data.clear()

    def _expiry(self, ttl_s: float | None) -> float | None:
        return None if ttl_s is None else self._clock() + ttl_s

    def _live(self, key: str, now: float) -> tuple[bytes, float | None] | None:
        entry = self._data.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= now:
            del self._data[key]
            return None
        return entry

    def _read(self, key: str) -> bytes | None:
        entry = self._live(key, self._clock())
        return None if entry is None else entry[0]

    def _write(self, key: str, value: bytes, expires_at: float | None) -> None:
        now = self._clock()
        if now >= self._next_purge:
            self._purge(now)
        if key not in self._data and len(self._data) >= self._max_keys:
            # O(1): dicts keep creation order, so this drops the oldest key.
            del self._data[next(iter(self._data))]
        self._data[key] = (value, expires_at)

    def _purge(self, now: float) -> None:
        expired = [k for k, (_, exp) in self._data.items() if exp is not None and exp <= now]
        for key in expired:
            del self._data[key]
        self._next_purge = now + self._purge_every_s
