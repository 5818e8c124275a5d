"""What a response-cache hit costs, next to the uncached path, in one run.

    .venv/bin/python bench/cache_cost.py [--duration 2 --reps 3] [--append]

Starts bench/mock_upstream.py on the load core and two ``interlock serve``
processes on the gateway core, one with ``cache.enabled: true`` and one
without (only one is ever loaded), and drives them with wrk from the load
core: c=1 for latency (p50/p99), c=32 for throughput and the gateway's CPU
per request. Paths, interleaved within every repetition (median reported):

- **same body** (temperature 0): with the cache off, the uncached path; on,
  every answer is a hit from the in-process tier (the mock's counter must
  not move during those runs);
- **temperature 0.7**: the policy does not cache it, so cache on vs off is
  what the cache costs traffic it never serves;
- **unique bodies**: every body different (a generated wrk script numbers
  them), so cache on means a lookup, the upstream call and a fill on every
  request.

Writes bench/results/cache.md (``--append`` adds this run under the last one,
for noisy machines). Needs Linux, taskset and wrk, like bench/micro.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from interlock.cache import CacheSettings, ResponseCache
from interlock.state import MemoryStateStore
from loadgen import POST_LUA, ensure_wrk
from procs import BenchError, CoreLayout, CpuMark, Service, cpu_seconds, free_port, start_service
from report import machine_info
from stand import start_plain_mock

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / ".work"
RESULTS = BENCH_DIR / "results" / "cache.md"
PROMPT = "Say hello to the benchmark."
_RESULT_TAG = "BENCH_RESULT "
# Appended to post.lua: each request's body gets its own number in place of UNIQUE.
_UNIQUE_LUA = """
local counter = 0
local nonce = os.getenv("BENCH_NONCE") or ""
local template = wrk.body
request = function()
  counter = counter + 1
  local body = template:gsub("UNIQUE", nonce .. "-" .. counter)
  return wrk.format(nil, nil, nil, body)
end
"""


def body(temperature: float, prompt: str = PROMPT) -> str:
    message = {"role": "user", "content": prompt}
    chat = {"model": "mock", "messages": [message], "max_tokens": 16, "temperature": temperature}
    return json.dumps(chat, separators=(",", ":"))


@dataclass(frozen=True)
class Case:
    name: str
    cache_on: bool
    body: str
    unique: bool = False
    hits: bool = False  # every answer must come from the cache


UNIQUE = body(0, PROMPT + " UNIQUE")
# In pairs: the same traffic with the cache off, then on.
CASES = (
    Case("same body, cache off (uncached)", False, body(0)),
    Case("same body, cache on: hit", True, body(0), hits=True),
    Case("temperature 0.7, cache off", False, body(0.7)),
    Case("temperature 0.7, cache on: not cacheable", True, body(0.7)),
    Case("unique bodies, cache off", False, UNIQUE, unique=True),
    Case("unique bodies, cache on: miss + fill", True, UNIQUE, unique=True),
)


@dataclass
class Figures:
    """One case's runs: c=1 latency, c=32 throughput and gateway CPU per request."""

    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)
    p99_c32_ms: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)


@dataclass
class Stand:
    layout: CoreLayout
    key: str
    mock: Service
    gateways: dict[bool, Service]  # by cache_on


def _say(text: str) -> None:
    print(text, flush=True)


def _unique_script() -> Path:
    script = WORK_DIR / "cache-unique.lua"
    script.write_text(POST_LUA.read_text() + _UNIQUE_LUA)
    return script


