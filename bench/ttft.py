"""Streaming time-to-first-token client: keeps N streams open for a fixed time.

    python bench/ttft.py --url http://127.0.0.1:8080/v1/chat/completions \\
        --streams 50 --duration 5 --expect-chunks 20 [--key sk-...]

Each of ``--streams`` workers opens a streamed chat completion, notes the time
from just before sending the request to the first ``data:`` event, reads the
stream to ``data: [DONE]``, and starts the next one, until ``--duration`` is
over. Streams that start during the first ``--warmup`` seconds are not counted;
``--spread`` staggers the workers' first requests so streams do not run in
lock-step.
Prints one JSON line with the TTFT statistics in milliseconds. Any non-200
status, missing ``[DONE]`` or wrong chunk count is an error: the run exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import uvloop

__all__ = ["TTFTStats", "measure"]


@dataclass(frozen=True)
class Target:
    url: str
    body: bytes
    headers: dict[str, str]
    expect_chunks: int | None


@dataclass
class TTFTStats:
    samples: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self, wall_s: float) -> dict[str, Any]:
        ttft = sorted(self.samples)
        if not ttft:
            return {"streams": 0, "errors": len(self.errors), "first_error": self._first_error()}
        p99 = statistics.quantiles(ttft, n=100, method="inclusive")[98] if len(ttft) > 1 else 0
        return {
            "streams": len(ttft),
            "streams_per_s": round(len(ttft) / wall_s, 1),
            "p50_ms": round(statistics.median(ttft) * 1000, 3),
            "p99_ms": round((p99 or ttft[-1]) * 1000, 3),
            "max_ms": round(ttft[-1] * 1000, 3),
            "errors": len(self.errors),
            "first_error": self._first_error(),
        }

    def _first_error(self) -> str | None:
        return self.errors[0] if self.errors else None


async def _one_stream(session: aiohttp.ClientSession, target: Target) -> tuple[float, str | None]:
    """TTFT in seconds, and an error message or None."""
    started = time.perf_counter()
    ttft = 0.0
    chunks, done = 0, False
    async with session.post(target.url, data=target.body, headers=target.headers) as resp:
        if resp.status != 200:
            return 0.0, f"status {resp.status}: {(await resp.read())[:200]!r}"
        async for line in resp.content:
            if not line.startswith(b"data:"):
                continue
            if not ttft:
                ttft = time.perf_counter() - started
            if line.startswith(b"data: [DONE]"):
                done = True
            else:
                chunks += 1
    if not done:
        return ttft, "stream ended without data: [DONE]"
    if target.expect_chunks is not None and chunks != target.expect_chunks:
        return ttft, f"expected {target.expect_chunks} chunks, got {chunks}"
    return ttft, None


async def _worker(
    session: aiohttp.ClientSession,
    target: Target,
    delay_s: float,
    window: tuple[float, float],
    out: TTFTStats,
) -> None:
    count_after, end = window
    await asyncio.sleep(delay_s)
    while time.perf_counter() < end:
        started = time.perf_counter()
        try:
            ttft, error = await _one_stream(session, target)
        except aiohttp.ClientError as exc:
            ttft, error = 0.0, f"{type(exc).__name__}: {exc}"
        if error is not None:
            out.errors.append(error)
        elif started >= count_after:
            out.samples.append(ttft)


async def measure(
    target: Target, streams: int, duration_s: float, warmup_s: float, spread_s: float
) -> TTFTStats:
    """Run ``streams`` workers whose first requests are spread evenly over ``spread_s``.

    Spreading matters: streams of equal length started together stay in
    lock-step, and TTFT would then measure bursts of ``streams`` requests.
    """
    out = TTFTStats()
    connector = aiohttp.TCPConnector(limit=streams, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        now = time.perf_counter()
        window = (now + max(warmup_s, spread_s), now + max(warmup_s, spread_s) + duration_s)
        workers = [
            _worker(session, target, spread_s * i / streams, window, out) for i in range(streams)
        ]
        await asyncio.gather(*workers)
    return out


def _body(model: str) -> bytes:
    return orjson.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": "Stream a greeting to the benchmark."}],
            "max_tokens": 64,
            "stream": True,
        }
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Streaming TTFT load client")
    parser.add_argument("--url", required=True, help="full /v1/chat/completions URL")
    parser.add_argument("--model", default="mock")
    parser.add_argument("--key", default="", help="bearer key (omit for the bare mock)")
    parser.add_argument("--streams", type=int, default=50, help="concurrent streams")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=1.0, help="uncounted seconds first")
    parser.add_argument(
        "--spread", type=float, default=0.0, help="spread first requests over S seconds"
    )
    parser.add_argument("--expect-chunks", type=int, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    headers = {"content-type": "application/json"}
    if args.key:
        headers["authorization"] = f"Bearer {args.key}"
    target = Target(args.url, _body(args.model), headers, args.expect_chunks)
    started = time.perf_counter()
    warmup = max(args.warmup, args.spread)
    stats = uvloop.run(measure(target, args.streams, args.duration, warmup, args.spread))
    summary = stats.summary(time.perf_counter() - started - warmup)
    print(orjson.dumps(summary).decode())
    return 1 if stats.errors or not stats.samples else 0


if __name__ == "__main__":
    sys.exit(main())
