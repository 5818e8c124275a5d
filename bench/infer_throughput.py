"""Tensor inference (``POST /v1/infer``) at concurrency 32, and the model
registry's cost per request.

    .venv/bin/python -m bench.infer_throughput [--duration 15] [--concurrency 32] [--quick]

One run starts the fake KServe v2 server (``tests.support.fake_kserve``) and
one ``interlock serve`` with shipped defaults apart from its models and keys
(an API key and ``server.admin_key``), then measures, closed loop on
keep-alive connections:

1. ``tiny-batched``: the bundled ONNX model, dynamic batching on (defaults);
2. ``tiny-unbatched``: the same with ``max_wait_ms: 0`` (batching off);
3. ``tiny-kserve``: the ``kserve`` adapter against the fake v2 server;
4. ``tiny-registered``: the ONNX model registered through ``POST
   /admin/models`` (status live) instead of the config file.

Each run: a bounded wait for a quiet machine, a discarded warm-up, then
``--duration`` seconds measured: requests/s, p50/p95/p99, errors, the
gateway's CPU per request and the load generator's CPU. The load generator
is wrk (one thread, ``bench/post.lua``) when installed, else a closed-loop
aiohttp client in this process (``--client``). Then, every process stopped,
a micro-benchmark times the per-request routing work of a registry group
(``Rollout``) and a config group (the default ``weighted`` strategy) in
ns/op: ``Router.run`` with an attempt that returns at once, and ``choose``.
Targets for (1)-(3): >= 1,000 requests/s and p95 < 100 ms. Prints Markdown,
writes it to ``bench/results/infer-throughput.md`` (``--quick``:
``<work-dir>/quick.md``) and the figures to ``<work-dir>/infer-throughput.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
import yaml
from bench.procs import BenchError, Service, free_port, start_service, tree_cpu_seconds

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
KEY, ADMIN_KEY = "sk-bench-infer", "sk-bench-infer-admin"
TARGET_RPS, TARGET_P95_MS = 1000.0, 100.0
FEATURES = [0.1, 0.2, 0.3, 0.4]  # one row of tiny-classifier's input
QUIET_PCT = 10.0  # other processes under this share of one core: a quiet machine
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_BATCH_METRIC = re.compile(
    r'^interlock_infer_batch_size_(sum|count)\{deployment="([^"]+)"\} (\S+)$'
)
_WRK_ERRORS = ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts")


@dataclass(frozen=True)
class Scenario:
    number: int
    title: str
    model: str
    batch_deployment: str | None  # whose batch-size histogram to read
    targeted: bool = True


SCENARIOS = (
    Scenario(1, "ONNX, dynamic batching on (defaults)", "tiny-batched", "onnx-batched"),
    Scenario(2, "ONNX, batching off (`max_wait_ms: 0`)", "tiny-unbatched", "onnx-unbatched"),
    Scenario(3, "kserve adapter -> fake v2 server", "tiny-kserve", None),
    Scenario(4, "ONNX via the registry (admin API)", "tiny-registered", "tiny-registered@1", False),
)
RUN_ORDER = (1, 4, 2, 3)  # (1) and (4) back to back, so drift hits the pair alike


@dataclass(frozen=True)
class Load:
    requests: int
    errors: int
    wall_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Cpu:
    """CPU seconds: the gateway, the fake server, this driver, its reaped
    children (wrk) and the whole machine's busy time."""

    gateway: float
    upstream: float
    driver: float
    children: float
    machine: float

    @classmethod
    def now(cls, gateway: Service, fake: Service) -> Cpu:
        me, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
        stat = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
        busy = (sum(stat) - stat[3] - stat[4]) / os.sysconf("SC_CLK_TCK")  # not idle, iowait
        return cls(
            tree_cpu_seconds(gateway.pid),
            tree_cpu_seconds(fake.pid),
            me.ru_utime + me.ru_stime,
            kids.ru_utime + kids.ru_stime,
            busy,
        )

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    @property
    def others(self) -> float:
        """Other processes on the machine (of a difference of two readings)."""
        ours = self.gateway + self.upstream + self.driver + self.children
        return max(self.machine - ours, 0.0)


