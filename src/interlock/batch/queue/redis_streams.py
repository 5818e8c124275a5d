"""The work queue on a Redis Stream with one consumer group, for workers on
many processes and machines.

A message is a stream entry (field ``p``: the payload). A lease is the
entry's place in the group's pending list (PEL): the consumer holds it while
its idle time (time since delivery) stays under ``lease_s``.

* ``take`` first claims entries idle for a whole lease (``XAUTOCLAIM``: dead
  consumers' work, or released work), then reads new ones (``XREADGROUP >``,
  blocking up to ``max_block_s`` at a time). ``attempts`` is the entry's
  delivery count, which both commands bump.
* ``extend`` and ``release`` reset an entry's idle time with
  ``XCLAIM ... IDLE n JUSTID`` (JUSTID leaves the delivery count alone), from
  a Lua script that first checks who holds the entry: a plain ``XCLAIM``
  would take the entry from a consumer that claimed it after our lease lapsed.
* ``ack`` is ``XACK`` and ``XDEL`` in one MULTI, so ``XLEN`` is the depth.

The group is created on first use at id ``0`` (so entries put before it
exist are delivered too) and again whenever Redis answers ``NOGROUP``: a
Redis restarted without persistence has lost the group (and the stream).
Puts are as durable as Redis's ``appendfsync`` makes them. Every consumer
of a stream must use the same ``lease_s``: a shorter one reclaims the others'
entries early.

Errors: connection errors, timeouts and ``OSError`` raise ``QueueUnavailable``.
After Redis comes back the next call works: the pool checks an idle
connection before handing it out and reconnects a dead one, and a connection
that dies under a command is retried once (``redis_pool.retry_dropped``);
``test_messages_outlive_a_redis_restart`` holds us to it.

Needs Redis 7.0 or later (XAUTOCLAIM's list of deleted entries) and a client
with ``decode_responses=False``, RESP2 replies, and a ``socket_timeout`` above
``max_block_s``; ``from_url`` builds one.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from interlock.batch.queue.base import Delivery, QueueUnavailable
from interlock.state.redis_pool import retry_dropped

__all__ = ["RedisStreamQueue"]

T = TypeVar("T")

_PAYLOAD = b"p"
# XAUTOCLAIM looks at no more than 10 x COUNT pending entries per call; this
# many calls per take let it pass over live leases to reach lapsed ones.
_MAX_CLAIM_SCANS = 8
_START = b"0-0"

# Resets the idle time of the entries (ARGV[4..]) that the consumer ARGV[2]
# holds (any holder if ARGV[2] is empty) to ARGV[3] ms, keeping their holder
# and delivery count. Returns how many it touched.
_TOUCH_LUA = """
local group, consumer, idle = ARGV[1], ARGV[2], ARGV[3]
local touched = 0
for i = 4, #ARGV do
  local entry = redis.call('XPENDING', KEYS[1], group, ARGV[i], ARGV[i], 1)[1]
  if entry and (consumer == '' or entry[2] == consumer) then
    redis.call('XCLAIM', KEYS[1], group, entry[2], 0, ARGV[i], 'IDLE', idle, 'JUSTID')
    touched = touched + 1
  end