def start_gateway(mock: Service, layout: CoreLayout, key: str, cache_on: bool) -> Service:
    tag = "cache-on" if cache_on else "cache-off"
    deployment = {"id": "mock", "provider": "openai", "model": "mock-model"}
    config = {
        "models": [{"name": "mock", "deployments": [{**deployment, "base_url": mock.url + "/v1"}]}],
        "keys": [{"name": "bench", "key": "os.environ/BENCH_KEY"}],
        "server": {"access_log": False, "drain_timeout_s": 5},
        "cache": {"enabled": cache_on},
    }
    path = WORK_DIR / f"gateway-{tag}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    interlock = str(Path(sys.executable).parent / "interlock")
    cmd = [interlock, "serve", "--config", str(path), "--host", "127.0.0.1", "--port", str(port)]
    return start_service(
        f"gateway ({tag})",
        layout.pinned(cmd, layout.gateway),
        "Interlock listening on",
        f"http://127.0.0.1:{port}",
        WORK_DIR / f"gateway-{tag}.log",
        {**os.environ, "BENCH_KEY": key},
    )


def _post(url: str, data: str, key: str) -> str | None:
    """POST a chat body; the x-interlock-cache header (raises on a non-200)."""
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    request = urllib.request.Request(url, data.encode(), headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
        return response.headers.get("x-interlock-cache")


def smoke_check(stand: Stand) -> None:
    """The cases do what their names say, before anything is timed."""
    on = stand.gateways[True].url + "/v1/chat/completions"
    off = stand.gateways[False].url + "/v1/chat/completions"
    seen = [_post(on, body(0), stand.key), _post(on, body(0), stand.key)]
    seen += [_post(on, body(0.7), stand.key), _post(off, body(0), stand.key)]
    if seen != ["miss", "hit", None, None]:
        raise BenchError(f"cache smoke check: x-interlock-cache was {seen}")


def mock_requests(mock: Service) -> int:
    with urllib.request.urlopen(mock.url + "/stats", timeout=5) as response:
        count: int = json.loads(response.read())["requests"]
        return count


def gateway_in_flight(gateway: Service) -> float:
    """``interlock_in_flight_requests``, less the /metrics request asking."""
    with urllib.request.urlopen(gateway.url + "/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("interlock_in_flight_requests "):
                return float(line.split()[1]) - 1
    raise BenchError(f"{gateway.name}: no interlock_in_flight_requests in /metrics")


def settled_requests(stand: Stand, timeout_s: float = 10.0) -> int:
    """The mock's counter once the gateways are idle and it stops moving: a
    gateway may still be working off requests a finished wrk run left in
    flight, for a while on a busy machine."""
    deadline = time.monotonic() + timeout_s
    count = -1
    while time.monotonic() < deadline:
        busy = any(gateway_in_flight(g) > 0 for g in stand.gateways.values())
        count, before = mock_requests(stand.mock), count
        if not busy and count == before:
            return count
        time.sleep(0.1)
    raise BenchError(f"the gateways or the mock were still busy {timeout_s:g} s after a run")


def wrk(stand: Stand, case: Case, connections: int, duration_s: int) -> dict[str, Any]:
    """One wrk run of ``case``; checks its answers against the mock's counter."""
    url = stand.gateways[case.cache_on].url + "/v1/chat/completions"
    script = _unique_script() if case.unique else POST_LUA
    cmd = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--timeout", "5s",
        "-s", str(script), url,
    ]  # fmt: skip
    env = {**os.environ, "BENCH_KEY": stand.key, "BENCH_BODY": case.body}
    env["BENCH_NONCE"] = secrets.token_hex(6)  # unique bodies never repeat across runs
    served = settled_requests(stand)
    done = subprocess.run(
        stand.layout.pinned(cmd, stand.layout.load),
        capture_output=True,
        text=True,
        env=env,
        timeout=duration_s + 30,
    )
    output = done.stdout + done.stderr
    lines = [line for line in output.splitlines() if line.startswith(_RESULT_TAG)]
    if done.returncode != 0 or not lines:
        raise BenchError(f"wrk on {case.name} failed:\n{output}")
    result: dict[str, Any] = json.loads(lines[0][len(_RESULT_TAG) :])
    errors = {k: v for k, v in result.items() if k.endswith(("_errors", "timeouts")) and v}
    if errors or not result["requests"]:
        raise BenchError(f"wrk on {case.name} saw errors {errors}:\n{output}")
    _check_upstream(case, result["requests"], settled_requests(stand) - served, connections)
    return result


def _check_upstream(case: Case, answered: int, served: int, connections: int) -> None:
    if case.hits and served:
        raise BenchError(f"{case.name}: the mock served {served} requests; expected none")
    if not case.hits and not answered <= served <= answered + connections:
        raise BenchError(f"{case.name}: wrk counted {answered} answers, the mock served {served}")


def measure(stand: Stand, duration_s: int, reps: int) -> dict[str, Figures]:
    figures = {case.name: Figures() for case in CASES}
    for rep in range(reps):
        _say(f"-- repetition {rep + 1}/{reps}")
        for case in CASES:
            got = figures[case.name]
            latency = wrk(stand, case, 1, duration_s)
            got.p50_ms.append(latency["p50_us"] / 1000)
            got.p99_ms.append(latency["p99_us"] / 1000)
            gateway = stand.gateways[case.cache_on]
            cpu_before = cpu_seconds(gateway.pid)
            load = wrk(stand, case, 32, duration_s)
            cpu_s = cpu_seconds(gateway.pid) - cpu_before
            got.rps.append(load["requests"] / (load["duration_us"] / 1e6))
            got.p99_c32_ms.append(load["p99_us"] / 1000)
            got.cpu_us.append(1e6 * cpu_s / load["requests"])
            _say(
                f"   {case.name:44} c=1 p50 {got.p50_ms[-1]:.3f} ms   "
                f"c=32 {got.rps[-1]:7.0f} req/s   {got.cpu_us[-1]:5.0f} µs CPU/req"
            )
    return figures


async def _cache_share_us(rounds: int = 20_000) -> tuple[float, float]:
    """The cache's own work per hit, in this process: ``prepare`` (policy,
    generations, key) and ``complete`` (local-tier read, rendering), in µs."""
    cache = ResponseCache(CacheSettings(l2_enabled=False, remote_wait_s=0), MemoryStateStore())
    chat = json.loads(body(0))
    message = {"role": "assistant", "content": "Hello from the mock upstream."}
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "mock-model",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
    }

    async def upstream() -> dict[str, Any]:
        return answer

    req = await cache.prepare("bench", "mock", chat, {})
    assert req is not None
    await cache.complete(req, upstream)  # the fill
    began = time.perf_counter()
    for _ in range(rounds):
        await cache.prepare("bench", "mock", chat, {})
    prepared = time.perf_counter()
    for _ in range(rounds):
        _, status = await cache.complete(req, upstream)
    done = time.perf_counter()
    if status != "hit":
        raise BenchError(f"in-process cache: expected hits, got {status}")
    return 1e6 * (prepared - began) / rounds, 1e6 * (done - prepared) / rounds