@dataclass(frozen=True)
class Figures:
    """One measured run of one scenario; CPU shares in % of one core."""

    scenario: int
    load: Load
    gateway_us: float  # gateway CPU per request
    gateway_pct: float
    upstream_pct: float  # the fake kserve server
    client_pct: float
    others_pct: float  # other processes, during the run
    others_before_pct: float  # the same, in the last second before the warm-up
    batch_rows: float | None  # mean rows per model run

    @property
    def rps(self) -> float:
        return self.load.requests / self.load.wall_s


def _body(model: str) -> str:
    features = {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": FEATURES}
    return json.dumps({"model": model, "inputs": [features]}, separators=(",", ":"))


def _http(url: str, body: str | None = None, key: str = KEY) -> tuple[int, str]:
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    request = urllib.request.Request(url, body.encode() if body else None, headers)
    try:
        with _NO_PROXY.open(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


# --- load generators -------------------------------------------------------------------------


def _wrk(url: str, body: str, concurrency: int, duration_s: float) -> Load:
    seconds = max(1, round(duration_s))  # wrk takes whole seconds
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "5s"]
    cmd += ["-s", str(BENCH_DIR / "post.lua"), url]
    env = {**os.environ, "BENCH_KEY": KEY, "BENCH_BODY": body}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 30)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk against {url} did not finish in time") from exc
    line = next((s for s in done.stdout.splitlines() if s.startswith("BENCH_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk exited {done.returncode}:\n{done.stdout}{done.stderr}")
    result = json.loads(line.removeprefix("BENCH_RESULT "))
    return Load(
        requests=result["requests"],
        errors=sum(result[kind] for kind in _WRK_ERRORS),
        wall_s=result["duration_us"] / 1e6,
        p50_ms=result["p50_us"] / 1000,
        p95_ms=result["cdf_us"][94] / 1000,  # percentiles 1..99, then 99.9
        p99_ms=result["p99_us"] / 1000,
    )


class _Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors = 0


async def _closed_loop(url: str, body: str, concurrency: int, duration_s: float) -> Load:
    """``concurrency`` workers, each sending its next request once its answer is read."""
    tally, payload = _Tally(), body.encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=5),
        headers=headers,
    ) as session:

        async def worker(deadline: float) -> None:
            while (began := time.perf_counter()) < deadline:
                try:
                    async with session.post(url, data=payload) as response:
                        await response.read()
                        ok = response.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                if ok:
                    tally.latencies.append(time.perf_counter() - began)
                else:
                    tally.errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker(started + duration_s) for _ in range(concurrency)))
        wall = time.perf_counter() - started
    ordered = sorted(tally.latencies) or [0.0]

    def ms(q: float) -> float:
        return 1000 * ordered[round(q * (len(ordered) - 1))]

    return Load(len(tally.latencies), tally.errors, wall, ms(0.50), ms(0.95), ms(0.99))


def _load(client: str, url: str, body: str, concurrency: int, duration_s: float) -> Load:
    if client == "wrk":
        return _wrk(url, body, concurrency, duration_s)
    return uvloop.run(_closed_loop(url, body, concurrency, duration_s))


# --- the processes and one measured run ------------------------------------------------------


def _gateway_config(kserve_url: str) -> dict[str, Any]:
    def onnx(name: str, deployment: str, **params: Any) -> dict[str, Any]:
        found = {"id": deployment, "provider": "onnx", "model": "tiny-classifier"}
        return {"name": name, "deployments": [found | ({"params": params} if params else {})]}

    kserve = {"id": "kserve-fake", "provider": "kserve", "model": "tiny-classifier"}
    return {
        "models": [
            onnx("tiny-batched", "onnx-batched"),
            onnx("tiny-unbatched", "onnx-unbatched", max_wait_ms=0),
            {"name": "tiny-kserve", "deployments": [kserve | {"base_url": kserve_url}]},
        ],
        "keys": [{"name": "bench", "key": KEY}],
        "server": {"admin_key": ADMIN_KEY},
    }


