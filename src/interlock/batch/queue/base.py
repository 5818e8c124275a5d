"""What batch workers need from a queue engine: at-least-once delivery
with leases.

A consumer ``take``s messages; each is leased to it for ``lease_s``. It
``extend``s the lease while it works (a heartbeat), then ``ack``s the
message (gone for good) or ``release``s it (visible to every consumer at
once, for a graceful shutdown). A consumer that dies stops extending: once
its lease lapses the message is delivered again, to whoever takes next,
with ``attempts`` one higher. Work done for a message must therefore be
idempotent; the batch engine writes each result once, by custom_id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Delivery", "QueueUnavailable", "WorkQueue"]


class QueueUnavailable(Exception):
    """The queue engine could not be reached (or did not answer in time);
    the caller retries later. Nothing was taken, acknowledged or lost."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message, leased to the consumer that took it."""

    id: str  # the engine's id for this message (stable across redeliveries)
    payload: bytes
    attempts: int  # deliveries so far, this one included (1 the first time)


class WorkQueue(Protocol):
    @property
    def engine(self) -> str:
        """The engine's name for reports and metrics: ``redis-streams``, ``sql``."""
        ...

    async def put(self, payloads: Sequence[bytes]) -> None:
        """Enqueue, in order; durable once this returns."""
        ...

    async def take(self, consumer: str, max_messages: int, wait_s: float) -> list[Delivery]:
        """Up to ``max_messages`` (at least 1) messages leased to
        ``consumer``: lapsed leases' messages first, then new ones; waits up
        to ``wait_s`` for at least one, and returns an empty list if none
        came (at once when ``wait_s`` is 0)."""
        ...

    async def extend(self, consumer: str, deliveries: Sequence[Delivery]) -> None:
        """Renew the leases ``consumer`` holds on ``deliveries``; one that
        lapsed and went to another consumer stays theirs (no error)."""
        ...

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Done: never delivered again."""
        ...

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        """Give back unfinished: deliverable again at once, same id; its next
        delivery counts as one more attempt."""
        ...

    async def depth(self) -> int:
        """Messages not yet acknowledged (waiting or leased)."""
        ...

    async def aclose(self) -> None: ...
