"""What each API dialect's edge costs: the gateway's CPU per request and the
latency on ``/v1/chat/completions``, ``/v1/messages`` (Anthropic) and
``/v1/responses`` (OpenAI Responses) for the same upstream and the same
question.

    .venv/bin/python bench/dialects_cost.py [--requests 2000 --reps 9 --concurrency 32]
        [--served-seconds 4 --served-reps 9] [--quick]

Each route gets the same short question, every body different (no cache
hit), unary and streamed (bench/mock_upstream.py on loopback streams 20
chunks; its CPU is not counted). ``/v1/responses`` runs twice: with
``store`` at its default (true: each response is written to the records
store) and with ``store: false``. The gateway runs with the shipped
defaults (access log on, usage ledger on, the default SQLite records store;
only the mock's models and one key added). Two measurements:

- **Served** (the target): ``interlock serve`` as a user runs it (uvicorn,
  HTTP, its own process pinned to a core), loaded by wrk at ``--concurrency``
  connections for ``--served-seconds`` per route; the figures are the
  gateway process's CPU (``/proc``, every thread) per request and wrk's
  median latency, the routes interleaved ``--served-reps`` times.
- **In process** (stricter): the app driven through ASGI in this process
  (``inprocess.py``), ``time.process_time()`` per request, routes
  interleaved ``--reps`` times. It leaves out the HTTP server's work, which
  every route shares, so the same edge cost is a larger share here.

Each figure is the median of its runs; each "vs chat" is the median of
the runs' own ratios (a run measures every route back to back, so its ratio
compares measurements minutes apart at most: on a shared virtual machine
whose speed drifts by tens of percent from minute to minute, that pairing
is what makes the ratio repeatable). Target (the issue): each dialect within
15 % of ``/v1/chat/completions`` in CPU per request and latency, served.
Writes bench/results/dialects.md (``--quick``: bench/.work/dialects-quick.md;
``--out``: there).
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import orjson
import uvloop

from inprocess import InProcessApp
from interlock.app import create_app
from interlock.config import parse_config
from interlock.server import settle_heap
from loadgen import ensure_wrk, run_wrk
from procs import BenchError, CoreLayout, Service, cpu_seconds
from stand import (
    WORK_DIR,
    GatewayOptions,
    gateway_config,
    start_gateway,
    start_plain_mock,
    stop_gateway,
)

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "dialects.md"
TARGET = 1.15
STREAMS = (False, True)  # each route unary, then streamed
QUESTION = "Say hello to the benchmark UNIQUE."


@dataclass
class Route:
    name: str
    path: str
    body: Callable[[str, bool], dict[str, object]]
    cpu_us: dict[bool, list[float]] = field(default_factory=lambda: {False: [], True: []})
    served_cpu_us: dict[bool, list[float]] = field(default_factory=lambda: {False: [], True: []})
    served_p50_ms: dict[bool, list[float]] = field(default_factory=lambda: {False: [], True: []})


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
                for stream in STREAMS:
                    await run(app, route, stream, 256, args.concurrency)
            settle_heap()  # as `interlock serve` does once started
            for rep in range(args.reps):
                for route, stream in _interleaved(rep):
                    cpu = await run(app, route, stream, args.requests, args.concurrency)
                    route.cpu_us[stream].append(cpu)
                _progress(f"run {rep + 1}/{args.reps}", lambda r: r.cpu_us)
        finally:
            await app.stop()


def _interleaved(rep: int) -> list[tuple[Route, bool]]:
    """One run's order: every route unary then streamed, the routes rotated by ``rep``."""
    shift = rep % len(ROUTES)
    return [(route, stream) for route in ROUTES[shift:] + ROUTES[:shift] for stream in STREAMS]


def _progress(what: str, samples: Callable[[Route], dict[bool, list[float]]]) -> None:
    figures = ", ".join(f"{r.name} {samples(r)[STREAMS[0]][-1]:.0f}" for r in ROUTES)
    print(f"-- {what}: {figures}", flush=True)


def served(mock: Service, layout: CoreLayout, args: argparse.Namespace) -> None:
    """The served measurement: ``interlock serve`` loaded by wrk over HTTP."""
    ensure_wrk()
    key = "sk-bench-" + secrets.token_hex(12)
    options = GatewayOptions(shipped_defaults=True, label="dialects")
    gateway = start_gateway(mock, layout, key, options)
    try:

        def load(route: Route, stream: bool, seconds: float) -> tuple[float, float]:
            body = orjson.dumps(route.body(QUESTION, stream)).decode()
            env = {"BENCH_KEY": key, "BENCH_BODY": body, "BENCH_UNIQUE": secrets.token_hex(4)}
            before = cpu_seconds(gateway.pid)
            result = run_wrk(gateway.url + route.path, args.concurrency, seconds, layout, env)
            return 1e6 * (cpu_seconds(gateway.pid) - before) / result.requests, result.p50_ms

        if not args.quick:  # warm: pools, tokenizer, the store's first writes
            for route in ROUTES:
                for stream in STREAMS:
                    load(route, stream, 1)
        for rep in range(args.served_reps):
            for route, stream in _interleaved(rep):
                cpu, p50 = load(route, stream, args.served_seconds)
                route.served_cpu_us[stream].append(cpu)
                route.served_p50_ms[stream].append(p50)
            _progress(f"served run {rep + 1}/{args.served_reps}", lambda r: r.served_cpu_us)
    finally:
        stop_gateway(gateway)


