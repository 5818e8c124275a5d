"""The one way the gateway calls Redis: through the shared health latch.

Each Redis client (the state store's, the rate limiter's) runs every command
through its ``RedisGuard``, and every guard of a gateway shares one
``StoreHealth``. A call:

- is refused at once, with ``StateStoreUnavailable``, while the latch is
  tripped (the only cost a healthy Redis adds is reading one attribute);
- runs under a deadline, retried once only if its connection was found
  dropped (``redis_pool.retry_dropped``);
- tells the latch how it went: a timeout or connection failure counts
  towards tripping it, any answer resets the count. A wait for a pooled
  connection that runs out does not count: every connection is busy, so
  Redis is answering; this process has more calls in flight than its pool
  (a burst on a loaded machine), and tripping would turn a busy moment into
  per-instance limits for every request;
- has redis-py's exceptions mapped to ours here and nowhere else.

While the latch is tripped, one guard runs the prober, a background task
that PINGs Redis (bounded by ``probe_timeout_s``) at the times the latch
sets, until it answers. The guard whose call tripped the latch starts it;
should that guard close first, the next call refused by any other guard
starts another, so the latch always lifts once Redis answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from interlock.state.base import StateStoreUnavailable
from interlock.state.health import StoreHealth
from interlock.state.redis_pool import is_pool_wait, retry_dropped

__all__ = ["RedisGuard"]

T = TypeVar("T")
log = logging.getLogger("interlock.state")

# Redis did not answer. (The builtin TimeoutError, from asyncio.timeout, is an OSError.)
_NO_ANSWER = (RedisConnectionError, RedisTimeoutError, OSError)


def _classify(exc: RedisError) -> Exception:
    """An error reply from Redis: our bug when it says so, else "unavailable"."""
    if isinstance(exc, ResponseError) and "not an integer" in str(exc):
        return ValueError(f"value is not an integer: {exc}")
    return StateStoreUnavailable(f"redis: {type(exc).__name__}: {exc}")


class RedisGuard:
    """Runs one client's commands through the latch ``health``."""

    def __init__(
        self,
        client: aioredis.Redis,
        health: StoreHealth,
        *,
        deadline_s: float,
        probe_timeout_s: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.health = health
        self._client = client
        self._deadline_s = deadline_s
        self._probe_timeout_s = probe_timeout_s
        self._sleep = sleep
        self._prober: asyncio.Task[None] | None = None

    async def call(self, command: Callable[[], Awaitable[T]]) -> T:
        """``command()`` under the deadline; raises ``StateStoreUnavailable``
        (or ``ValueError`` for a value that is not an integer)."""
        health = self.health
        if not health.available:
            self._start_prober()
            raise StateStoreUnavailable("redis: unavailable (latched; probing in the background)")
        try:
            async with asyncio.timeout(self._deadline_s):
                result = await retry_dropped(command)
        except _NO_ANSWER as exc:
            if is_pool_wait(exc):
                raise StateStoreUnavailable(f"redis: {exc} (pool busy)") from exc
            health.failed(f"{type(exc).__name__}: {exc}")
            if not health.available:
                self._start_prober()
            raise StateStoreUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        except RedisError as exc:
            health.succeeded()
            raise _classify(exc) from exc
        health.succeeded()
        return result

    async def aclose(self) -> None:
        """Stop this guard's prober, if it runs one (another guard may take over)."""
        if self._prober is not None:
            self._prober.cancel()
            await asyncio.wait([self._prober])
            self._prober = None

    def _start_prober(self) -> None:
        if self.health.claim_probe():
            self._prober = asyncio.get_running_loop().create_task(self._probe_until_answered())
            # Not a `finally` in the task: a task cancelled before it starts runs none of it.
            self._prober.add_done_callback(lambda _: self.health.release_probe())

    async def _probe_until_answered(self) -> None:
        health = self.health
        while not health.available:
            await self._sleep(health.probe_wait_s())
            health.probe_finished(await self._ping())

    async def _ping(self) -> bool:
        try:
            async with asyncio.timeout(self._probe_timeout_s):
                return bool(await retry_dropped(self._client.ping))
        except (RedisError, OSError) as exc:
            log.debug("Redis probe failed: %s: %s", type(exc).__name__, exc)
            return False
