"""What one per-key limit check costs: memory vs the real Redis.

Times ``admit`` alone, ``admit`` + ``reconcile`` (the per-request pair with
rate and token limits) and ``admit`` + ``finish`` (with a concurrency limit
too), sequentially (latency per check: for Redis, one round trip each) and
with 64 requests in flight (throughput, amortised per check). Limits are
set high so nothing is refused: every call takes the full charge path.
A bare PING row shows the round-trip floor. Medians of interleaved runs.
Redis is ``redis://127.0.0.1:6379/15`` unless ``REDIS_URL`` says
otherwise; its rows are skipped when it does not answer.
Run: ``python bench/admission_cost.py``.
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from interlock.admission.limits import KeyLimits, MemoryLimiter, RateLimiter, RedisLimiter

REPEATS = 5
ROUNDS = {"memory": 20_000, "redis": 2_000}
IN_FLIGHT = 64
RATES = KeyLimits(rpm=10**9, tpm=10**12, tokens_per_day=10**13)
WITH_CONCURRENCY = KeyLimits(rpm=10**9, tpm=10**12, tokens_per_day=10**13, max_concurrent=10**6)

Step = Callable[[RateLimiter], Awaitable[None]]


async def _admit(limiter: RateLimiter) -> None:
    await limiter.admit("bench", RATES, tokens=600)


async def _admit_reconcile(limiter: RateLimiter) -> None:
    decision = await limiter.admit("bench", RATES, tokens=600)
    assert decision.reservation is not None
    await limiter.reconcile(decision.reservation, 250)


async def _admit_finish(limiter: RateLimiter) -> None:
    decision = await limiter.admit("bench", WITH_CONCURRENCY, tokens=600)
    assert decision.reservation is not None
    await limiter.finish(decision.reservation, 250)


STEPS: dict[str, Step] = {
    "admit": _admit,
    "admit + reconcile": _admit_reconcile,
    "admit + finish, with concurrency": _admit_finish,
}


async def _per_step_us(limiter: RateLimiter, step: Step, rounds: int, in_flight: int) -> float:
    """µs per step, with ``in_flight`` workers sharing ``rounds`` steps."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await step(limiter)

    await worker(100)  # warm up: scripts loaded, connections open
    began = time.perf_counter()
    await asyncio.gather(*(worker(rounds // in_flight) for _ in range(in_flight)))
    return (time.perf_counter() - began) / (rounds // in_flight * in_flight) * 1e6


async def _redis_limiter(url: str, prefix: str) -> RedisLimiter | None:
    limiter = RedisLimiter.from_url(url, prefix=prefix, timeout_s=1.0)
    try:
        await limiter.admit("probe", RATES)
    except Exception as exc:  # any failure just means: no Redis rows
        print(f"Redis at {url} unavailable ({exc}); memory rows only.\n")
        await limiter.aclose()
        return None
    return limiter


async def _drop_keys(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def _ping_us(url: str) -> float:
    """One bare round trip on the same kind of client: the floor under every Redis row."""
    client = aioredis.Redis.from_url(url)
    for _ in range(100):
        await client.ping()
    runs = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        for _ in range(ROUNDS["redis"]):
            await client.ping()
        runs.append((time.perf_counter() - began) / ROUNDS["redis"] * 1e6)
    await client.aclose()
    return statistics.median(runs)


async def _measure(limiters: dict[str, RateLimiter]) -> list[tuple[str, str, int, float]]:
    cases = [
        (backend, label, in_flight)
        for backend in limiters
        for label in STEPS
        for in_flight in (1, IN_FLIGHT)
        if not (backend == "memory" and in_flight > 1)  # no I/O: concurrency changes nothing
    ]
    runs: dict[tuple[str, str, int], list[float]] = {case: [] for case in cases}
    for _ in range(REPEATS):  # interleaved, so drift hits every case alike
        for backend, label, in_flight in cases:
            us = await _per_step_us(limiters[backend], STEPS[label], ROUNDS[backend], in_flight)
            runs[(backend, label, in_flight)].append(us)
    return [(b, label, n, statistics.median(runs[(b, label, n)])) for b, label, n in cases]


async def _main() -> int:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    prefix = f"bench:{uuid.uuid4().hex}:"
    limiters: dict[str, RateLimiter] = {"memory": MemoryLimiter()}
    shared = await _redis_limiter(url, prefix)
    if shared is not None:
        limiters["redis"] = shared
    try:
        rows = await _measure(limiters)
        if shared is not None:
            rows.append(("redis", "PING (reference: one bare round trip)", 1, await _ping_us(url)))
    finally:
        if shared is not None:
            await shared.aclose()
            await _drop_keys(url, prefix)
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, Redis on loopback, "
        f"median of {REPEATS} interleaved runs\n"
    )
    print("| backend | per request | in flight | µs per request |")
    print("| --- | --- | --- | --- |")
    for backend, label, in_flight, us in rows:
        print(f"| {backend} | {label} | {in_flight} | {us:.1f} |")
    return 0


def main() -> int:
    return asyncio.run(_main())


if __name__ == "__main__":
    raise SystemExit(main())
