"""Interlock benchmark suite: direct vs Interlock vs the LiteLLM proxy, one gateway core.

    make bench        # or: .venv/bin/python bench/suite.py [--reps 3 --duration 3]
    .venv/bin/python bench/suite.py --quick     # a smoke run, written to bench/.work/
    .venv/bin/python bench/suite.py --only c1   # (1) alone, written to bench/.work/only-c1.md

Starts the mock upstream (bench/mock_upstream.py), Interlock and the LiteLLM
proxy (installed into its own venv by bench/litellm_proxy.py) as pinned
subprocesses, runs scenarios (1)-(4) of bench/scenarios.py against all three
with wrk and bench/ttft.py, and writes bench/results/latest.md, latest.json
and latest.png. bench/README.md explains every figure and the caveats.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import resource
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

from lineup import Curves, Lineup, Side, StreamShape, SuiteSettings
from litellm_proxy import LITELLM_VERSION, ensure_litellm, start_litellm
from loadgen import StreamLoad, ensure_wrk, run_ttft
from micro import measure_mock, mock_alone
from plot import draw
from procs import BenchError, CoreLayout, CpuMark, Service, open_fds, raise_fd_limit
from report import Table, machine_info
from scenarios import (
    cache_hits,
    hold_streams,
    latency_c1,
    pipeline_cost,
    streaming,
    throughput,
)
from stand import WORK_DIR, GatewayOptions, Settings, Stand, start_gateway, start_mock, stop_gateway
from suite_report import Figures, SuiteReport
from targets import HOLD_TARGET, HoldGoal, verdicts

RESULTS = WORK_DIR.parent / "results"
PHASES = ("c1", "throughput", "streaming", "cache", "pipeline", "hold")  # --only's names
FD_WANTED = 65_536
FD_RESERVE = 64  # listening socket, log files, epoll, imports: never more than this
MAX_CONNECTIONS = 12_000  # Interlock's upstream pool bound in the bench config
NICE = -10
# The guardrails of the full pipeline: every check (as bench/guardrails_cost.py's "all").
FULL_GUARDRAILS = {
    "pii": {"action": "redact"},
    "injection": {"action": "flag"},
    "content": {"action": "flag"},
    "limits": {"max_messages": 50, "max_total_chars": 100_000, "max_tokens": 4096},
}
# Its key: per-key rate and token limits and a daily budget, set so high that
# nothing is refused and every request takes the full admission path.
FULL_KEY = {
    "name": "bench",
    "key": "os.environ/BENCH_KEY",
    "limits": {"rpm": 10**9, "tpm": 10**12},
    "budget_usd_day": 10**6,
}


def _say(text: str) -> None:
    print(text, flush=True)


def _micro_settings(settings: SuiteSettings) -> Settings:
    return Settings(settings.duration_s, settings.reps, 32, 50, 20, 10.0)


def _litellm_smoke(service: Service, key: str) -> None:
    body = b'{"model":"mock","messages":[{"role":"user","content":"hi"}]}'
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    request = urllib.request.Request(service.url + "/v1/chat/completions", body, headers)
    with urllib.request.urlopen(request, timeout=60) as resp:
        if resp.status != 200 or b"chat.completion" not in resp.read():
            raise BenchError(f"LiteLLM smoke request failed: {resp.status}")


def _warm_up(lineup: Lineup, side: Side, shape: StreamShape) -> None:
    """LiteLLM's first requests are slow (lazy imports, first client): pay that here."""
    lineup.wrk(side, 8, 3.0)
    load = StreamLoad(
        side.url, side.key, shape.model, 20, shape.chunks, 2.0, 1.0,
        deadline_s=30, allow_errors=True, at_least=True,
    )  # fmt: skip
    run_ttft(load, lineup.layout)


