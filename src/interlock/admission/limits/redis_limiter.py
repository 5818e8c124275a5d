"""Limits shared by every gateway instance through Redis.

Each admission is ONE round trip: a Lua script reads, checks and charges all
of a key's limits (rpm, tpm, tokens per day, concurrency) atomically, so two
instances can never both take the last unit. Settling is one more script.
Time comes from Redis (``TIME`` inside the script) so instances with skewed
clocks still agree; a ``clock`` may be injected instead, which tests use to
run the very same suite on the memory limiter's fake timeline.

The scripts mirror ``gcra.py`` line by line. Keys share a hash tag per API
key (``{key}``) so the script stays legal on Redis Cluster, and each expires
once its bucket is full again, so idle keys cost nothing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import redis.asyncio as aioredis

from interlock.admission.limits.base import KeyLimits
from interlock.admission.limits.core import LimiterCore
from interlock.admission.limits.gcra import PERIODS_US, Tally, micros, rates
from interlock.state.base import DEFAULT_PREFIX
from interlock.state.health import StoreHealth
from interlock.state.redis_guard import RedisGuard
from interlock.state.redis_pool import bounded_pool

__all__ = ["RedisLimiter"]

T = TypeVar("T")

# Shared prologue: ARGV[1] is now in µs, or '' for the server's clock.
_NOW = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function store(key, tat)
  redis.call('SET', key, string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000))
end
"""

# KEYS[1..3] TATs (rpm, tpm, tokens per day); KEYS[4] leases (zset: id -> expiry).
# ARGV[2] requests; ARGV[3] tokens; ARGV[4..9] limit, period µs per rate (limit 0: off);
# ARGV[10] max concurrent (0: off); ARGV[11] lease id; ARGV[12] lease µs.
# Mirrors gcra.check and MemoryLimiter._tally.
_ADMIT = (
    _NOW
    + """
local costs = {tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[3])}
local tats, incs, waits = {0, 0, 0}, {0, 0, 0}, {0, 0, 0}
local allowed = 1
for i = 1, 3 do
  local limit, period = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
  if limit > 0 then
    local tat = math.max(tonumber(redis.call('GET', KEYS[i]) or 0), now)
    local inc = math.ceil(costs[i] * period / limit)
    tats[i], incs[i] = tat, inc
    if inc > period then
      waits[i], allowed = -1, 0
    elseif tat + inc - period - now > 0 then
      waits[i], allowed = tat + inc - period - now, 0
    end
  end
end
local full = 0
local max_concurrent = tonumber(ARGV[10])
if max_concurrent > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', string.format('%d', now))
  if redis.call('ZCARD', KEYS[4]) >= max_concurrent then full, allowed = 1, 0 end
end
if allowed == 1 then
  for i = 1, 3 do
    if incs[i] > 0 then
      tats[i] = tats[i] + incs[i]
      store(KEYS[i], tats[i])
    end
  end
  if max_concurrent > 0 then
    local lease = tonumber(ARGV[12])
    redis.call('ZADD', KEYS[4], string.format('%d', now + lease), ARGV[11])
    redis.call('PEXPIRE', KEYS[4], math.ceil(lease / 1000))
  end
end
return {allowed, now, full, tats[1], waits[1], tats[2], waits[2], tats[3], waits[3]}
"""
)

# KEYS[1..2] TATs (tpm, tokens per day); KEYS[3] leases.
# ARGV[2] token delta (actual - reserved); ARGV[3..6] limit, period µs per rate;
# ARGV[7] lease id to free ('' for none). Mirrors gcra.adjust and MemoryLimiter._settle.
_SETTLE = (
    _NOW
    + """
local delta = tonumber(ARGV[2])
if delta ~= 0 then
  for i = 1, 2 do
    local limit, period = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
    if limit > 0 then
      local tat = math.max(tonumber(redis.call('GET', KEYS[i]) or 0), now)
      if delta > 0 then
        tat = math.min(tat + math.ceil(delta * period / limit), now + 2 * period)
      else
        tat = math.max(tat - math.floor(-delta * period / limit), now)
      end
      if tat > now then store(KEYS[i], tat) else redis.call('DEL', KEYS[i]) end
    end
  end
end
if ARGV[7] ~= '' then redis.call('ZREM', KEYS[3], ARGV[7]) end
return now
"""
)


