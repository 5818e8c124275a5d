"""One gateway process against ``interlock serve --workers 2``, served, on
this machine's cores: throughput and CPU per request for each.

    .venv/bin/python bench/workers_cost.py [--seconds 8 --reps 5 --concurrency 64]
        [--redis redis://127.0.0.1:6379/13] [--quick] [--out PATH]

Three gateways, each ``interlock serve`` with the shipped defaults (access
log, usage ledger, SQLite records store) over bench/mock_upstream.py:

* ``1 process, memory state``: the embedded default, for reference;
* ``1 process, Redis state``: what ``--workers`` needs, on one process;
* ``2 workers, Redis state``: ``--workers 2``.

Nothing is pinned: the gateway's processes, the mock upstream and wrk share
every core, as they would on a small machine. wrk loads each with
``--concurrency`` connections for ``--seconds``, every body different (the
cache would not help); the variants run interleaved ``--reps`` times and
medians are reported. CPU per request is the gateway's whole process tree
(supervisor and workers, ``/proc``) over the requests wrk counted; the
machine's other CPU (mock, wrk) is reported beside it, so the split of the
cores is visible. Writes bench/results/workers.md (``--quick``:
bench/.work/workers-quick.md; ``--out``: there).
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
import yaml

from loadgen import ensure_wrk, run_wrk
from procs import (
    BenchError,
    CoreLayout,
    Service,
    cpu_seconds,
    free_port,
    start_service,
    tree_cpu_seconds,
)
from stand import CHAT, WORK_DIR, GatewayOptions, gateway_config, start_plain_mock, stop_gateway
from state_cost import RedisCpu

BENCH_DIR = Path(__file__).resolve().parent
RESULTS = BENCH_DIR / "results" / "workers.md"
QUESTION = '{"model":"mock","messages":[{"role":"user","content":"UNIQUE what is a gateway?"}]}'


@dataclass
class Variant:
    name: str
    workers: int
    state: dict[str, str]
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    other_cpu_us: list[float] = field(default_factory=list)
    redis_cpu_us: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)

    def forget(self) -> None:
        for samples in (self.rps, self.cpu_us, self.other_cpu_us, self.redis_cpu_us):
            samples.clear()
        self.p50_ms.clear()
        self.p99_ms.clear()


def start(variant: Variant, mock: Service, key: str, layout: CoreLayout) -> Service:
    tag = f"workers-{variant.workers}-{variant.state['backend']}"
    config = gateway_config(mock.url, GatewayOptions(shipped_defaults=True)) | {
        "state": variant.state
    }
    path = WORK_DIR / f"gateway-{tag}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    interlock = str(Path(sys.executable).parent / "interlock")
    cmd = [interlock, "serve", "--config", str(path), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--workers", str(variant.workers)]
    # Its own fresh working directory: the default ./.interlock/ store, not shared.
    cwd = WORK_DIR / f"gateway-{tag}"
    shutil.rmtree(cwd, ignore_errors=True)
    cwd.mkdir(parents=True)
    env = {**os.environ, "BENCH_KEY": key}
    env.pop("INTERLOCK_DATA_DIR", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    url = f"http://127.0.0.1:{port}"
    log = WORK_DIR / f"gateway-{tag}.log"
    return start_service("gateway", cmd, "Interlock listening on", url, log, env, cwd=cwd)


def load(
    variant: Variant,
    gateway: Service,
    mock: Service,
    key: str,
    args: argparse.Namespace,
    layout: CoreLayout,
    redis_cpu: RedisCpu,
) -> None:
    env = {"BENCH_KEY": key, "BENCH_BODY": QUESTION, "BENCH_UNIQUE": secrets.token_hex(4)}
    gateway_before = tree_cpu_seconds(gateway.pid)
    mock_before = cpu_seconds(mock.pid)
    redis_before = redis_cpu.seconds()
    children_before = _children_cpu()
    result = run_wrk(gateway.url + CHAT, args.concurrency, args.seconds, layout, env)
    gateway_cpu = tree_cpu_seconds(gateway.pid) - gateway_before
    other = cpu_seconds(mock.pid) - mock_before + _children_cpu() - children_before
    variant.redis_cpu_us.append(1e6 * (redis_cpu.seconds() - redis_before) / result.requests)
    variant.rps.append(result.rps)
    variant.cpu_us.append(1e6 * gateway_cpu / result.requests)
    variant.other_cpu_us.append(1e6 * other / result.requests)
    variant.p50_ms.append(result.p50_ms)
    variant.p99_ms.append(result.p99_ms)


def _children_cpu() -> float:
    """Finished children's CPU (wrk's, once it has exited)."""
    times = os.times()
    return times.children_user + times.children_system


def measure(variants: list[Variant], args: argparse.Namespace) -> None:
    redis_cpu = RedisCpu(args.redis)
    layout = CoreLayout(None, None)  # nothing pinned: every process shares every core
    ensure_wrk()
    mock = start_plain_mock(layout, "workers")
    key = "sk-bench-" + secrets.token_hex(12)
    gateways: dict[str, Service] = {}
    try:
        for variant in variants:
            gateways[variant.name] = start(variant, mock, key, layout)
        for variant in variants:  # warm: pools, the store's first writes, every worker
            load(variant, gateways[variant.name], mock, key, _warm(args), layout, redis_cpu)
            variant.forget()
        for rep in range(args.reps):
            shift = rep % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                load(variant, gateways[variant.name], mock, key, args, layout, redis_cpu)
            figures = ", ".join(f"{v.name} {v.rps[-1]:.0f} req/s" for v in variants)
            print(f"-- run {rep + 1}/{args.reps}: {figures}", flush=True)
    finally:
        for gateway in gateways.values():
            stop_gateway(gateway)
        mock.stop()


def _warm(args: argparse.Namespace) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(args), "seconds": 1 if args.quick else 2})


def report(variants: list[Variant], args: argparse.Namespace) -> str:
    base = statistics.median(variants[1].rps)
    lines = [
        "# One gateway process against `--workers 2`",
        "",
        f"`interlock serve` with the shipped defaults over bench/mock_upstream.py (unary, "
        f"every body different), wrk at {args.concurrency} connections for "
        f"{args.seconds:g} s, median of {args.reps} interleaved runs. Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, nothing pinned: the gateway, "
        "the mock upstream and wrk share every core. Command: "
        "`.venv/bin/python bench/workers_cost.py`.",
        "",
        "| Gateway | Throughput (req/s) | vs 1 process, Redis | Gateway CPU/request (µs) "
        "| Redis CPU/request (µs) | Mock + wrk CPU/request (µs) | p50 (ms) | p99 (ms) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for v in variants:
        rps = statistics.median(v.rps)
        lines.append(
            f"| {v.name} | {rps:,.0f} | {rps / base:.2f}x | "
            f"{statistics.median(v.cpu_us):.0f} | {statistics.median(v.redis_cpu_us):.0f} | "
            f"{statistics.median(v.other_cpu_us):.0f} | "
            f"{statistics.median(v.p50_ms):.2f} | {statistics.median(v.p99_ms):.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"))
    parser.add_argument("--quick", action="store_true", help="2 s runs, 1 rep")
    parser.add_argument("--out", type=Path, help="the report (default: bench/results/workers.md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.reps = 2.0, 1
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    prefix = f"bench-workers-{secrets.token_hex(4)}:"

    def redis_state(name: str) -> dict[str, str]:  # its own keys: no limit shared
        return {"backend": "redis", "url": args.redis, "prefix": f"{prefix}{name}:"}

    variants = [
        Variant("1 process, memory state", 1, {"backend": "memory"}),
        Variant("1 process, Redis state", 1, redis_state("one")),
        Variant("`--workers 2`, Redis state", 2, redis_state("two")),
    ]
    started = time.monotonic()
    try:
        measure(variants, args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        with redis.Redis.from_url(args.redis) as client:
            stale = list(client.scan_iter(match=f"{prefix}*"))
            if stale:
                client.delete(*stale)
    text = report(variants, args)
    out = args.out or (WORK_DIR / "workers-quick.md" if args.quick else RESULTS)
    out.write_text(text)
    print(text)
    print(f"({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