def table(figures: dict[str, Figures], share_us: tuple[float, float]) -> list[str]:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    rows = [
        "| path | c=1 p50 ms | c=1 p99 ms | c=32 req/s | c=32 p99 ms | gateway CPU µs/req, c=32 "
        "(runs' range) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, f in figures.items():
        rows.append(
            f"| {name} | {med(f.p50_ms):.3f} | {med(f.p99_ms):.3f} | {med(f.rps):,.0f} "
            f"| {med(f.p99_c32_ms):.2f} | {med(f.cpu_us):.0f} "
            f"({min(f.cpu_us):.0f}-{max(f.cpu_us):.0f}) |"
        )
    off, hit, *pairs = (figures[case.name] for case in CASES)
    rows += [
        "",
        f"- A hit against the uncached path: c=1 p50 {med(hit.p50_ms) / med(off.p50_ms):.2f}x, "
        f"c=32 throughput {med(hit.rps) / med(off.rps):.2f}x, "
        f"gateway CPU per request {med(hit.cpu_us) / med(off.cpu_us):.2f}x.",
    ]
    for what, (without, with_) in (
        ("a request the policy does not cache", pairs[0:2]),
        ("a miss (lookup, upstream call, fill)", pairs[2:4]),
    ):
        extra = med(with_.cpu_us) - med(without.cpu_us)
        rows.append(
            f"- The cache on {what}: {extra:+.0f} µs of gateway CPU per request "
            "(noise where the runs' ranges overlap)."
        )
    prepare_us, hit_us = share_us
    rows += [
        f"- Of a hit's gateway CPU, the cache's own work is about {prepare_us + hit_us:.0f} µs "
        f"(in process, this driver: `prepare` {prepare_us:.1f} µs, lookup and rendering "
        f"{hit_us:.1f} µs); the rest is HTTP, authentication, admission, validation and "
        "telemetry, paid by every request.",
    ]
    return rows


def report(
    figures: dict[str, Figures],
    share_us: tuple[float, float],
    info: list[tuple[str, str]],
    others: float,
) -> str:
    lines = [f"- {name}: {value}" for name, value in info]
    lines += [
        f"- Other processes on the machine: {others:.0f} % of one core on average during the "
        "run (2-core VM: the gateway has one core, the mock, wrk and this driver share the "
        "other; figures move with what else runs, so compare rows of one run).",
        "",
        *table(figures, share_us),
        "",
    ]
    return "\n".join(lines)


def write(text: str, append: bool) -> None:
    title = "# Response cache cost (bench/cache_cost.py)\n\n"
    if append and RESULTS.exists():
        runs = RESULTS.read_text().count("\n## Run ")
        RESULTS.write_text(RESULTS.read_text() + f"\n## Run {runs + 1}\n\n" + text)
    else:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(title + "## Run 1\n\n" + text)


def run(layout: CoreLayout, duration_s: int, reps: int) -> tuple[dict[str, Figures], float]:
    """The figures, and the share of a core other processes used meanwhile."""
    key = "sk-bench-" + secrets.token_hex(12)
    began = CpuMark.now()
    mock = start_plain_mock(layout, "cache")
    services = [mock]
    try:
        gateways = {on: start_gateway(mock, layout, key, on) for on in (False, True)}
        services += gateways.values()
        stand = Stand(layout, key, mock, gateways)
        smoke_check(stand)
        for case in CASES[:2]:
            wrk(stand, case, 32, 1)  # warm both gateways' pools
        figures = measure(stand, duration_s, reps)
    finally:
        for service in services:
            service.stop()
    return figures, CpuMark.now().others_since(began)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Response cache: hit vs uncached path")
    parser.add_argument("--duration", type=int, default=2, help="seconds per wrk run")
    parser.add_argument("--reps", type=int, default=3, help="runs per figure (median kept)")
    parser.add_argument("--append", action="store_true", help="add this run to cache.md")
    args = parser.parse_args(argv)
    if not sys.platform.startswith("linux"):
        _say("bench/cache_cost.py needs Linux (/proc, taskset)")
        return 2
    started = time.monotonic()
    try:
        ensure_wrk()
        WORK_DIR.mkdir(parents=True, exist_ok=True)
        layout = CoreLayout.detect()
        _say(f"Pinning: {layout.describe()}")
        if layout.load is not None:
            os.sched_setaffinity(0, {layout.load})  # keep this driver off the gateway's core
        figures, others = run(layout, args.duration, args.reps)
    except BenchError as exc:
        _say(f"BENCHMARK FAILED: {exc}")
        return 1
    settings = (
        f"{args.duration} s per wrk run (one thread), {args.reps} repetitions, "
        "paths interleaved within each, median reported; mock and gateways on loopback"
    )
    info = machine_info(os.cpu_count() or 1, layout.describe(), settings)
    text = report(figures, asyncio.run(_cache_share_us()), info, others)
    write(text, args.append)
    _say("\n" + text)
    _say(f"Wrote {RESULTS.relative_to(BENCH_DIR.parent)} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