def _start(work: Path) -> tuple[Service, Service]:
    """The fake v2 server, then the gateway in a fresh directory of its own, so its
    store is the default ``./.interlock/interlock.db`` and starts empty."""
    port = free_port()
    fake_cmd = [sys.executable, "-m", "tests.support.fake_kserve", "--port", str(port)]
    fake = start_service(
        "fake kserve", fake_cmd, "fake kserve listening on", f"http://127.0.0.1:{port}",
        work / "kserve.log", cwd=REPO,
    )  # fmt: skip
    config = work / "gateway.yaml"
    config.write_text(yaml.safe_dump(_gateway_config(fake.url), sort_keys=False))
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "interlock"), "serve", "--config", str(config)]
    cmd += ["--host", "127.0.0.1", "--port", str(port)]
    env = {k: v for k, v in os.environ.items() if k != "INTERLOCK_DATA_DIR"}
    shutil.rmtree(work / "gateway", ignore_errors=True)
    (work / "gateway").mkdir()
    try:
        gateway = start_service(
            "gateway", cmd, "Interlock listening on", f"http://127.0.0.1:{port}",
            work / "gateway.log", env, timeout_s=60, cwd=work / "gateway",
        )  # fmt: skip
    except BenchError:
        fake.stop()
        raise
    return fake, gateway


def _register_and_check(gateway: Service) -> None:
    version = {
        "name": "tiny-registered", "version": "1", "kind": "tensor", "provider": "onnx",
        "upstream_model": "tiny-classifier", "status": "live",
    }  # fmt: skip
    status, text = _http(gateway.url + "/admin/models", json.dumps(version), ADMIN_KEY)
    if status != 201:
        raise BenchError(f"registering tiny-registered failed: {status} {text}")
    for scenario in SCENARIOS:
        status, text = _http(gateway.url + "/v1/infer", _body(scenario.model))
        answer = json.loads(text) if status == 200 else {}
        outputs = answer.get("outputs") or [{}]
        if answer.get("model_name") != scenario.model or outputs[0].get("shape") != [1, 3]:
            raise BenchError(f"smoke check of {scenario.model} failed: {status} {text}")


def _batch_totals(gateway: Service, deployment: str) -> tuple[float, float]:
    """(sum, count) of the deployment's batch-size histogram."""
    status, text = _http(gateway.url + "/metrics")
    totals = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines() if status == 200 else ():
        found = _BATCH_METRIC.match(line)
        if found and found[2] == deployment:
            totals[found[1]] = float(found[3])
    return totals["sum"], totals["count"]


def _wait_quiet(fake: Service, gateway: Service, patience_s: float) -> float:
    """Wait (bounded) until other processes use under ``QUIET_PCT`` % of one core
    over a second; returns their last share."""
    deadline = time.monotonic() + patience_s
    while True:
        before = Cpu.now(gateway, fake)
        time.sleep(1.0)
        others = 100 * (Cpu.now(gateway, fake) - before).others
        if others < QUIET_PCT or time.monotonic() >= deadline:
            return others
        print(f"others use {others:.0f} % of a core; waiting ...", file=sys.stderr, flush=True)


