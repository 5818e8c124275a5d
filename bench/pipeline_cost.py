"""What each pipeline stage costs: the gateway's CPU per chat completion, in process.

    .venv/bin/python bench/pipeline_cost.py [--requests 2000 --reps 15 --concurrency 32]
    py-spy record -o full.svg -- .venv/bin/python bench/pipeline_cost.py --only full

Builds six gateways through the composition root (``create_app``) in this
process, from the benchmark config of ``stand.py``: the bare proxy path
(one unlimited key, no access log, cache, guardrails or tracing), the bare
path plus one stage each (admission limits and a daily budget, the access
log, the response cache, every guardrail), and all of them together. Each
is driven through ASGI (``inprocess.py``) with ``--concurrency`` requests
in flight against bench/mock_upstream.py on loopback (a subprocess: its CPU
is not counted), with the suite's pipeline-cost request (short, cacheable,
every body different: the cache looks up, misses and fills every time).

The figure is ``time.process_time()`` per request over a run (this process's
CPU, every thread, the usage ledger's writes included), not wall time: the
machine is shared, and other load moves CPU time far less than it moves
throughput. The variants run interleaved, ``--reps`` times, the order
rotated each time, each timed run after a few untimed requests (to re-warm
the variant, and to take the budget refresh that falls due while it idles;
the refresh's cost is reported apart); each variant is compared with bare
run by run and the medians are reported. On one core CPU-bound throughput is the inverse of CPU per
request, so the full pipeline's throughput lost is ``1 - bare_cpu /
full_cpu``, judged against the issue's 30 % target. Writes
bench/results/pipeline.md. ``--only`` runs some variants and writes
nothing, for a profiler; py-spy and cProfile both sample wall time, so on a
shared core they blame whatever was running when the process was
descheduled (system calls, mostly), and py-spy counts the SQLite threads'
waits as work: read the main thread, and confirm with CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import operator
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import orjson
import uvloop

import interlock
from inprocess import InProcessApp
from interlock.admission.gate import BudgetGuard
from interlock.admission.spend import SpendTracker
from interlock.app import create_app
from interlock.config import parse_config
from interlock.store.ledger import UsageLedger
from pipeline_variants import (
    ADMISSION,
    ADMISSION_KEY,
    BARE,
    FULL,
    STAGES,
    VARIANTS,
    Variant,
    raw_config,
)
from procs import BenchError, CoreLayout, CpuMark, Service
from report import machine_info
from scenarios import CACHEABLE_BODY, UNIQUE_BODY
from stand import CHAT, WORK_DIR, mock_stats, start_plain_mock

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "pipeline.md"
TARGET_LOST = 0.30  # the issue: the full pipeline costs at most 30 % of the bare throughput
WARMUP = 256  # requests per variant before anything is timed
# How long a key's spend is cached between budget re-reads from the ledger.
BUDGET_REFRESH_S: float = inspect.signature(BudgetGuard).parameters["cache_s"].default


@dataclass
class Gateway:
    variant: Variant
    app: InProcessApp
    cpu_us: list[float] = field(default_factory=list)

    def bodies(self, count: int) -> list[bytes]:
        """``count`` request bodies no variant has sent before (the cache always misses)."""
        tag = f"{self.variant.name.replace(' ', '-')}-{secrets.token_hex(4)}"
        return [UNIQUE_BODY.replace("UNIQUE", f"{tag}-{i}").encode() for i in range(count)]

    def ledger(self) -> UsageLedger | None:
        accounting = getattr(self.app.app, "accounting", None)  # RequestContextMiddleware's
        ledger: UsageLedger | None = getattr(accounting, "ledger", None)
        return ledger

    async def drive(self, count: int, concurrency: int) -> int:
        """``count`` requests (rounded down to whole rounds), every answer checked: a 200."""
        bodies = self.bodies(count - count % concurrency)

        async def worker(mine: Sequence[bytes]) -> None:
            for body in mine:
                answer = await self.app.post(CHAT, body)
                if answer.status != 200:
                    raise BenchError(f"{self.variant.name}: {answer.status} {answer.body[:300]!r}")

        await asyncio.gather(*(worker(bodies[i::concurrency]) for i in range(concurrency)))
        return len(bodies)

    async def flush_ledger(self) -> None:
        """Write the usage rows still buffered (a run pays for its own)."""
        ledger = self.ledger()
        if ledger is not None:
            await ledger.flush()


async def run(gateway: Gateway, mock: Service, requests: int, concurrency: int) -> float:
    """CPU µs per request over ``requests`` requests (``concurrency`` in flight), after an
    untimed round trip of ``2 * concurrency``; checked: every request served by the mock.

    The untimed requests re-warm the variant after the others ran, and take the
    budget refresh that is due after its idle seconds: under steady load that
    comes once per ``BUDGET_REFRESH_S`` (reported apart, see ``budget_refresh``).
    """
    served = (await asyncio.to_thread(mock_stats, mock))["requests"]
    sent = await gateway.drive(2 * concurrency, concurrency)
    await gateway.flush_ledger()
    began = time.process_time()
    timed = await gateway.drive(requests, concurrency)
    await gateway.flush_ledger()
    cpu_s = time.process_time() - began
    served = (await asyncio.to_thread(mock_stats, mock))["requests"] - served
    if served != sent + timed:
        raise BenchError(
            f"{gateway.variant.name}: {sent + timed} answers, the mock served {served}"
        )
    return 1e6 * cpu_s / timed


async def budget_refresh(gateway: Gateway) -> tuple[int, float, float]:
    """The key's rows in the ledger today, and the CPU ms of the budget check's
    reads: its first (one SUM over the day's rows, again at rollover and every
    ``reseed_s``) and a refresh after it (only the rows since), medians of 5."""
    ledger = gateway.ledger()
    if ledger is None:
        raise BenchError(f"{gateway.variant.name}: no usage ledger")
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    rows = (await ledger.query(key_name=ADMISSION_KEY["name"], since=day))[0]["requests"]
    seeds, refreshes = [], []
    for _ in range(5):
        tracker = SpendTracker(lambda: ledger, refresh_s=0.0)
        began = time.process_time()
        await tracker.spent(ADMISSION_KEY["name"], "day", day)
        seeds.append(1e3 * (time.process_time() - began))
        began = time.process_time()
        await tracker.spent(ADMISSION_KEY["name"], "day", day)
        refreshes.append(1e3 * (time.process_time() - began))
    return rows, statistics.median(seeds), statistics.median(refreshes)


async def smoke_check(gateway: Gateway) -> None:
    """The variant does what its name says, before anything is timed."""
    v, app = gateway.variant, gateway.app
    answers = [await app.post(CHAT, CACHEABLE_BODY.encode()) for _ in range(2)]
    pii = orjson.loads(CACHEABLE_BODY)
    pii["messages"][0]["content"] = "Mail maria.lopez@example.com"
    answers.append(await app.post(CHAT, orjson.dumps(pii)))
    problems = [
        f"{a.status} {a.body[:200]!r}"
        for a in answers
        if a.status != 200 or orjson.loads(a.body).get("model") != "mock-model"
    ]
    cache = [a.headers.get(b"x-interlock-cache") for a in answers[:2]]
    if cache != ([b"miss", b"hit"] if v.cache else [None, None]):
        problems.append(f"x-interlock-cache {cache}")
    if (b"x-interlock-guardrails" in answers[2].headers) != v.guardrails:
        problems.append(f"x-interlock-guardrails {answers[2].headers}")
    if (b"x-ratelimit-limit-requests" in answers[0].headers) != v.admission:
        problems.append(f"rate-limit headers {answers[0].headers}")
    if problems:
        raise BenchError(f"{v.name}: smoke check failed: {problems}")


async def start_gateways(
    variants: Sequence[Variant], mock: Service, store: Path, log: BinaryIO, started: list[Gateway]
) -> None:
    """Each variant started (into ``started``, for the caller to stop), checked and warm."""
    key = "sk-bench-" + secrets.token_hex(12)
    for i, variant in enumerate(variants):
        raw = raw_config(variant, mock.url, f"sqlite+aiosqlite:///{store / f'records-{i}.db'}")
        config = parse_config(raw, env={"BENCH_KEY": key})
        gateway = Gateway(variant, InProcessApp(create_app(config, log_stream=log), key))
        await gateway.app.start()
        started.append(gateway)
    for gateway in started:
        await smoke_check(gateway)
        await run(gateway, mock, WARMUP, 32)  # pools open, regexes and tokenizer warm
    # As `interlock serve` does once started: what lives for the whole process
    # leaves the collector's sight.
    gc.collect()
    gc.freeze()


@dataclass
class Results:
    gateways: list[Gateway]
    concurrency: int
    budget: tuple[int, float, float] | None = None  # see ``budget_refresh``


async def measure(
    variants: Sequence[Variant], mock: Service, args: argparse.Namespace, log: BinaryIO
) -> Results:
    gateways: list[Gateway] = []
    results = Results(gateways, args.concurrency)
    with tempfile.TemporaryDirectory(prefix="pipeline-", dir=WORK_DIR) as store:
        try:
            await start_gateways(variants, mock, Path(store), log, gateways)
            for rep in range(args.reps):  # interleaved, the order rotated: drift hits all alike
                shift = rep % len(gateways)
                for gateway in gateways[shift:] + gateways[:shift]:
                    gateway.cpu_us.append(await run(gateway, mock, args.requests, args.concurrency))
                print(
                    f"-- run {rep + 1}/{args.reps}: "
                    + ", ".join(f"{g.variant.name} {g.cpu_us[-1]:.0f}" for g in gateways)
                    + " µs CPU/request",
                    flush=True,
                )
            admission = [g for g in gateways if g.variant is ADMISSION]
            if admission:
                results.budget = await budget_refresh(admission[0])
        finally:
            for gateway in gateways:
                await gateway.app.stop()
    return results


def source_state() -> str:
    """The commit of the ``interlock`` package measured, and whether its src/ had changes."""
    root = Path(interlock.__file__).resolve().parents[2]

    def git(*cmd: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *cmd], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "?"

    state = "with uncommitted changes" if git("status", "--porcelain", "--", "src") else "clean"
    return f"{git('rev-parse', '--short', 'HEAD')} (src/ {state})"


def table(gateways: Sequence[Gateway]) -> list[str]:
    """Deltas and ratios are taken run by run (each variant against bare in the
    same run), then the median: drift between runs cancels out."""
    bare = next(g for g in gateways if g.variant is BARE).cpu_us
    delta = {g.variant.name: statistics.median(map(operator.sub, g.cpu_us, bare)) for g in gateways}
    kept = {
        g.variant.name: statistics.median(map(operator.truediv, bare, g.cpu_us)) for g in gateways
    }
    added = delta[FULL.name]
    rows = [
        "| variant | what is on | CPU µs/request, median (runs' range) | vs bare | "
        "share of the full pipeline's added cost | throughput vs bare |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for g in gateways:
        v, runs = g.variant, g.cpu_us
        share = "" if v in (BARE, FULL) or added <= 0 else f"{100 * delta[v.name] / added:.0f} %"
        rows.append(
            f"| {v.name} | {v.what} | {statistics.median(runs):.0f} "
            f"({min(runs):.0f}-{max(runs):.0f}) | {delta[v.name]:+.0f} µs | {share} "
            f"| {100 * kept[v.name]:.0f} % |"
        )
    stages = sum(delta[v.name] for v in STAGES)
    lost = 1 - kept[FULL.name]
    verdict = "met" if lost <= TARGET_LOST else "MISSED"
    rows += [
        "",
        "*vs bare* is the median of the differences run by run, *throughput vs bare* the",
        "median of bare_cpu / variant_cpu run by run; a stage's share is its *vs bare* over",
        "the full pipeline's.",
        "",
        f"- The four stages on their own add {stages:.0f} µs; together they add {added:.0f} µs "
        f"(the difference, {added - stages:+.0f} µs, is interaction and noise).",
        f"- **Full vs bare: throughput lost = 1 - bare_cpu / full_cpu = {100 * lost:.1f} %** "
        f"(target ≤ {100 * TARGET_LOST:.0f} %: {verdict}).",
    ]
    return rows


def report(results: Results, info: list[tuple[str, str]], others: float) -> str:
    lines = [
        "# Pipeline cost (bench/pipeline_cost.py)",
        "",
        "What each optional stage adds to the gateway's CPU per non-streaming chat completion,",
        "against the bare proxy path. **In process and CPU-time based**: each variant is built",
        "by `create_app` and called through ASGI in this process (the HTTP server layer, uvicorn",
        "and httptools, is not included), the upstream is bench/mock_upstream.py on loopback",
        "(another process, not counted), and the figure is `time.process_time()` per request",
        "(every thread of this process: the upstream client, the ledger's SQLite writes), so other",
        "load on the shared machine moves it little. Routing, metrics, the in-flight limiter",
        "and the usage ledger are on in every variant. Same requests as the suite's pipeline",
        "scenario: short, cacheable (temperature 0), every body different. Without the HTTP",
        "layer every variant's CPU is lower by the same amount, so the throughput lost here",
        "is an upper bound on a served gateway's. The daily budget is checked against the",
        "usage ledger, re-read every 2 s (a sum over the key's rows of the day, which grow",
        "through the run): the admission figure depends on the ledger's size.",
        "",
        *(f"- {name}: {value}" for name, value in info),
        f"- Other processes on the machine: {others:.0f} % of one core on average during the run.",
        "",
        *table(results.gateways),
        *budget_lines(results),
        "",
    ]
    return "\n".join(lines)


def budget_lines(results: Results) -> list[str]:
    if results.budget is None:
        return []
    rows, seed_ms, refresh_ms = results.budget
    return [
        f"- Not in the table: the budget check's reads of the ledger. Every {BUDGET_REFRESH_S:g} s "
        f"one request per key refreshes the spend (the others use the last value): "
        f"{refresh_ms:.2f} ms of CPU, reading only the rows since the last refresh. The "
        f"first read of a period sums the day's rows ({rows:,} at the end of this run): "
        f"{seed_ms:.2f} ms. Each timed run is preceded by untimed requests that take the "
        "refresh due after the variant's idle seconds.",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000, help="requests per run")
    parser.add_argument("--reps", type=int, default=15, help="runs per variant (median kept)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    names = [v.name for v in VARIANTS]
    parser.add_argument(
        "--only", action="append", choices=names, help="run these variants (for a profiler)"
    )
    args = parser.parse_args(argv)
    started, began = time.monotonic(), CpuMark.now()
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    layout = CoreLayout.detect()
    variants = [v for v in VARIANTS if v.name in args.only] if args.only else VARIANTS
    try:
        results = measure_all(variants, layout, args)
    except BenchError as exc:
        print(f"BENCHMARK FAILED: {exc}", flush=True)
        return 1
    if args.only:
        return 0  # a partial run: the per-run lines above are its figures
    settings = (
        f"{args.reps} runs of {args.requests} requests per variant, {args.concurrency} in "
        "flight, variants interleaved (order rotated each run), median reported; uvloop"
    )
    info = [
        (name, source_state() if name == "Commit" else value)
        for name, value in machine_info(os.cpu_count() or 1, _pinning(layout), settings)
        if name != "wrk"
    ]
    text = report(results, info, CpuMark.now().others_since(began))
    RESULTS.write_text(text, encoding="utf-8")
    print("\n" + text)
    print(f"Wrote {RESULTS.relative_to(BENCH_DIR.parent)} in {time.monotonic() - started:.0f} s")
    return 0


def measure_all(
    variants: Sequence[Variant], layout: CoreLayout, args: argparse.Namespace
) -> Results:
    """The mock on the load core, this process (the gateways) on the gateway core."""
    mock = start_plain_mock(layout, "pipeline")
    try:
        if layout.gateway is not None:
            os.sched_setaffinity(0, {layout.gateway})
        with open(os.devnull, "wb") as log, asyncio.Runner(loop_factory=uvloop.new_event_loop) as r:
            return r.run(measure(variants, mock, args, log))
    finally:
        mock.stop()


def _pinning(layout: CoreLayout) -> str:
    if layout.gateway is None:
        return "none (fewer than 2 usable cores or no taskset)"
    return f"this process (the gateways) on core {layout.gateway}, the mock on core {layout.load}"


if __name__ == "__main__":
    sys.exit(main())
