"""A 10,000-request chat batch against the simulator: wall time, items/s and
CPU per item with 1 and 2 worker processes, and online latency at
concurrency 1 before and while the batch runs.

    python bench/batch_throughput.py [--items 10000] [--workers 1 2] [--queue redis|sql]

For each worker count: a gateway (``interlock serve``, its in-process worker
off) and that many ``interlock worker`` processes on one config (``0``: no
worker process, the gateway's own worker on, as ``make run`` has it): the
simulator (20 ms to the first token), Redis Streams as the queue
(``--queue redis``, the default; a scratch prefix on 127.0.0.1:6379) or the
records store's table (``--queue sql``), and as the records store SQLite (a
file) and PostgreSQL (a database of its own, dropped afterwards), in turn.
Every other setting is the shipped default (access log on, worker
concurrency 64, chunk 50).

Online latency: 200 chat completions one after another before the batch
(the baseline) and, after a 1-second settling, as many as fit while the
batch runs; client-side, from sending to the last byte. The issue's
targets: >= 1,000 items/s with 2 workers; online p50 and p95 up by <= 20 %.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from procs import Service, free_port, start_service, tree_cpu_seconds

KEY = "sk-bench-batch"
AUTH = {"Authorization": f"Bearer {KEY}"}
PG_URL = os.environ.get(
    "INTERLOCK_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("INTERLOCK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
_WORKER = [sys.executable, "-m", "interlock", "worker"]
BODY = {"model": "sim", "messages": [{"role": "user", "content": "Say something short."}]}


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _admin_pg(statement: str) -> None:
    import sqlalchemy as sa

    from interlock.store import create_engine

    engine = create_engine(PG_URL).execution_options(isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(statement))
    finally:
        await engine.dispose()


def _config(
    scratch: Path, queue: str, store_url: str, prefix: str, in_process: bool
) -> dict[str, Any]:
    return {
        "models": [
            {
                "name": "sim",
                "deployments": [
                    {
                        "id": "sim-1",
                        "provider": "simulator",
                        "params": {"ttft_ms": 20, "tokens_per_s": 5000, "max_tokens": 16},
                    }
                ],
            }
        ],
        "keys": [{"name": "bench", "key": KEY}],
        "state": {"backend": "redis", "url": REDIS_URL, "prefix": prefix},
        "store": {"url": store_url},
        "files": {"dir": str(scratch / "blobs")},
        "batch": {"queue": {"backend": queue}, "worker": {"in_process": in_process}},
    }


async def _online(session: aiohttp.ClientSession, base: str, until: Any) -> list[float]:
    latencies = []
    while not until():
        began = time.perf_counter()
        async with session.post(f"{base}/v1/chat/completions", json=BODY) as response:
            await response.read()
            assert response.status == 200, response.status
        latencies.append(time.perf_counter() - began)
    return latencies


async def _submit(session: aiohttp.ClientSession, base: str, items: int) -> str:
    lines = b"\n".join(
        orjson.dumps(
            {
                "custom_id": f"r{n}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {**BODY, "messages": [{"role": "user", "content": f"item {n}"}]},
            }
        )
        for n in range(items)
    )
    form = aiohttp.FormData()
    form.add_field("purpose", "batch")
    form.add_field("file", io.BytesIO(lines), filename="bench.jsonl")
    async with session.post(f"{base}/v1/files", data=form) as response:
        file_id = (await response.json())["id"]
    body = {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    async with session.post(f"{base}/v1/batches", json=body) as response:
        return str((await response.json())["id"])


async def _measure(base: str, items: int, processes: list[Service]) -> dict[str, Any]:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        for _ in range(50):  # warm-up
            async with session.post(f"{base}/v1/chat/completions", json=BODY) as response:
                await response.read()
        count = iter(range(200))
        baseline = await _online(session, base, lambda: next(count, None) is None)
        cpu_before = sum(tree_cpu_seconds(p.pid) for p in processes)
        began = time.perf_counter()
        batch_id = await _submit(session, base, items)
        state: dict[str, Any] = {}

        async def poll() -> None:
            while True:
                async with session.get(f"{base}/v1/batches/{batch_id}") as response:
                    batch = await response.json()
                if batch["status"] in ("completed", "failed", "expired", "cancelled"):
                    state["batch"], state["ended"] = batch, time.perf_counter()
                    return
                await asyncio.sleep(0.5)  # a client polling twice a second

        poller = asyncio.create_task(poll())
        await asyncio.sleep(1.0)  # the batch under way
        during = await _online(session, base, lambda: poller.done())
        await poller
        wall = state["ended"] - began
        cpu = sum(tree_cpu_seconds(p.pid) for p in processes) - cpu_before
    batch = state["batch"]
    return {
        "status": batch["status"],
        "completed": batch["request_counts"]["completed"],
        "wall_s": wall,
        "items_per_s": items / wall,
        "cpu_ms_per_item": 1000 * cpu / items,
        "online_base": baseline,
        "online_during": during,
    }


def _run(workers: int, items: int, queue: str, store: str) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="interlock-bench-batch-"))
    prefix = f"bench-batch-{uuid.uuid4().hex[:8]}:"
    database = f"interlock_bench_{uuid.uuid4().hex[:10]}"
    if store == "pg":
        asyncio.run(_admin_pg(f'CREATE DATABASE "{database}"'))
        store_url = PG_URL.rsplit("/", 1)[0] + f"/{database}"
    else:
        store_url = f"sqlite+aiosqlite:///{scratch / 'records.db'}"
    path = scratch / "interlock.yaml"
    # 0 workers: the gateway's own worker, as `make run` has it.
    config = _config(scratch, queue, store_url, prefix, in_process=workers == 0)
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "INTERLOCK_DATA_DIR": str(scratch)}
    port = free_port()
    started: list[Service] = []
    try:
        gateway = start_service(
            "gateway",
            [
                sys.executable,
                "-m",
                "interlock",
                "serve",
                "--config",
                str(path),
                "--port",
                str(port),
            ],
            "",
            f"http://127.0.0.1:{port}",
            scratch / "gateway.log",
            env=env,
            ready_path="/health/live",
        )
        started.append(gateway)
        for n in range(workers):
            started.append(
                start_service(
                    f"worker-{n}",
                    [*_WORKER, "--config", str(path), "--metrics-port", "-1"],
                    "Interlock worker",
                    "",
                    scratch / f"worker-{n}.log",
                    env=env,
                )
            )
        return asyncio.run(_measure(gateway.url, items, started))
    finally:
        for service in started:
            service.stop()
        if store == "pg":
            asyncio.run(_admin_pg(f'DROP DATABASE "{database}" WITH (FORCE)'))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="0: the gateway's own worker"
    )
    parser.add_argument("--queue", choices=["redis", "sql"], default="redis")
    parser.add_argument("--store", choices=["pg", "sqlite"], nargs="+", default=["sqlite", "pg"])
    args = parser.parse_args()
    rows = []
    for store, workers in [(s, w) for s in args.store for w in args.workers]:
        result = _run(workers, args.items, args.queue, store)
        base, during = result["online_base"], result["online_during"]
        p50b, p95b = statistics.median(base) * 1000, _pct(base, 0.95) * 1000
        p50d, p95d = statistics.median(during) * 1000, _pct(during, 0.95) * 1000
        rows.append(
            f"| {workers} | {args.queue} | {store} | {result['status']} "
            f"({result['completed']:,}) | {result['wall_s']:.2f} | {result['items_per_s']:,.0f} "
            f"| {result['cpu_ms_per_item']:.2f} | {p50b:.1f} / {p95b:.1f} "
            f"| {p50d:.1f} / {p95d:.1f} ({len(during)}) "
            f"| {100 * (p50d / p50b - 1):+.0f} % / {100 * (p95d / p95b - 1):+.0f} % |"
        )
    print(
        f"{args.items:,}-request chat batch, simulator (20 ms to first token), "
        f"{os.cpu_count()} CPUs\n"
    )
    print(
        "| workers | queue | store | status | wall s | items/s | CPU ms/item "
        "| online p50 / p95 ms before | during (n) | change p50 / p95 |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