def _measure(scenario: Scenario, fake: Service, gateway: Service, args: Any) -> Figures:
    url, body = gateway.url + "/v1/infer", _body(scenario.model)
    quiet = _wait_quiet(fake, gateway, args.patience)
    _load(args.client, url, body, args.concurrency, args.warmup)  # discarded
    batched = scenario.batch_deployment
    rows_before = _batch_totals(gateway, batched) if batched else (0.0, 0.0)
    before = Cpu.now(gateway, fake)
    load = _load(args.client, url, body, args.concurrency, args.duration)
    cpu = Cpu.now(gateway, fake) - before
    rows, runs = (0.0, 0.0)
    if batched:
        after = _batch_totals(gateway, batched)
        rows, runs = after[0] - rows_before[0], after[1] - rows_before[1]

    def pct(seconds: float) -> float:
        return 100 * seconds / load.wall_s

    return Figures(
        scenario=scenario.number,
        load=load,
        gateway_us=1e6 * cpu.gateway / max(load.requests, 1),
        gateway_pct=pct(cpu.gateway),
        upstream_pct=pct(cpu.upstream),
        client_pct=pct(cpu.children if args.client == "wrk" else cpu.driver),
        others_pct=pct(cpu.others),
        others_before_pct=quiet,
        batch_rows=rows / runs if runs else None,
    )


def _run_http(args: Any) -> list[list[Figures]]:
    """Every scenario ``--reps`` times; in each rep in ``RUN_ORDER``, reported in order."""
    fake, gateway = _start(args.work_dir)
    reps: list[list[Figures]] = []
    try:
        _register_and_check(gateway)
        by_number = {s.number: s for s in SCENARIOS}
        for rep in range(args.reps):
            runs = {}
            for n in RUN_ORDER:
                print(f"rep {rep + 1}/{args.reps}: ({n}) ...", file=sys.stderr, flush=True)
                runs[n] = _measure(by_number[n], fake, gateway, args)
            reps.append([runs[s.number] for s in SCENARIOS])
    finally:
        code = gateway.stop()
        fake.stop()
    if code != 0:
        raise BenchError(f"gateway exited {code} on SIGTERM:\n{gateway.log_tail()}")
    return reps


# --- the routing micro-benchmark (no HTTP) ---------------------------------------------------

Micro = dict[str, dict[str, float]]  # {"run" | "choose": {"config" | "registry": ns/op}}


async def _routing_groups() -> tuple[Any, dict[str, Any], Callable[[], Awaitable[None]]]:
    """The router, its config group and registry group for the same model, built
    by the gateway's composition code (``interlock.app``), and how to close them."""
    from interlock import app
    from interlock.config import parse_config
    from interlock.pipeline.price_book import PriceBook
    from interlock.registry.records import ModelVersion, Status
    from interlock.routing.chaos import ChaosControl
    from interlock.state import build_state_store
    from interlock.telemetry.metrics import Metrics
    from interlock.tokens import default_counter

    config = parse_config(_gateway_config("http://127.0.0.1:9"))
    rng, metrics, state = random.Random(7), Metrics(), build_state_store("memory")
    chaos = ChaosControl(config.chaos)
    make = app.provider_factory(config, default_counter(), chaos, None, metrics)
    providers = app.build_providers(config, make)
    telemetry = app.build_telemetry(config, providers, None, metrics=metrics)
    prices = PriceBook(None)
    router = app.build_router(config, providers, telemetry, state, rng, prices)
    registry = app.build_registry(config, router, telemetry, state, make, rng, prices)
    now = time.time()
    version = ModelVersion(
        "tiny-registered", "1", "tensor", "onnx", None, "tiny-classifier", {}, {}, [], [], [],
        "", Status.LIVE, 1.0, False, now, now, "bench",
    )  # fmt: skip
    await registry.models.apply([version])
    groups = {"config": router.group("tiny-batched"), "registry": router.group("tiny-registered")}
    return router, groups, registry.models.aclose


