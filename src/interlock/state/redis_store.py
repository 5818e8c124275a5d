"""Redis-backed state store, shared by every gateway instance.

Operations that read and then write run as Lua scripts, which Redis executes
atomically; they are registered once and called by SHA. Every call is bounded:
socket connect/read timeouts, a bounded pool that waits at most ``timeout_s``
for a free connection, one retry for a dropped connection only (``redis_pool``;
callers degrade instead of waiting out an outage), and an overall deadline.
Every call goes through a ``RedisGuard``: refused at once while the ``health``
latch (shared with the rate limiter's client) says Redis is out, and the one
place Redis exceptions are mapped to ours.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis

from interlock.state.base import DEFAULT_PREFIX, StateStoreUnavailable, check_ttl
from interlock.state.health import StoreHealth
from interlock.state.redis_guard import RedisGuard
from interlock.state.redis_pool import bounded_pool

__all__ = ["RedisStateStore"]

T = TypeVar("T")

# KEYS[1] key; ARGV[1] amount, ARGV[2] TTL in ms (0: none).
# EXISTS first: the TTL is set only by the call that creates the key.
_INCR = """
local created = redis.call('EXISTS', KEYS[1]) == 0
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if created and tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""

# KEYS[1] key; ARGV[1] '1' if a value is expected, '0' if absence is;
# ARGV[2] expected value; ARGV[3] new value; ARGV[4] TTL in ms (0: none).
_COMPARE_AND_SET = """
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
else
  redis.call('SET', KEYS[1], ARGV[3])
end
return 1
"""


def _ttl_ms(ttl_s: float | None) -> int:
    """Redis TTLs are whole milliseconds; round up so a tiny TTL is not 'none'."""
    check_ttl(ttl_s)
    return 0 if ttl_s is None else max(1, math.ceil(ttl_s * 1000))


class RedisStateStore:
    """``StateStore`` on Redis; keys are namespaced by ``prefix``.

    ``health`` is the latch shared with every other client of the same Redis
    (a store made without one has its own); a probe PING gets ``timeout_s``.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = 0.25,
        *,
        max_connections: int = 64,
        health: StoreHealth | None = None,
    ):
        self.prefix = prefix
        self._pool = bounded_pool(url, max_connections=max_connections, timeout_s=timeout_s)
        self._client = aioredis.Redis(connection_pool=self._pool)
        self.health = health or StoreHealth()
        # Connect, wait for a pooled connection, then read: each bounded by timeout_s.
        self._guard = RedisGuard(
            self._client, self.health, deadline_s=3 * timeout_s, probe_timeout_s=timeout_s
        )
        self._incr = self._client.register_script(_INCR)
        self._cas = self._client.register_script(_COMPARE_AND_SET)

    def __repr__(self) -> str:
        # The URL may carry a password; show only where we namespace.
        return f"RedisStateStore(prefix={self.prefix!r})"

    async def get(self, key: str) -> bytes | None:
        value = await self._call(lambda: self._client.get(self.prefix + key))
        # Typed bytes | str; we never ask redis-py to decode, so it is bytes.
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl_s: float | None = None) -> None:
        ms = _ttl_ms(ttl_s)
        await self._call(lambda: self._client.set(self.prefix + key, value, px=ms or None))

    async def delete(self, key: str) -> None:
        await self._call(lambda: self._client.delete(self.prefix + key))

    async def incr(self, key: str, amount: int = 1, ttl_s: float | None = None) -> int:
        ms = _ttl_ms(ttl_s)
        value = await self._call(lambda: self._incr(keys=[self.prefix + key], args=[amount, ms]))
        return int(value)

    async def set_if_absent(self, key: str, value: bytes, ttl_s: float | None = None) -> bool:
        ms = _ttl_ms(ttl_s)
        stored = await self._call(
            lambda: self._client.set(self.prefix + key, value, nx=True, px=ms or None)
        )
        return bool(stored)

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes, ttl_s: float | None = None
    ) -> bool:
        ms = _ttl_ms(ttl_s)
        args = ["0" if expected is None else "1", expected or b"", new, ms]
        stored = await self._call(lambda: self._cas(keys=[self.prefix + key], args=args))
        return bool(stored)

    async def ping(self) -> bool:
        try:
            return bool(await self._call(self._client.ping))
        except StateStoreUnavailable:
            return False

    async def aclose(self) -> None:
        await self._guard.aclose()
        await self._client.aclose()
        await self._pool.aclose()

    async def _call(self, command: Callable[[], Awaitable[T]]) -> T:
        return await self._guard.call(command)