@contextmanager
def running_stack(settings: SuiteSettings, layout: CoreLayout) -> Iterator[Lineup]:
    """Mock on the load core; Interlock and LiteLLM on the gateway core, one at a time busy."""
    servers: list[Service] = []
    try:
        mock = start_mock(_micro_settings(settings), layout, layout.load, "suite")
        servers.append(mock)
        key = "sk-bench-" + secrets.token_hex(12)
        interlock, variants = _start_interlocks(mock, layout, key, settings, servers)
        Stand(_micro_settings(settings), layout, mock, interlock, key).smoke_check()
        sides = [Side("direct", mock, ""), Side("interlock", interlock, key)]
        lineup = Lineup(mock, sides, layout, settings)
        lineup.variant_starters = {
            name: partial(_start_variant, mock, layout, key, options)
            for name, options in variants.items()
        }
        litellm_key, start_litellm_warm = _litellm_starter(lineup, servers)
        lineup.sides.append(Side("litellm", start_litellm_warm(), litellm_key, lenient=True))
        lineup.revive["litellm"] = start_litellm_warm
        yield lineup
    finally:
        _stop_all(servers)


def _start_variant(mock: Service, layout: CoreLayout, key: str, options: GatewayOptions) -> Side:
    return Side("interlock", start_gateway(mock, layout, key, options), key)


def _start_interlocks(
    mock: Service, layout: CoreLayout, key: str, settings: SuiteSettings, servers: list[Service]
) -> tuple[Service, dict[str, GatewayOptions]]:
    """The gateway under test, started, and the variants' options (each is
    started for its phase): its shipped defaults ("defaults", for (1)), its
    response cache on ("cache", for (5)) and every optional stage on ("full",
    for the pipeline cost), where it has them."""
    limits = _admission_limits(MAX_CONNECTIONS)
    options = GatewayOptions(False, settings.stream_models(), MAX_CONNECTIONS, limits)
    interlock = start_gateway(mock, layout, key, options)
    servers.append(interlock)
    variants = {
        "defaults": GatewayOptions(stream_models=options.stream_models, shipped_defaults=True)
    }
    if _has_section("cache"):
        cache = {"cache": {"enabled": True}}
        variants["cache"] = replace(options, sections=limits | cache, label="cache")
        if _has_section("guardrails"):
            full = limits | cache | {"guardrails": FULL_GUARDRAILS, "keys": [FULL_KEY]}
            variants["full"] = replace(options, access_log=True, sections=full, label="full")
    return interlock, variants


def _litellm_starter(lineup: Lineup, servers: list[Service]) -> tuple[str, Callable[[], Service]]:
    """LiteLLM's key, and how to start it (again, after a crash): smoke-checked and warm."""
    key = "sk-litellm-" + secrets.token_hex(12)
    models = [("mock", "mock-model")] + [(m, m) for m in lineup.settings.stream_models()]

    def start() -> Service:
        litellm = start_litellm(lineup.mock, lineup.layout, models, key, MAX_CONNECTIONS)
        servers.append(litellm)
        _litellm_smoke(litellm, key)
        _warm_up(lineup, Side("litellm", litellm, key), lineup.settings.stream_loads[0])
        return litellm

    return key, start


def _stop_all(servers: list[Service]) -> None:
    """Stop in reverse order; Interlock must exit 0 on SIGTERM (a drained gateway)."""
    for server in reversed(servers):
        if server.name == "gateway":
            stop_gateway(server)
        else:
            server.stop(timeout_s=10)


def hold_goal(lineup: Lineup, wanted: int) -> HoldGoal:
    """As many streams as wanted, or as the open-file limit lets one proxy hold."""
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    idle = max(open_fds(side.server.pid) for side in lineup.sides)
    most = (limit - idle - FD_RESERVE) // 2  # a proxied stream holds two sockets
    if most >= wanted:
        reason = "" if wanted >= HOLD_TARGET else f"{wanted} asked for (--hold-streams/--quick)"
        return HoldGoal(wanted, reason)
    return HoldGoal(
        most,
        f"the open-file limit here is {limit} and cannot be raised (no CAP_SYS_RESOURCE); "
        f"a proxied stream holds 2 sockets, so one process can hold at most {most}",
    )


