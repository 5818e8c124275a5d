"""What every Redis user in the gateway (state store, rate limiter) shares:
the bounded connection pool, and the one retry it allows.

Every wait is bounded: connect, read, and the wait for a free connection
(``timeout_s`` each), and callers put a deadline over the whole call. The
client itself never retries: while Redis hangs, a retry would double what
each caller pays before it degrades.

``retry_dropped`` runs a command a second time when its connection turned
out to be dead. After Redis restarts (or a proxy in front of it resets its
connections) the pool still holds connections that look open, and the first
command on each fails with "Connection closed by server". Counted as
outages, those failures flipped a recovered gateway back to per-instance
limits, once per stale connection. While Redis is down the second attempt's
connect is refused at once, so it costs little. A command retried after
Redis ran it counts twice, which errs towards over-charging, like the rest
of the failover. (redis-py's own ``Retry`` does the same, but left the dead
connection's socket unclosed in redis-py 8.1.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["bounded_pool", "is_pool_wait", "retry_dropped"]

T = TypeVar("T")


def bounded_pool(
    url: str, *, max_connections: int, timeout_s: float
) -> aioredis.BlockingConnectionPool:
    return aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


def is_pool_wait(exc: BaseException) -> bool:
    """The pool had no free connection within ``timeout_s``: this process is
    busy (every connection in use), which says nothing about Redis. redis-py
    raises it as a ``ConnectionError`` from the wait's ``TimeoutError``."""
    return (
        isinstance(exc, RedisConnectionError)
        and isinstance(exc.__cause__, TimeoutError)
        and "No connection available" in str(exc)
    )


async def retry_dropped(command: Callable[[], Awaitable[T]]) -> T:
    """``command()``, once more if its connection was found closed (a timeout
    is not retried: redis-py raises ``TimeoutError`` for it, not this; nor is
    a wait for a pooled connection, which would only wait again)."""
    try:
        return await command()
    except RedisConnectionError as exc:
        if is_pool_wait(exc):
            raise
        return await command()
