"""The search service under concurrent searches: when the results reach the
client, and what the summary's first token costs over the model's own.

    python bench/search_latency.py [--concurrency 50] [--rounds 4]

Starts ``interlock serve`` on the bundled config (simulator models, the local
index built from the bundled corpus at the first search) in a scratch data
directory, warms it up, then:

1. *model baseline*: ``--concurrency`` streamed chat completions at once to
   the summary's model, with a prompt of the summary's shape and size; time
   to first token (client side, from sending the request to its first
   content chunk);
2. *searches*: ``--concurrency`` workers, each ``--rounds`` searches in a
   row (distinct queries): POST, then the event stream. ``results`` is the
   time from sending the POST to the ``results`` event's arrival; ``first
   token`` the time from that arrival to the first ``summary`` event.

The issue's targets: ``results`` p95 <= 100 ms; ``first token`` over the
baseline's TTFT <= 5 ms (compared at p50 and p95). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from procs import free_port, start_service

KEY = "sk-bench-search"
QUERIES = [
    "how fast does light travel",
    "what is photosynthesis",
    "who painted the mona lisa",
    "how do volcanoes form",
    "what is the speed of sound",
    "how does the heart pump blood",
    "what causes the seasons",
    "what is a black hole",
    "how do vaccines work",
    "what is the water cycle",
    "how do airplanes fly",
    "what is dna",
]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _baseline(session: aiohttp.ClientSession, base: str, n: int) -> list[float]:
    prompt = "Question: what is light\n\nSearch results:\n" + "\n\n".join(
        f"[{i}] Title {i}\n" + "Light is electromagnetic radiation visible to the eye. " * 8
        for i in range(1, 6)
    )
    body = {
        "model": "chat-small",
        "stream": True,
        "temperature": 0,
        "max_tokens": 512,
        "messages": [{"role": "user", "content": prompt}],
    }

    async def one() -> float:
        began = time.perf_counter()
        async with session.post(f"{base}/v1/chat/completions", json=body) as response:
            async for line in response.content:
                if line.startswith(b"data: {") and b'"content"' in line:
                    first = time.perf_counter() - began
                    async for _ in response.content:
                        pass
                    return first
        raise RuntimeError("no content chunk")

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def _search(session: aiohttp.ClientSession, base: str, query: str) -> tuple[float, float]:
    began = time.perf_counter()
    async with session.post(f"{base}/api/v1/search", json={"query": query}) as response:
        if response.status != 202:
            raise RuntimeError(f"POST {response.status}: {await response.text()}")
        task = await response.json()
    results_at = first_at = None
    async with session.get(f"{base}/api/v1/search/stream/{task['task_id']}") as response:
        async for line in response.content:
            if line.startswith(b"event: results") and results_at is None:
                results_at = time.perf_counter()
            elif line.startswith(b"event: summary") and first_at is None:
                first_at = time.perf_counter()
            elif line.startswith(b"event: error"):
                raise RuntimeError("search failed")
    if results_at is None or first_at is None:
        raise RuntimeError("stream ended early")
    return (results_at - began) * 1000, (first_at - results_at) * 1000


async def run(base: str, concurrency: int, rounds: int) -> str:
    headers = {"authorization": f"Bearer {KEY}"}
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        await _search(session, base, "warm up the index")  # builds the local index
        await _baseline(session, base, concurrency)  # warm the model path
        ttft = [t * 1000 for t in await _baseline(session, base, concurrency)]

        async def worker(w: int) -> list[tuple[float, float]]:
            return [
                await _search(session, base, f"{QUERIES[(w + r) % len(QUERIES)]} {w} {r}")
                for r in range(rounds)
            ]

        rows = [
            row for rows in await asyncio.gather(*map(worker, range(concurrency))) for row in rows
        ]
    results = [r for r, _ in rows]
    first = [f for _, f in rows]
    lines = [
        f"{len(rows)} searches, {concurrency} at a time; model baseline {concurrency} streams",
        "",
        "| figure (ms) | p50 | p95 | p99 |",
        "| --- | --- | --- | --- |",
        *(
            f"| {name} | {_pct(v, 0.5):.1f} | {_pct(v, 0.95):.1f} | {_pct(v, 0.99):.1f} |"
            for name, v in (
                ("POST sent -> `results` event", results),
                ("`results` -> first `summary` event", first),
                ("model's own TTFT (direct chat stream)", ttft),
            )
        ),
        "",
        f"first token over the model's TTFT: p50 {_pct(first, 0.5) - _pct(ttft, 0.5):+.1f} ms, "
        f"p95 {_pct(first, 0.95) - _pct(ttft, 0.95):+.1f} ms; "
        f"mean results {statistics.fmean(results):.1f} ms",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="interlock-bench-search-") as scratch:
        port = free_port()
        env = {**os.environ, "INTERLOCK_DEV_KEY": KEY, "INTERLOCK_DATA_DIR": scratch}
        service = start_service(
            "gateway",
            [sys.executable, "-m", "interlock", "serve", "--port", str(port)],
            "",
            f"http://127.0.0.1:{port}",
            Path(scratch) / "gateway.log",
            env=env,
            ready_path="/health/live",
        )
        try:
            print(asyncio.run(run(service.url, args.concurrency, args.rounds)))
        finally:
            service.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