def _wait_quiet(limit_pct: float = 10.0, patience_s: float = 60.0) -> float:
    """Wait (bounded) until other processes use under ``limit_pct`` % of the machine."""
    deadline = time.monotonic() + patience_s
    while True:
        before = CpuMark.now()
        time.sleep(1.0)
        busy = CpuMark.now().others_since(before) / (os.cpu_count() or 1)
        if busy < limit_pct or time.monotonic() > deadline:
            return busy
        _say(f"Other processes use {busy:.0f} % of the machine; waiting for quiet ...")


def _commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    dirty = " (+ uncommitted changes in src/)" if git("status", "--porcelain", "--", "src") else ""
    return (git("log", "-1", "--format=%h %s") or "unknown") + dirty


def _admission_limits(cap: int) -> dict[str, Any]:
    """Interlock's load-shedding caps raised to ``cap``, where its config has them.

    The defaults (2,048 requests in flight, 256 streams per key) would shed
    the hold scenario, which sends every stream with one key.
    """
    from interlock.config import GatewayConfig

    limits = GatewayConfig.model_fields.get("limits")
    fields = getattr(limits.annotation, "model_fields", {}) if limits else {}
    caps = {name: cap for name in ("max_in_flight", "max_streams_per_key") if name in fields}
    return {"limits": caps} if caps else {}


def _raise_priority() -> int:
    """Run ahead of other work on a shared machine (children inherit it); where
    that is not allowed, keep the normal priority."""
    with suppress(PermissionError, OSError):
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    return os.getpriority(os.PRIO_PROCESS, 0)


def _has_section(name: str) -> bool:
    from interlock.config import GatewayConfig

    return name in GatewayConfig.model_fields


def _skipped(only: Sequence[str], phase: str) -> str:
    return (
        f"not measured in this run (--only {','.join(only)})" if only and phase not in only else ""
    )


def _pipeline_note(only: Sequence[str]) -> str:
    missing = [name for name in ("cache", "guardrails") if not _has_section(name)]
    return _skipped(only, "pipeline") or (
        f"not measurable at this commit: the gateway has no {' or '.join(missing)} yet"
    )


def _cache_note(only: Sequence[str]) -> str:
    return _skipped(only, "cache") or "not measured: this gateway has no response cache"