class RedisLimiter(LimiterCore):
    """``RateLimiter`` on Redis; keys live under ``{prefix}limits:{key}``.

    ``client`` is used as given (the caller owns it) unless the limiter was
    made by ``from_url``. ``timeout_s`` bounds each call; any failure or
    timeout raises ``StateStoreUnavailable`` for ``FailoverLimiter`` to act on,
    and so does every call while ``health`` (the latch shared with the state
    store's client of the same Redis; by default the limiter's own) is tripped.
    ``clock=None`` (production) uses the server's time; a clock is for tests.
    """

    backend = "redis"

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = 0.25,
        clock: Callable[[], float] | None = None,
        lease_s: float = 600.0,
        concurrency_retry_s: float = 1.0,
        owns_client: bool = False,
        health: StoreHealth | None = None,
    ):
        super().__init__(lease_s=lease_s, concurrency_retry_s=concurrency_retry_s)
        self.prefix = prefix
        self._client = client
        self._clock = clock
        self._owns_client = owns_client
        self.health = health or StoreHealth()
        self._guard = RedisGuard(
            client, self.health, deadline_s=timeout_s, probe_timeout_s=timeout_s
        )
        self._admit = client.register_script(_ADMIT)
        self._settle_script = client.register_script(_SETTLE)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout_s: float = 0.25,
        max_connections: int = 64,
        clock: Callable[[], float] | None = None,
        lease_s: float = 600.0,
        concurrency_retry_s: float = 1.0,
        health: StoreHealth | None = None,
    ) -> RedisLimiter:
        """A limiter with its own bounded client (``bounded_pool``): every wait
        bounded, only a dropped connection retried; the failover degrades
        instead of waiting out an outage."""
        pool = bounded_pool(url, max_connections=max_connections, timeout_s=timeout_s)
        client = aioredis.Redis.from_pool(pool)  # closing the client closes the pool
        return cls(
            client,
            prefix=prefix,
            timeout_s=timeout_s,
            clock=clock,
            lease_s=lease_s,
            concurrency_retry_s=concurrency_retry_s,
            owns_client=True,
            health=health,
        )

    def __repr__(self) -> str:
        # The client's URL may carry a password; show only where we namespace.
        return f"RedisLimiter(prefix={self.prefix!r})"

    async def aclose(self) -> None:
        await self._guard.aclose()
        if self._owns_client:
            await self._client.aclose()

    def _keys(self, key: str) -> list[str]:
        base = f"{self.prefix}limits:{{{key}}}:"
        return [base + "rpm", base + "tpm", base + "tpd", base + "leases"]

    def _now_arg(self) -> int | str:
        return "" if self._clock is None else micros(self._clock())

    async def _tally(
        self, key: str, limits: KeyLimits, requests: int, tokens: int, lease_id: str | None
    ) -> Tally:
        limit_of = rates(limits)
        args: list[int | str] = [self._now_arg(), requests, tokens]
        for limit, period in zip(limit_of, PERIODS_US, strict=True):
            args += [limit, period]
        args += [limits.max_concurrent or 0, lease_id or "", self._lease_us]
        reply = await self._call(lambda: self._admit(keys=self._keys(key), args=args))
        r = [int(value) for value in reply]
        return Tally(r[0] == 1, r[1], (r[3], r[5], r[7]), (r[4], r[6], r[8]), r[2] == 1)

    async def _settle(self, key: str, limits: KeyLimits, delta: int, lease_id: str | None) -> None:
        _, tpm, tpd = rates(limits)
        args = [self._now_arg(), delta, tpm, PERIODS_US[1], tpd, PERIODS_US[2], lease_id or ""]
        keys = self._keys(key)[1:]
        await self._call(lambda: self._settle_script(keys=keys, args=args))

    async def in_flight(self, keys: Sequence[str]) -> dict[str, int]:
        # The caller's clock, not Redis's TIME: a lease lives for minutes,
        # clock skew between instances is milliseconds.
        now = micros(time.time() if self._clock is None else self._clock())

        async def count() -> list[int]:
            pipe = self._client.pipeline(transaction=False)  # keys on many cluster slots
            for key in keys:
                pipe.zcount(self._keys(key)[3], f"({now}", "+inf")
            return [int(n) for n in await pipe.execute()]

        counts = await self._call(count) if keys else []
        return dict(zip(keys, counts, strict=True))

    async def _call(self, command: Callable[[], Awaitable[T]]) -> T:
        return await self._guard.call(command)
