"""The shared runtime state interface: a tiny atomic key-value store.

Breakers need it now; rate limiters, cache locks and coalescing later. Every
operation is atomic on its own, so callers compose policies from single calls
(``incr`` for counters and slots, ``set_if_absent`` for locks,
``compare_and_set`` for state machines) and never need a transaction.

Semantics both implementations share (one test suite runs against both):

- Keys are ``str``, values ``bytes``. A counter made by ``incr`` reads back as
  its decimal digits (``b"3"``), as Redis does.
- ``ttl_s=None`` means "no expiry"; a write without a TTL clears an old one.
  ``incr`` applies its TTL only when it creates the key, so a window counter
  expires at the end of its window however often it is bumped.
- ``incr`` on a value that is not an integer raises ``ValueError``: that is
  our bug, not an outage.
- Every other failure to reach the store, including a timeout, raises
  ``StateStoreUnavailable``; callers decide how to degrade (breakers fall back
  to local state).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["DEFAULT_PREFIX", "StateStore", "StateStoreUnavailable", "check_ttl"]

# Namespaces our keys so a shared Redis can serve other tenants or gateways.
DEFAULT_PREFIX = "interlock:"


class StateStoreUnavailable(Exception):
    """The store could not be reached or did not answer in time.

    The one error callers handle; backends map their own exceptions to it
    where they enter (``interlock.state.redis_store``).
    """


def check_ttl(ttl_s: float | None) -> None:
    """Reject non-positive TTLs up front: Redis would refuse them mid-script."""
    if ttl_s is not None and not ttl_s > 0:
        raise ValueError(f"ttl_s must be positive, got {ttl_s!r}")


@runtime_checkable
class StateStore(Protocol):
    """Atomic operations on shared runtime state."""

    async def get(self, key: str) -> bytes | None:
        """The value, or None when the key is absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        """Store ``value``; replaces any value and TTL the key had."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the key; absent keys are fine."""
        ...

    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        """Add ``amount`` (may be negative) and return the new value.

        A missing key starts at 0 and, when ``ttl_s`` is given, expires
        ``ttl_s`` after this call; an existing key keeps its TTL.
        """
        ...

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        """Store ``value`` only if the key is absent; True if this call stored it."""
        ...

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes, ttl_s: float | None = None
    ) -> bool:
        """Store ``new`` only if the current value equals ``expected``.

        ``expected=None`` means "the key is absent". True if this call stored it.
        """
        ...

    async def ping(self) -> bool:
        """True when the store answers; never raises (for health checks)."""
        ...

    async def aclose(self) -> None:
        """Release connections; the store is unusable afterwards."""
        ...