def _machine(
    layout: CoreLayout, settings: SuiteSettings, busy: float, others: float
) -> list[tuple[str, str]]:
    rows = dict(machine_info(os.cpu_count() or 1, layout.describe(), _describe(settings)))
    rows["Commit"] = _commit()
    rows["Interlock"] = importlib.metadata.version("interlock")
    rows["LiteLLM"] = f"{LITELLM_VERSION} (litellm[proxy] from PyPI, own venv, 1 worker)"
    rows["Interlock config"] = (
        f"bench/.work/gateway-log-off.yaml: access log off, upstream max_connections "
        f"{MAX_CONNECTIONS}, {_admission_limits(MAX_CONNECTIONS) or 'no admission limits'}"
    )
    rows["Interlock, shipped defaults"] = (
        "bench/.work/gateway-defaults.yaml: the mock's models and one key, nothing else "
        "(access log on, to stderr, which goes to bench/.work/gateway-defaults.log; the "
        "default SQLite store ./.interlock/interlock.db with its usage ledger, in a fresh "
        "working directory bench/.work/gateway-defaults/; default limits and upstream pools)"
    )
    rows["Open-file limit"] = str(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    rows["Priority"] = (
        f"nice {os.getpriority(os.PRIO_PROCESS, 0)} for the driver and every process it starts "
        "(all three sides alike), so that other work on the machine disturbs less"
    )
    rows["Other processes' CPU"] = (
        f"{busy:.0f} % of the machine just before the start; {others:.0f} % of one core "
        "on average during the run (machine busy time minus this suite's)"
    )
    return list(rows.items())


def _describe(s: SuiteSettings) -> str:
    return (
        f"{s.duration_s:g} s per wrk run, {s.reps} runs per figure (median reported); "
        f"streams: {s.stream_duration_s:g} s counted per run after a warm-up of one stream "
        "length; hold: one run per side"
    )


def _scenarios(s: SuiteSettings, goal: HoldGoal, only: Sequence[str]) -> list[str]:
    """What each phase that ran did (all of them, unless ``only``)."""
    loads = "; ".join(shape.describe() for shape in s.stream_loads)
    hold = s.hold
    bullets = [
        "- **(1) c=1**: one wrk connection, one request at a time (non-streaming chat "
        "completion with usage). Added latency = gateway - direct, within the same repetition. "
        "*Shipped defaults*: a second Interlock process whose config has only the models and "
        "the key (access log on, default store and ledger, default limits), run right after "
        "the tuned one in each repetition.",
        f"- **(2) c={'/'.join(map(str, s.concurrencies))}**: wrk connections each sending the "
        "next request when the last is answered; the gateway has one core.",
        f"- **(3) streaming**: {loads}; bench/ttft.py keeps that many streams open (closed "
        "loop, starts staggered over one stream length). TTFT overhead = gateway - direct, "
        "same repetition; a gap is the time between two SSE events as read by the client.",
        f"- **(4) hold**: {goal.streams} streams started once over {s.hold_ramp_s:g} s; the "
        f"mock sends a chunk every {hold.delay_ms} ms (at most {hold.chunks}) and holds each "
        f"stream open before its end until all are open at once (or {s.hold_open_s:g} s have "
        f"passed), then {s.hold_dwell_s:g} s more, then lets them all finish. Server RSS "
        "(process and children) sampled from /proc every 0.25 s. One run per side.",
        "- **(5) cache hit**: a second Interlock process with `cache.enabled: true`; the "
        "same cacheable request (temperature 0) at c=1 and c=32, answered from its cache "
        "(the mock's counter must not move), next to the mock directly and, for the gain, "
        "the cache-less Interlock in the same repetition. Interlock only.",
        "- **pipeline cost**: c=32 through a third Interlock process with every optional "
        "stage on (access log, response cache, guardrails: PII redaction, injection and "
        "content checks, input limits) against the bare gateway of (1)-(4), both with the "
        "same short cacheable requests, each body different (a cache lookup, miss and fill "
        "every time). Admission, routing and metrics are on in both.",
    ]
    phases = ("c1", "throughput", "streaming", "hold", "cache", "pipeline")  # bullets' order
    return [text for phase, text in zip(phases, bullets, strict=True) if not only or phase in only]


def _labels(s: SuiteSettings, goal: HoldGoal) -> dict[str, str]:
    first = s.stream_loads[0]
    return {
        "title": f"Interlock vs LiteLLM vs direct ({os.cpu_count()} cores; gateway on one core)",
        "c1": "(1) latency at c=1, non-streaming (CDF, last run)",
        "ttft": f"(3) time to first token, {first.describe()} (CDF, last run)",
        "memory": f"(4) server RSS while {goal.streams} streams open (ramp-up)",
        "per_stream": f"(4) memory per open stream ({goal.streams} streams)",
    }


def _headroom(mock: Table, figures: Figures) -> list[str]:
    if not mock.rows or "c32.rps" not in figures:
        return []  # a run of some phases only (--only)
    headroom = mock.rows[2].runs.median / figures["c32.rps"].median("interlock")
    return [
        f"The mock alone serves {headroom:.0f}x Interlock's c=32 throughput on one core "
        "(Mock upstream alone table): it is not the bottleneck of any gateway figure."
    ]


def _notes(mock: Table, figures: Figures, goal: HoldGoal, others: float) -> list[str]:
    notes = [
        f"Only {os.cpu_count()} cores: the mock upstream, the load generators and this driver "
        "share the load core, so direct figures are the mock and its load generator competing "
        "for one core, and the gateway under test has the other to itself.",
        *_headroom(mock, figures),
        "LiteLLM sends `finish_reason` in an extra last chunk, so its streams are checked for "
        "at least the mock's chunk count; Interlock's and direct streams for exactly that count.",
        "LiteLLM's stream runs are bounded in time and their errors (including streams still "
        "unfinished at the bound) are reported, not fatal; every other run fails the suite on "
        "any error.",
        "wrk is closed-loop: a slow answer delays that connection's next request rather than "
        "being counted as queueing (no coordinated-omission correction).",
        "Server CPU per request/chunk is the server process's CPU time from /proc over the run "
        "divided by what it served; for streams it includes opening them.",
    ]
    if goal.reason and "hold.peak_open" in figures:
        notes.append(f"Scenario (4) held {goal.streams} streams, not {HOLD_TARGET}: {goal.reason}.")
    if others > 5:
        notes.append(
            f"Other processes used {others:.0f} % of one core on average during the run: "
            "figures are disturbed by that much (tails most); rerun on a quiet machine."
        )
    return notes


def _disturbed(runs: int) -> list[str]:
    if not runs:
        return []
    return [
        f"{runs} runs started while other processes kept using more than 10 % of a core "
        "after a minute's wait: their figures are disturbed (tails most)."
    ]


def _measure_mock_alone(settings: SuiteSettings, layout: CoreLayout, only: Sequence[str]) -> Table:
    if only:
        return Table("Mock upstream alone", f"Not measured in this run (--only {','.join(only)}).")
    _say("== mock upstream alone ==")
    with mock_alone(_micro_settings(settings), layout) as stand:
        mock = measure_mock(stand, settings.concurrencies)
    _say(mock.markdown())
    return mock


def run(settings: SuiteSettings, layout: CoreLayout, out: Path, only: Sequence[str] = ()) -> None:
    """Every phase, or those named in ``only`` (see ``PHASES``)."""
    busy = _wait_quiet()
    start = CpuMark.now()
    started = start.at
    _say(f"Pinning: {layout.describe()}; other processes {busy:.0f} % of the machine")
    figures, curves = Figures(), Curves()
    mock = _measure_mock_alone(settings, layout, only)
    with running_stack(settings, layout) as lineup:
        goal = hold_goal(lineup, settings.hold.streams)
        # (--only's name, title, the variants it measures, the phase)
        phases: list[tuple[str, str, tuple[str, ...], Callable[[], None]]] = [
            ("c1", "(1) c=1", ("defaults",), lambda: latency_c1(lineup, figures, curves)),
            ("throughput", "(2) throughput", (), lambda: throughput(lineup, figures)),
            ("streaming", "(3) streaming", (), lambda: streaming(lineup, figures, curves)),
            ("cache", "(5) cache hit", ("cache",), lambda: cache_hits(lineup, figures)),
            ("pipeline", "pipeline cost", ("full",), lambda: pipeline_cost(lineup, figures)),
            ("hold", "(4) hold", (), lambda: hold_streams(lineup, figures, curves, goal.streams)),
        ]
        for key, name, variants, phase in phases:
            if only and key not in only:
                continue
            _say(f"== {name} ({time.monotonic() - started:.0f} s in) ==")
            lineup.phase = name
            with lineup.running(*variants):
                phase()
        lineup.note_exits()
        incidents = [*lineup.incidents, *_disturbed(lineup.disturbed_runs)]
    others = CpuMark.now().others_since(start)
    report = SuiteReport(
        "Interlock benchmark suite",
        f"Interlock against the LiteLLM proxy and against the mock upstream directly, each "
        f"on one pinned core of a {os.cpu_count()}-core machine (a small machine: see Notes). "
        f"Suite wall time {time.monotonic() - started:.0f} s.",
        _machine(layout, settings, busy, others),
        mock,
        figures,
        verdicts(figures, goal, _pipeline_note(only), _cache_note(only)),
        _scenarios(settings, goal, only),
        _notes(mock, figures, goal, others) + incidents,
        out.with_suffix(".png").name,
    )
    _write(report, curves, _labels(settings, goal), out)


def _write(report: SuiteReport, curves: Curves, labels: dict[str, str], out: Path) -> None:
    memory = {side: [list(asdict(s).values()) for s in v] for side, v in curves.memory.items()}
    data = {
        "figures": report.figures.as_json(),
        "curves": {"c1_cdf_ms": curves.c1_cdf_ms, "ttft_cdf_ms": curves.ttft_cdf_ms},
        "labels": labels,
    }
    data["curves"]["memory"] = memory
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(data, indent=1))
    draw(data, out.with_suffix(".png"))
    report.write(out)
    _say(report.markdown())


