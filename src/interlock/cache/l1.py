"""The in-process tier: an LRU bounded by entry count AND total bytes.

Both bounds matter: a count alone lets a few huge answers take the heap, a
byte total alone lets millions of tiny embeddings cost more in dict overhead
than in payload. Inserting evicts least-recently-used entries until both
hold; a value bigger than the whole byte budget is refused rather than
emptying the cache for it. Expiry follows the injected clock, lazily on read
(expired entries also leave first as the LRU end is reached).

Values are ``bytes`` (serialized entries): immutable, so a hit can never be
mutated by one caller under another, and their size is exact. Each slot is a
plain tuple of such values (not a class, not even a named tuple): the
garbage collector stops tracking an exact tuple of untracked values at its
first pass, so a full cache adds nothing to the full collections that walk
every long-lived object, where a slot object would add one per entry.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["LocalTier"]


# value, expires_at, namespace, model
_Slot = tuple[bytes, float, str, str]


class LocalTier:
    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ):
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("LocalTier bounds must be at least 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._clock = clock
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def total_bytes(self) -> int:
        """Payload bytes held (keys and bookkeeping not counted)."""
        return self._bytes

    def get(self, key: str) -> bytes | None:
        slot = self._slots.get(key)
        if slot is None:
            return None
        value, expires_at, _, _ = slot
        if expires_at <= self._clock():
            self._remove(key)
            return None
        self._slots.move_to_end(key)
        return value

    def put(
        self, key: str, value: bytes, ttl_s: float, *, namespace: str = "", model: str = ""
    ) -> bool:
        """Store for ``ttl_s`` seconds; False when refused (too big, or no time left)."""
        self._remove(key)
        if len(value) > self.max_bytes or not ttl_s > 0:
            return False
        self._slots[key] = (value, self._clock() + ttl_s, namespace, model)
        self._bytes += len(value)
        while len(self._slots) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._slots))
            self._remove(oldest)
            self.evictions += 1
        return True

    def drop(self, *, namespace: str | None = None, model: str | None = None) -> int:
        """Remove entries of a namespace and/or model group; returns how many.

        Invalidation does not need it for correctness (new generations mean
        new keys); it frees the memory now instead of at expiry.
        """
        doomed = [
            key
            for key, (_, _, slot_namespace, slot_model) in self._slots.items()
            if (namespace is None or slot_namespace == namespace)
            and (model is None or slot_model == model)
        ]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    def clear(self) -> None:
        self._slots.clear()
        self._bytes = 0

    def _remove(self, key: str) -> None:
        slot = self._slots.pop(key, None)
        if slot is not None:
            self._bytes -= len(slot[0])
