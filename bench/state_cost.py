"""What shared state costs: one gateway with its state in memory against the
same gateway with its state in Redis, side by side, CPU per request.

    .venv/bin/python bench/state_cost.py [--requests 2000 --reps 7 --concurrency 32]
        [--redis redis://127.0.0.1:6379/14] [--quick] [--out PATH]

Both gateways are built by ``create_app`` in this process with the shipped
defaults plus what makes every piece of state work on each request: the
response cache on, and a key with request, token and concurrency limits
(set high, so nothing is refused and every request takes the full charge
path). The only difference is ``state``: ``memory`` (the embedded
default) or ``redis`` (limits, circuit breakers, the cache and its
cross-instance coalescing shared through Redis, as on many instances).
Each is driven through ASGI (``inprocess.py``) against
bench/mock_upstream.py on loopback (a subprocess; its CPU is not counted).

Three cases per gateway: a unary request that misses the cache (every body
different: a lookup and a store), the same streamed (20 chunks), and a
unary request that hits it (one body, asked again). The figures: this
process's CPU per request (``time.process_time()``, every thread) and,
when Redis runs on this machine, the Redis server's own CPU per request
(``/proc/<its pid>``, the pid from ``INFO``): what shared state costs the
machine, not only the gateway. The variants run interleaved ``--reps``
times and the medians are compared. Writes bench/results/state.md
(``--quick``: bench/.work/state-quick.md; ``--out``: there).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import orjson
import redis
import uvloop

from inprocess import InProcessApp
from interlock.app import create_app
from interlock.config import parse_config
from interlock.server import settle_heap
from procs import BenchError, CoreLayout, cpu_seconds
from stand import WORK_DIR, GatewayOptions, gateway_config, start_plain_mock

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "state.md"
HIGH = {"rpm": 10**9, "tpm": 10**12, "tokens_per_day": 10**13, "max_concurrent": 10**6}
CASES = ("unary, cache miss", "streamed, cache miss", "unary, cache hit")


@dataclass
class Variant:
    name: str
    state: dict[str, object]
    app: InProcessApp | None = None
    cpu_us: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CASES})
    redis_us: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CASES})
    commands: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in CASES})


def _body(text: str, stream: bool) -> bytes:
    return orjson.dumps(
        {
            "model": "mock",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": 16,
            "temperature": 0,  # deterministic: the cache stores it
            "stream": stream,
        }
    )


def _bodies(case: str, count: int) -> list[bytes]:
    if case == "unary, cache hit":
        return [_body("Say hello to the cached benchmark.", False)] * count
    tag = secrets.token_hex(4)
    stream = case.startswith("streamed")
    return [_body(f"Say hello to the benchmark {tag}-{i}.", stream) for i in range(count)]


class RedisCpu:
    """The Redis server's CPU seconds so far, when it runs on this machine,
    and the commands it has processed."""

    def __init__(self, url: str):
        self._client = redis.Redis.from_url(url, socket_timeout=2)
        pid = int(self._client.info("server")["process_id"])
        self.pid = pid if Path(f"/proc/{pid}/stat").exists() else None

    def seconds(self) -> float:
        return cpu_seconds(self.pid) if self.pid is not None else 0.0

    def commands(self) -> int:
        return int(self._client.info("stats")["total_commands_processed"])


async def run(
    app: InProcessApp, case: str, count: int, concurrency: int, redis_cpu: RedisCpu
) -> tuple[float, float, float]:
    """CPU µs per request (this process, and Redis) and Redis commands per
    request, each answer a 200."""
    bodies = _bodies(case, count - count % concurrency)

    async def worker(mine: list[bytes]) -> None:
        for body in mine:
            answer = await app.post("/v1/chat/completions", body)
            if answer.status != 200:
                raise BenchError(f"{case}: {answer.status} {answer.body[:300]!r}")

    commands = redis_cpu.commands()
    started, redis_started = time.process_time(), redis_cpu.seconds()
    await asyncio.gather(*(worker(bodies[i::concurrency]) for i in range(concurrency)))
    ours = 1e6 * (time.process_time() - started) / len(bodies)
    theirs = 1e6 * (redis_cpu.seconds() - redis_started) / len(bodies)
    # Less one: the INFO that read the count.
    return ours, theirs, (redis_cpu.commands() - commands - 1) / len(bodies)


async def measure(
    mock_url: str, args: argparse.Namespace, variants: list[Variant], log: BinaryIO
) -> None:
    key = "sk-bench-" + secrets.token_hex(12)
    redis_cpu = RedisCpu(args.redis)
    with tempfile.TemporaryDirectory(prefix="state-", dir=WORK_DIR) as tmp:
        for variant in variants:
            raw = gateway_config(mock_url, GatewayOptions(shipped_defaults=True))
            raw["keys"] = [{"name": "bench", "key": "os.environ/BENCH_KEY", "limits": HIGH}]
            raw["cache"] = {"enabled": True}
            raw["state"] = variant.state
            raw["store"] = {"url": f"sqlite+aiosqlite:///{Path(tmp) / variant.name}.db"}
            config = parse_config(raw, env={"BENCH_KEY": key})
            variant.app = InProcessApp(create_app(config, log_stream=log), key)
            await variant.app.start()
        try:
            for variant in variants:  # warm: pools, tokenizer, the cache's entry
                assert variant.app is not None
                for case in CASES:
                    await run(variant.app, case, 256, args.concurrency, redis_cpu)
            settle_heap()  # as `interlock serve` does once started
            for rep in range(args.reps):
                order = variants if rep % 2 == 0 else variants[::-1]
                for variant in order:
                    assert variant.app is not None
                    for case in CASES:
                        ours, theirs, commands = await run(
                            variant.app, case, args.requests, args.concurrency, redis_cpu
                        )
                        variant.cpu_us[case].append(ours)
                        variant.redis_us[case].append(theirs)
                        variant.commands[case].append(commands)
                print(f"-- run {rep + 1}/{args.reps}", flush=True)
        finally:
            for variant in variants:
                if variant.app is not None:
                    await variant.app.stop()


def report(args: argparse.Namespace, variants: list[Variant], redis_measured: bool) -> str:
    memory, shared = variants
    lines = [
        "# Shared state: memory against Redis, CPU per request",
        "",
        f"`.venv/bin/python bench/state_cost.py`: {args.requests} chat requests per run at "
        f"concurrency {args.concurrency}, median of {args.reps} interleaved runs; two gateways "
        "in process with the shipped defaults plus the response cache and a key with rate, "
        "token and concurrency limits (none reached), differing only in `state`; "
        "bench/mock_upstream.py on loopback (streams: 20 chunks). "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs; Redis at `{args.redis}`"
        + (" on this machine." if redis_measured else " (not on this machine: its CPU unknown)."),
        "",
        "| Case | memory: gateway CPU | redis: gateway CPU | redis: Redis CPU | "
        "redis: total | total vs memory | Redis commands per request (in scripts too) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for case in CASES:
        base = statistics.median(memory.cpu_us[case])
        ours = statistics.median(shared.cpu_us[case])
        theirs = statistics.median(shared.redis_us[case])
        total = ours + theirs
        lines.append(
            f"| {case} | {base:.0f} µs | {ours:.0f} µs | "
            f"{theirs:.0f} µs | {total:.0f} µs | {total / base:.2f}x | "
            f"{statistics.median(shared.commands[case]):.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"))
    parser.add_argument("--quick", action="store_true", help="256 requests, 2 reps")
    parser.add_argument("--out", type=Path, help="the report (default: bench/results/state.md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.reps = 256, 2
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    prefix = f"bench-state-{secrets.token_hex(4)}:"
    variants = [
        Variant("memory", {"backend": "memory"}),
        Variant("redis", {"backend": "redis", "url": args.redis, "prefix": prefix}),
    ]
    mock = start_plain_mock(CoreLayout.detect(), "state")
    try:
        # The access log is on (shipped default), written where nobody waits on it.
        with open(os.devnull, "wb") as log:
            uvloop.run(measure(mock.url, args, variants, log))
    finally:
        mock.stop()
        with redis.Redis.from_url(args.redis) as client:
            stale = list(client.scan_iter(match=f"{prefix}*"))
            if stale:
                client.delete(*stale)
    text = report(args, variants, RedisCpu(args.redis).pid is not None)
    out = args.out or (WORK_DIR / "state-quick.md" if args.quick else RESULTS)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