def _phases(text: str) -> tuple[str, ...]:
    names = tuple(name for name in text.split(",") if name)
    unknown = sorted(set(names) - set(PHASES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown phase {unknown}; choose from {PHASES}")
    return names


def _parse_args(argv: list[str] | None) -> tuple[SuiteSettings, Path, tuple[str, ...]]:
    parser = argparse.ArgumentParser(description="Interlock benchmark suite")
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run (whole)")
    parser.add_argument("--reps", type=int, default=3, help="runs per figure (median kept)")
    parser.add_argument("--hold-streams", type=int, default=HOLD_TARGET, help="scenario (4)")
    parser.add_argument("--quick", action="store_true", help="smoke run into bench/.work/")
    parser.add_argument(
        "--only",
        type=_phases,
        default=(),
        metavar="PHASE[,PHASE]",
        help=f"run only these phases, no mock-alone table, into bench/.work/ ({', '.join(PHASES)})",
    )
    parser.add_argument("--out", type=Path, help="default: bench/results/latest.md")
    a = parser.parse_args(argv)
    defaults = SuiteSettings()
    hold = replace(defaults.hold, streams=a.hold_streams)
    settings = replace(defaults, duration_s=a.duration, reps=a.reps, hold=hold)
    # A partial or smoke run never lands in results/ unless --out says so.
    out = a.out or (WORK_DIR / f"only-{'-'.join(a.only)}.md" if a.only else RESULTS / "latest.md")
    if a.quick:
        quick_hold = replace(settings.hold, streams=min(a.hold_streams, 2000))
        settings = replace(settings, duration_s=2.0, reps=1, stream_duration_s=1.5)
        settings = replace(settings, hold=quick_hold, hold_ramp_s=2.0, hold_open_s=30.0)
        out = a.out or (out if a.only else WORK_DIR / "quick.md")
    return settings, out, a.only


def main(argv: list[str] | None = None) -> int:
    settings, out, only = _parse_args(argv)
    if not sys.platform.startswith("linux"):
        _say("bench/suite.py needs Linux (/proc, taskset)")
        return 2
    try:
        ensure_wrk()
        WORK_DIR.mkdir(parents=True, exist_ok=True)
        ensure_litellm(_say)
        limit = raise_fd_limit(FD_WANTED)
        _say(f"Open-file limit for this run and its children: {limit}; nice {_raise_priority()}")
        layout = CoreLayout.detect()
        if layout.load is not None:
            os.sched_setaffinity(0, {layout.load})  # keep this driver off the gateway's core
        run(settings, layout, out, only)
    except BenchError as exc:
        _say(f"BENCHMARK FAILED: {exc}")
        return 1
    with suppress(ValueError):
        out = out.relative_to(Path.cwd())
    _say(f"Wrote {out} (+ .json, .png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
