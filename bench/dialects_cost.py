"""What each API dialect's edge costs: the gateway's CPU per request on
``/v1/chat/completions``, ``/v1/messages`` (Anthropic) and ``/v1/responses``
(OpenAI Responses) for the same upstream and the same question, in process.

    .venv/bin/python bench/dialects_cost.py [--requests 2000 --reps 9 --concurrency 32] [--quick]

One gateway built by ``create_app`` with the shipped defaults (access log
on, usage ledger on, the default SQLite records store; only the mock's
models and one key added), driven through ASGI (``inprocess.py``) against
bench/mock_upstream.py on loopback (a subprocess: its CPU is not counted).
Each route gets the same short question, every body different, unary and
streamed (the mock streams 20 chunks). ``/v1/responses`` runs twice: with
``store`` at its default (true: each response is written to the records
store) and with ``store: false``. The figure is ``time.process_time()`` per
request (this process, every thread: the ledger's and the store's writes
included); the routes run interleaved ``--reps`` times, the order rotated,
and the medians are compared with chat's. Target (the issue): each dialect
within 15 % of ``/v1/chat/completions``. Writes bench/results/dialects.md
(``--quick``: bench/.work/dialects-quick.md).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import orjson
import uvloop

from inprocess import InProcessApp
from interlock.app import create_app
from interlock.config import parse_config
from procs import BenchError, CoreLayout, free_port, start_service
from stand import WORK_DIR, GatewayOptions, gateway_config

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "dialects.md"
TARGET = 1.15
QUESTION = "Say hello to the benchmark UNIQUE."


@dataclass
class Route:
    name: str
    path: str
    body: Callable[[str, bool], dict[str, object]]
    cpu_us: dict[bool, list[float]] = field(default_factory=lambda: {False: [], True: []})


def _chat(text: str, stream: bool) -> dict[str, object]:
    return {
        "model": "mock",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 16,
        "temperature": 0,
        "stream": stream,
    }


def _messages(text: str, stream: bool) -> dict[str, object]:
    return {
        "model": "mock",
        "max_tokens": 16,
        "temperature": 0,
        "messages": [{"role": "user", "content": text}],
        "stream": stream,
    }


def _responses(store: bool) -> Callable[[str, bool], dict[str, object]]:
    def body(text: str, stream: bool) -> dict[str, object]:
        return {
            "model": "mock",
            "input": text,
            "max_output_tokens": 16,
            "temperature": 0,
            "stream": stream,
            "store": store,
        }

    return body


ROUTES = [
    Route("chat completions", "/v1/chat/completions", _chat),
    Route("anthropic messages", "/v1/messages", _messages),
    Route("responses (store)", "/v1/responses", _responses(True)),
    Route("responses (store: false)", "/v1/responses", _responses(False)),
]


async def run(app: InProcessApp, route: Route, stream: bool, count: int, concurrency: int) -> float:
    """CPU µs per request over ``count`` requests, ``concurrency`` in flight, each a 200."""
    tag = secrets.token_hex(4)
    bodies = [
        orjson.dumps(route.body(QUESTION.replace("UNIQUE", f"{tag}-{i}"), stream))
        for i in range(count - count % concurrency)
    ]

    async def worker(mine: list[bytes]) -> None:
        for body in mine:
            answer = await app.post(route.path, body)
            if answer.status != 200:
                raise BenchError(f"{route.name}: {answer.status} {answer.body[:300]!r}")

    started = time.process_time()
    await asyncio.gather(*(worker(bodies[i::concurrency]) for i in range(concurrency)))
    return 1e6 * (time.process_time() - started) / len(bodies)


async def measure(mock_url: str, args: argparse.Namespace, log: BinaryIO) -> None:
    key = "sk-bench-" + secrets.token_hex(12)
    with tempfile.TemporaryDirectory(prefix="dialects-", dir=WORK_DIR) as store:
        raw = gateway_config(mock_url, GatewayOptions(shipped_defaults=True))
        raw["store"] = {"url": f"sqlite+aiosqlite:///{Path(store) / 'records.db'}"}
        config = parse_config(raw, env={"BENCH_KEY": key})
        app = InProcessApp(create_app(config, log_stream=log), key)
        await app.start()
        try:
            for route in ROUTES:  # warm: pools, tokenizer, the store's first writes
                for stream in (False, True):
                    await run(app, route, stream, 256, args.concurrency)
            gc.collect()
            gc.freeze()
            for rep in range(args.reps):
                shift = rep % len(ROUTES)
                for route in ROUTES[shift:] + ROUTES[:shift]:
                    for stream in (False, True):
                        cpu = await run(app, route, stream, args.requests, args.concurrency)
                        route.cpu_us[stream].append(cpu)
                print(
                    f"-- run {rep + 1}/{args.reps}: "
                    + ", ".join(f"{r.name} {r.cpu_us[False][-1]:.0f}" for r in ROUTES),
                    flush=True,
                )
        finally:
            await app.stop()


def report(args: argparse.Namespace) -> str:
    chat = ROUTES[0]
    lines = [
        "# Dialects: CPU per request against /v1/chat/completions",
        "",
        f"{args.requests} requests per run at concurrency {args.concurrency}, median of "
        f"{args.reps} interleaved runs; one gateway with the shipped defaults in process "
        f"(access log, usage ledger, SQLite records store), bench/mock_upstream.py on "
        f"loopback (streams: 20 chunks). Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs. Command: `.venv/bin/python bench/dialects_cost.py`. "
        f"Target: each dialect at most {TARGET:.2f}x chat completions.",
        "",
        "| Route | Unary CPU/request | vs chat | Streamed CPU/request | vs chat | Target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    base = {s: statistics.median(chat.cpu_us[s]) for s in (False, True)}
    for route in ROUTES:
        got = {s: statistics.median(route.cpu_us[s]) for s in (False, True)}
        ratio = {s: got[s] / base[s] for s in (False, True)}
        verdict = "—" if route is chat else ("met" if max(ratio.values()) <= TARGET else "MISSED")
        lines.append(
            f"| {route.name} (`{route.path}`) | {got[False]:.0f} µs | {ratio[False]:.2f}x | "
            f"{got[True]:.0f} µs | {ratio[True]:.2f}x | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="256 requests, 2 reps")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.reps = 256, 2
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [sys.executable, str(BENCH_DIR / "mock_upstream.py"), "--port", str(port)]
    layout = CoreLayout.detect()
    mock = start_service(
        "mock upstream",
        layout.pinned(cmd, layout.load),
        "listening on",
        f"http://127.0.0.1:{port}",
        WORK_DIR / "mock-dialects.log",
    )
    try:
        # The access log is on (shipped default), written where nobody waits on it.
        with open(os.devnull, "wb") as log:
            uvloop.run(measure(mock.url, args, log))
    finally:
        mock.stop()
    text = report(args)
    out = WORK_DIR / "dialects-quick.md" if args.quick else RESULTS
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
