"""Append-only logs of events in the state store, so a stream one instance
writes can be read, and read again from any point, on any instance: memory
by default, Redis when shared. Everything expires ``ttl_s`` after it was
last written.

Keys (under the store's own prefix), for a log ``<id>`` of ``<kind>``::

    <kind>:seq:<id>       the number of events appended so far
    <kind>:ev:<id>:<n>    event n (1, 2, ...), as appended
    <kind>:subs:<id>      how many clients are reading it
    <kind>:cancel:<id>    set to ask its writer to stop

An event is appended in two writes, the counter first: a reader that sees
the counter ahead of an event not yet written stops there and reads it on
its next look, so events are read in order, without gaps or duplicates,
from any instance. Each log has one writer, on one instance; readers there
are woken as it appends, readers elsewhere poll.
"""

from __future__ import annotations

import asyncio

from interlock.state import StateStore

__all__ = ["EventLog"]


class EventLog:
    def __init__(self, state: StateStore, kind: str, ttl_s: float):
        self._state = state
        self._kind = kind
        self.ttl_s = ttl_s
        # Readers on this instance, woken when a log written here grows.
        self._wakeups: dict[str, asyncio.Event] = {}

    async def append(self, log_id: str, payload: bytes) -> int:
        """Add an event; its number (the first is 1)."""
        n = await self._state.incr(f"{self._kind}:seq:{log_id}", 1, self.ttl_s)
        await self._state.set(f"{self._kind}:ev:{log_id}:{n}", payload, self.ttl_s)
        wakeup = self._wakeups.get(log_id)
        if wakeup is not None:
            wakeup.set()
        return n

    async def length(self, log_id: str) -> int | None:
        """The events counted so far; None for a log never written (or expired)."""
        raw = await self._state.get(f"{self._kind}:seq:{log_id}")
        return int(raw) if raw is not None else None

    async def read(self, log_id: str, after: int) -> list[tuple[int, bytes]]:
        """The events after event ``after`` that are written, in order, numbered."""
        last = await self.length(log_id) or 0
        events = []
        for n in range(after + 1, last + 1):
            payload = await self._state.get(f"{self._kind}:ev:{log_id}:{n}")
            if payload is None:  # counted, not yet written: read it next time
                break
            events.append((n, payload))
        return events

    async def wait(self, log_id: str, timeout_s: float) -> None:
        """Until this instance appends to ``log_id``, or ``timeout_s``."""
        wakeup = self._wakeups.get(log_id)
        if wakeup is None:
            wakeup = self._wakeups[log_id] = asyncio.Event()
        try:
            await asyncio.wait_for(wakeup.wait(), timeout_s)
        except TimeoutError:
            pass
        wakeup.clear()

    def forget(self, log_id: str) -> None:
        """No reader on this instance waits on ``log_id`` any more."""
        self._wakeups.pop(log_id, None)

    async def subscribe(self, log_id: str, delta: int) -> int:
        """Count a reader in (+1) or out (-1); the readers now."""
        return await self._state.incr(f"{self._kind}:subs:{log_id}", delta, self.ttl_s)

    async def cancel(self, log_id: str) -> None:
        await self._state.set(f"{self._kind}:cancel:{log_id}", b"1", self.ttl_s)

    async def cancelled(self, log_id: str) -> bool:
        return await self._state.get(f"{self._kind}:cancel:{log_id}") is not None
