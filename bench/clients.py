"""Upstream HTTP client cost: Interlock's own (h1) vs aiohttp vs httpx, CPU per
request at concurrency 32.

The gateway's upstream client sits on the hot path of every call; this is the
measurement behind writing our own (docs/decisions/0008-own-upstream-client.md).
Run: ``python bench/clients.py`` (starts bench/mock_upstream.py itself).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import orjson
import uvloop

from interlock.config import TimeoutConfig
from interlock.providers.http import UpstreamClient

PORT = 8301
URL = f"http://127.0.0.1:{PORT}/v1/chat/completions"
BODY = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
HEADERS = {"content-type": "application/json"}
REQUESTS, CONCURRENCY, WARMUP = 4000, 32, 200


async def _cpu_per_request(one: Callable[[], Awaitable[None]]) -> float:
    for _ in range(WARMUP):
        await one()

    async def worker() -> None:
        for _ in range(REQUESTS // CONCURRENCY):
            await one()

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return (time.process_time() - started) / REQUESTS * 1e6


async def h1_cost() -> float:
    """Through UpstreamClient, as the adapters call it (JSON in, parsed JSON out)."""
    client = UpstreamClient("bench", TimeoutConfig(), 2 * CONCURRENCY)
    await client.start()
    body = orjson.loads(BODY)

    async def one() -> None:
        await client.request_json("POST", URL, body)

    try:
        return await _cpu_per_request(one)
    finally:
        await client.aclose()


async def aiohttp_cost() -> float:
    async with aiohttp.ClientSession() as session:

        async def one() -> None:
            async with session.post(URL, data=BODY, headers=HEADERS) as response:
                await response.read()

        return await _cpu_per_request(one)


async def httpx_cost() -> float:
    limits = httpx.Limits(max_connections=2 * CONCURRENCY)
    async with httpx.AsyncClient(limits=limits) as client:

        async def one() -> None:
            response = await client.post(URL, content=BODY, headers=HEADERS)
            await response.aread()

        return await _cpu_per_request(one)


def main() -> int:
    mock = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("mock_upstream.py")), "--port", str(PORT)],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(1.0)
        results: dict[str, list[float]] = {"h1": [], "aiohttp": [], "httpx": []}
        for _ in range(3):
            results["h1"].append(uvloop.run(h1_cost()))
            results["aiohttp"].append(uvloop.run(aiohttp_cost()))
            results["httpx"].append(uvloop.run(httpx_cost()))
        print(f"| client | CPU µs per request, c={CONCURRENCY} (median of 3) |")
        print("| --- | --- |")
        for name, runs in results.items():
            module = sys.modules.get(name)
            version = getattr(module, "__version__", "") if module else "(interlock)"
            print(f"| {name} {version} | {sorted(runs)[1]:.0f} |")
    finally:
        mock.terminate()
        mock.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