async def _routing_micro(iterations: int, rounds: int = 5) -> Micro:
    """ns/op, median of ``rounds`` interleaved rounds (drift hits both groups alike)."""
    from interlock.routing.base import RouteContext
    from interlock.telemetry.record import RequestRecord

    router, groups, close = await _routing_groups()
    route = RouteContext(caller="bench", now=time.time())
    n = max(1, iterations // rounds)

    async def attempt(deployment: object) -> None:
        return None

    async def run_ns(group: Any) -> float:
        began = time.perf_counter_ns()
        for _ in range(n):  # a fresh record each time: the router counts attempts on it
            await router.run(group, RequestRecord("req", "POST", "/v1/infer"), route, attempt)
        return (time.perf_counter_ns() - began) / n

    def choose_ns(group: Any) -> float:
        strategy, candidates = group.strategy, group.candidates()
        began = time.perf_counter_ns()
        for _ in range(n):
            strategy.choose(candidates, route)
        return (time.perf_counter_ns() - began) / n

    samples: dict[str, dict[str, list[float]]] = {"run": {}, "choose": {}}
    try:
        for _ in range(rounds):
            for name, group in groups.items():
                samples["run"].setdefault(name, []).append(await run_ns(group))
                samples["choose"].setdefault(name, []).append(choose_ns(group))
    finally:
        await close()
    return {
        what: {name: statistics.median(values) for name, values in by_group.items()}
        for what, by_group in samples.items()
    }


# --- the report --------------------------------------------------------------------------------


def _medians(runs: list[Figures]) -> dict[str, float]:
    cpu = ("gateway_us", "gateway_pct", "upstream_pct", "client_pct", "others_pct")
    rows = [f.batch_rows for f in runs if f.batch_rows is not None]
    return {
        "requests": statistics.median(f.load.requests for f in runs),
        "rps": statistics.median(f.rps for f in runs),
        **{
            k: statistics.median(getattr(f.load, k) for f in runs)
            for k in ("p50_ms", "p95_ms", "p99_ms")
        },
        "errors": sum(f.load.errors for f in runs),
        **{k: statistics.median(getattr(f, k) for f in runs) for k in cpu},
        "batch_rows": statistics.median(rows) if rows else float("nan"),
    }


def _verdict(scenario: Scenario, m: dict[str, float]) -> str:
    if not scenario.targeted:
        return "(no target)"
    held = m["rps"] >= TARGET_RPS and m["p95_ms"] < TARGET_P95_MS and m["errors"] == 0
    return "met" if held else "**missed**"


def _facts(args: Any, reps: list[list[Figures]]) -> list[str]:
    info = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((s.split(":", 1)[1].strip() for s in info if s.startswith("model name")), "?")
    import onnxruntime

    if args.client == "wrk":
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split()
        client = f"wrk {version[1] if version[1:] else '?'}, one thread, `bench/post.lua`"
    else:
        client = f"aiohttp {aiohttp.__version__} closed-loop client in the driver (uvloop)"
    runs = [f for rep in reps for f in rep]
    disturbed = sum(f.others_before_pct >= QUIET_PCT for f in runs)
    return [
        f"- Machine: {os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, Python "
        f"{platform.python_version()}, onnxruntime {onnxruntime.__version__}; "
        f"{time.strftime('%Y-%m-%d')}.",
        f"- Command: `.venv/bin/python -m bench.infer_throughput {' '.join(args.argv)}`.",
        f"- Load: {client}; closed loop, keep-alive, c={args.concurrency}; {args.warmup:g} s "
        f"warm-up (discarded), then {args.duration:g} s measured per run; {args.reps} run(s) "
        "per scenario (median), in the order (1), (4), (2), (3).",
        "- Gateway: one `interlock serve`, shipped defaults apart from its models, one API "
        "key and `server.admin_key` (which also arms the chaos wrapper around every "
        "adapter); nothing pinned, all processes share the CPUs. Body: one row of 4 FP32.",
        f"- Before each run the driver waited up to {args.patience:g} s for other processes to "
        f"use under {QUIET_PCT:g} % of a core; {disturbed} of {len(runs)} runs started "
        f"without that; during the runs they used up to {max(f.others_pct for f in runs):.0f} "
        "% (medians: the others' column).",
    ]


def _table(medians: dict[int, dict[str, float]]) -> list[str]:
    lines = [
        "| # | scenario | model | requests | req/s | p50 ms | p95 ms | p99 ms | errors "
        "| gateway CPU µs/req | gateway CPU | client CPU | others' CPU | mean rows/run "
        "| target |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in SCENARIOS:
        m = medians[s.number]
        rows = "-" if m["batch_rows"] != m["batch_rows"] else f"{m['batch_rows']:.1f}"
        lines.append(
            f"| {s.number} | {s.title} | `{s.model}` | {m['requests']:,.0f} | {m['rps']:,.0f} "
            f"| {m['p50_ms']:.2f} | {m['p95_ms']:.2f} | {m['p99_ms']:.2f} | {m['errors']:.0f} "
            f"| {m['gateway_us']:.0f} | {m['gateway_pct']:.0f} % | {m['client_pct']:.0f} % "
            f"| {m['others_pct']:.0f} % | {rows} | {_verdict(s, m)} |"
        )
    return lines


def _registry(reps: list[list[Figures]], micro: Micro) -> list[str]:
    def pairs(value: Callable[[Figures], float]) -> float:  # (4) - (1), run by run
        return statistics.median(value(r[3]) - value(r[0]) for r in reps)

    ratio = statistics.median(r[3].rps / r[0].rps for r in reps)
    run, choose = micro["run"], micro["choose"]
    return [
        f"(4) against (1), run back to back: req/s x{ratio:.3f} ({100 * (ratio - 1):+.1f} %), "
        f"p50 {pairs(lambda f: f.load.p50_ms):+.2f} ms, p95 {pairs(lambda f: f.load.p95_ms):+.2f}"
        f" ms, gateway CPU {pairs(lambda f: f.gateway_us):+.0f} µs per request. Each run's "
        f"req/s, (1): {', '.join(f'{r[0].rps:,.0f}' for r in reps)}; (4): "
        f"{', '.join(f'{r[3].rps:,.0f}' for r in reps)}.",
        "",
        "Per-request routing work in process (no HTTP), both groups built by `interlock.app`, "
        "median of 5 interleaved rounds:",
        "",
        "| ns/op | config group (`weighted`) | registry group (`rollout`) | difference |",
        "|---|---|---|---|",
        f"| `Router.run`, an attempt that returns at once | {run['config']:,.0f} "
        f"| {run['registry']:,.0f} | {run['registry'] - run['config']:+,.0f} |",
        f"| `strategy.choose`, one candidate | {choose['config']:,.0f} "
        f"| {choose['registry']:,.0f} | {choose['registry'] - choose['config']:+,.0f} |",
    ]


def _shows(medians: dict[int, dict[str, float]], reps: list[list[Figures]], micro: Micro) -> str:
    one, two, three, four = (medians[n] for n in (1, 2, 3, 4))
    cpu_diff = statistics.median(r[3].gateway_us - r[0].gateway_us for r in reps)
    held = all(_verdict(s, medians[s.number]) == "met" for s in SCENARIOS if s.targeted)
    extra_ns = micro["run"]["registry"] - micro["run"]["config"]
    return (
        f"The targets (>= {TARGET_RPS:,.0f} req/s and p95 < {TARGET_P95_MS:g} ms) "
        f"{'hold' if held else 'do NOT all hold'} for (1)-(3) with shipped defaults at this "
        f"concurrency. Batching on serves {one['rps'] / two['rps']:.2f}x batching off's rate "
        f"({one['batch_rows']:.1f} rows per model run against 1), at {one['gateway_us']:.0f} "
        f"against {two['gateway_us']:.0f} µs of gateway CPU per request. The kserve path "
        f"serves {three['rps'] / one['rps']:.2f}x (1)'s rate, the fake server using "
        f"{three['upstream_pct']:.0f} % of a core. The registry's routing adds "
        f"{extra_ns:+,.0f} ns per request ({100 * extra_ns * 1e-9 * four['rps']:.2f} % of a "
        f"core at (4)'s rate); the gateway's measured CPU differs by "
        f"{cpu_diff:+.0f} µs per request between (4) and (1), run by run: "
        "the rest is not routing: run-to-run variation (the runs above) or the registry "
        "path's extra `x-interlock-version` header and access-log field. " + _limit(one)
    )


def _limit(m: dict[str, float]) -> str:
    """What (1)'s CPU shares say about its limit."""
    shares = (
        f"In (1) the gateway process used {m['gateway_pct']:.0f} % of one core (its event loop "
        f"is one thread; the model runs in executor threads), the client {m['client_pct']:.0f} "
        f"% and other processes {m['others_pct']:.0f} %, of the machine's "
        f"{100 * (os.cpu_count() or 1)} %"
    )
    if m["gateway_pct"] >= 90:
        return (
            shares + ": the gateway's one event loop, not the model or the client, sets the rate."
        )
    return (
        shares + ": the gateway was not CPU-bound; the batching window or the client set the rate."
    )


def _report(args: Any, reps: list[list[Figures]], micro: Micro) -> str:
    medians = {s.number: _medians([r[i] for r in reps]) for i, s in enumerate(SCENARIOS)}
    return "\n".join(
        [
            "# Tensor inference throughput (`POST /v1/infer`)",
            "",
            *_facts(args, reps),
            "",
            *_table(medians),
            "",
            "CPU columns: % of one core over the measured run (the gateway: its process "
            "and threads; the client: wrk, or this driver; others: the rest of the machine). "
            "Mean rows/run: the gateway's `interlock_infer_batch_size` histogram over the "
            f"run. The fake kserve server during (3): {medians[3]['upstream_pct']:.0f} % of "
            "a core.",
            "",
            "## Registry vs config file",
            "",
            *_registry(reps, micro),
            "",
            "## What this shows",
            "",
            _shows(medians, reps, micro),
            "",
        ]
    )


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, help="seconds measured per run (15)")
    parser.add_argument("--concurrency", type=int, help="requests in flight (32; --quick: 4)")
    parser.add_argument("--warmup", type=float, help="seconds of discarded load per run (3)")
    parser.add_argument("--reps", type=int, default=1, help="runs per scenario (median)")
    parser.add_argument("--iterations", type=int, help="micro-benchmark ops per group (200k)")
    parser.add_argument("--client", choices=["auto", "wrk", "aiohttp"], default="auto")
    parser.add_argument("--patience", type=float, help="seconds to wait for a quiet machine (30)")
    parser.add_argument("--quick", action="store_true", help="a few seconds per scenario")
    parser.add_argument("--work-dir", type=Path, default=BENCH_DIR / ".work" / "infer-throughput")
    parser.add_argument("--out", type=Path, help="the Markdown report's path")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    quick = args.quick
    args.duration = args.duration or (2.0 if quick else 15.0)
    args.concurrency = args.concurrency or (4 if quick else 32)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if quick else 3.0)
    args.iterations = args.iterations or (20_000 if quick else 200_000)
    args.patience = args.patience if args.patience is not None else (0.0 if quick else 30.0)
    if args.client == "auto":
        args.client = "wrk" if shutil.which("wrk") else "aiohttp"
    default_out = args.work_dir / "quick.md" if quick else BENCH_DIR / "results/infer-throughput.md"
    args.out = args.out or default_out
    return args


def main(argv: list[str] | None = None) -> None:
    args = _args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    reps = _run_http(args)
    micro = uvloop.run(_routing_micro(args.iterations))
    report = _report(args, reps, micro)
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    figures = {"client": args.client, "runs": [[asdict(f) for f in rep] for rep in reps]}
    (args.work_dir / "infer-throughput.json").write_text(json.dumps(figures | {"micro": micro}))


if __name__ == "__main__":
    main()