end
return touched
"""


class RedisStreamQueue:
    """A ``WorkQueue`` on the stream ``stream``, consumed by group ``group``."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        stream: str,
        group: str = "workers",
        lease_s: float = 30.0,
        max_block_s: float = 5.0,
    ) -> None:
        if lease_s <= 0 or max_block_s <= 0:
            raise ValueError("lease_s and max_block_s must be positive")
        self._client = client
        self._stream = stream
        self._group = group
        self._lease_ms = max(1, round(lease_s * 1000))
        self._max_block_s = max_block_s
        self._owns_client = False
        self._group_ready = False
        self._claim_cursor: bytes = _START
        self._touch = client.register_script(_TOUCH_LUA)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str,
        lease_s: float = 30.0,
        group: str = "workers",
        timeout_s: float = 5.0,
        max_block_s: float = 5.0,
        max_connections: int = 32,
    ) -> RedisStreamQueue:
        """A queue at ``{prefix}batch:queue`` on a client of its own (closed by
        ``aclose``). Every wait is bounded: connect and free connection by
        ``timeout_s``; a read by ``timeout_s`` past the longest block."""
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            socket_timeout=max_block_s + timeout_s,
            # redis-py's default retries with backoff for seconds while Redis
            # is down; ours fails fast and the worker retries later.
            retry=Retry(NoBackoff(), 0),
        )
        queue = cls(
            aioredis.Redis.from_pool(pool),
            stream=f"{prefix}batch:queue",
            group=group,
            lease_s=lease_s,
            max_block_s=max_block_s,
        )
        queue._owns_client = True
        return queue

    @property
    def engine(self) -> str:
        return "redis-streams"

    async def put(self, payloads: Sequence[bytes]) -> None:
        if not payloads:
            return

        async def add() -> None:
            async with self._client.pipeline(transaction=True) as pipe:
                for payload in payloads:
                    pipe.xadd(self._stream, {_PAYLOAD: bytes(payload)})
                await pipe.execute()

        await self._call(add, grouped=False)

    async def take(self, consumer: str, max_messages: int, wait_s: float) -> list[Delivery]:
        if max_messages < 1:
            raise ValueError("max_messages must be at least 1")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            taken = await self._call(partial(self._reclaim, consumer, max_messages))
            block_s = 0.0 if taken else min(deadline - loop.time(), self._max_block_s)
            room = max_messages - len(taken)
            if room > 0:
                taken += await self._call(partial(self._read_new, consumer, room, block_s))
            if taken or loop.time() >= deadline:
                return taken

    async def extend(self, consumer: str, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            await self._call(lambda: self._touch_entries(consumer, 0, deliveries))

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        if not deliveries:
            return
        ids = [delivery.id for delivery in deliveries]

        async def done() -> None:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.xack(self._stream, self._group, *ids)
                pipe.xdel(self._stream, *ids)
                await pipe.execute()

        await self._call(done)

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        # Idle for a whole lease: the next take's XAUTOCLAIM picks it up.
        if deliveries:
            await self._call(lambda: self._touch_entries("", self._lease_ms + 1, deliveries))

    async def depth(self) -> int:
        return int(await self._call(lambda: self._client.xlen(self._stream), grouped=False))

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def _reclaim(self, consumer: str, count: int) -> list[Delivery]:
        claimed: list[tuple[bytes, dict[bytes, bytes]]] = []
        for _ in range(_MAX_CLAIM_SCANS):
            # The third element lists entries deleted while pending; Redis
            # has already dropped them from the PEL, so they are just skipped.
            cursor, entries, *_deleted = await self._client.xautoclaim(
                self._stream,
                self._group,
                consumer,
                self._lease_ms,
                start_id=self._claim_cursor,
                count=count - len(claimed),
            )
            self._claim_cursor = cursor
            claimed += [(entry_id, fields) for entry_id, fields in entries if fields]
            if len(claimed) >= count or cursor == _START:
                break
        if not claimed:
            return []
        # XAUTOCLAIM does not say how often an entry was delivered; XPENDING does.
        async with self._client.pipeline(transaction=False) as pipe:
            for entry_id, _ in claimed:
                pipe.xpending_range(self._stream, self._group, entry_id, entry_id, 1)
            pending: list[list[dict[str, Any]]] = await pipe.execute()
        return [
            Delivery(
                id=_text(entry_id), payload=fields[_PAYLOAD], attempts=rows[0]["times_delivered"]
            )
            for (entry_id, fields), rows in zip(claimed, pending, strict=True)
            if rows  # acked by its previous holder in between: done
        ]

    async def _read_new(self, consumer: str, count: int, block_s: float) -> list[Delivery]:
        # BLOCK 0 would wait forever: no block at all when no time is left.
        block_ms = math.ceil(block_s * 1000) if block_s > 0 else None
        # RESP2: [[stream, [(id, {field: value}), ...]]], or nothing after the block.
        reply: Any = await self._client.xreadgroup(
            self._group, consumer, {self._stream: ">"}, count=count, block=block_ms
        )
        if not reply:
            return []
        [(_stream, entries)] = reply
        return [
            Delivery(id=_text(entry_id), payload=fields[_PAYLOAD], attempts=1)
            for entry_id, fields in entries
        ]

    async def _touch_entries(
        self, consumer: str, idle_ms: int, deliveries: Sequence[Delivery]
    ) -> None:
        ids = [delivery.id for delivery in deliveries]
        await self._touch(keys=[self._stream], args=[self._group, consumer, idle_ms, *ids])

    async def _call(self, command: Callable[[], Awaitable[T]], *, grouped: bool = True) -> T:
        """``command()`` with the group in place, and outages as ``QueueUnavailable``."""
        try:
            if grouped and not self._group_ready:
                await retry_dropped(self._create_group)
            try:
                return await retry_dropped(command)
            except ResponseError as exc:
                # Also reported inside MULTI and Lua errors, so not a prefix match.
                if not grouped or "NOGROUP" not in str(exc):
                    raise
                await retry_dropped(self._create_group)
                return await retry_dropped(command)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise QueueUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    async def _create_group(self) -> None:
        try:
            await self._client.xgroup_create(self._stream, self._group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True
        self._claim_cursor = _START


def _text(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id