def _table(
    samples: Callable[[Route], dict[bool, list[float]]], unit: str, digits: int
) -> list[str]:
    chat = ROUTES[0]
    lines = [
        f"| Route | Unary {unit} | vs chat (middle half) | Streamed {unit} "
        "| vs chat (middle half) | Target |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for route in ROUTES:
        got = {s: statistics.median(samples(route)[s]) for s in (False, True)}
        ratios = {s: _paired_ratios(samples(route)[s], samples(chat)[s]) for s in (False, True)}
        ratio = {s: statistics.median(ratios[s]) for s in (False, True)}
        verdict = "—" if route is chat else ("met" if max(ratio.values()) <= TARGET else "MISSED")
        lines.append(
            f"| {route.name} (`{route.path}`) | {got[False]:.{digits}f} | "
            f"{_spread(ratios[False])} | {got[True]:.{digits}f} | {_spread(ratios[True])} "
            f"| {verdict} |"
        )
    return lines


def _paired_ratios(route: list[float], chat: list[float]) -> list[float]:
    """Each run's ratio (``route[i]`` and ``chat[i]``: one run)."""
    return [r / c for r, c in zip(route, chat, strict=True)]


def _spread(ratios: list[float]) -> str:
    """The median ratio, and the middle half of the runs' ratios (the
    quartiles): how far apart runs on this machine land."""
    median = statistics.median(ratios)
    if len(ratios) < 4:
        return f"{median:.2f}x"
    low, _, high = statistics.quantiles(ratios, n=4)
    return f"{median:.2f}x ({low:.2f} to {high:.2f})"


def report(args: argparse.Namespace, layout: CoreLayout) -> str:
    lines = [
        "# Dialects: CPU per request and latency against /v1/chat/completions",
        "",
        f"One gateway with the shipped defaults (access log, usage ledger, SQLite records "
        f"store), bench/mock_upstream.py on loopback (streams: 20 chunks), every body "
        f"different. Python {platform.python_version()}, {os.cpu_count()} CPUs; "
        f"{layout.describe()}. Command: `.venv/bin/python bench/dialects_cost.py`. "
        f"Target: each dialect at most {TARGET:.2f}x chat completions, served.",
        "",
        f"## Served: `interlock serve`, wrk at {args.concurrency} connections over HTTP",
        "",
        f"{args.served_seconds:g} s per route and mode, median of {args.served_reps} "
        "interleaved runs; vs chat: the median of each run's own ratio, and in brackets "
        "the middle half of those ratios (a verdict near the target can flip between "
        "runs inside that range). CPU: the gateway process's, every thread, per request.",
        "",
        *_table(lambda r: r.served_cpu_us, "CPU/request (µs)", 0),
        "",
        *_table(lambda r: r.served_p50_ms, "p50 latency (ms)", 2),
        "",
        "## In process (stricter: no HTTP server work in the figure)",
        "",
        f"{args.requests} requests per run at concurrency {args.concurrency} through ASGI, "
        f"median of {args.reps} interleaved runs (vs chat: of each run's own ratio); "
        "`time.process_time()` per request.",
        "",
        *_table(lambda r: r.cpu_us, "CPU/request (µs)", 0),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--served-seconds", type=float, default=4.0)
    parser.add_argument("--served-reps", type=int, default=9)
    parser.add_argument(
        "--quick", action="store_true", help="256 requests, 2 reps; served: 1 s, 1 rep, no warm-up"
    )
    parser.add_argument("--out", type=Path, help="the report (default: bench/results/dialects.md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.reps = 256, 2
        args.served_seconds, args.served_reps = 1.0, 1
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    layout = CoreLayout.detect()
    mock = start_plain_mock(layout, "dialects")
    try:
        # The access log is on (shipped default), written where nobody waits on it.
        served(mock, layout, args)
        with open(os.devnull, "wb") as log:
            uvloop.run(measure(mock.url, args, log))
    finally:
        mock.stop()
    text = report(args, layout)
    out = args.out or (WORK_DIR / "dialects-quick.md" if args.quick else RESULTS)
    out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
