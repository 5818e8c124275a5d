"""The stand: mock upstream + gateway as pinned subprocesses, and how to drive them."""

from __future__ import annotations

import json
import os
import resource
import secrets
import shutil
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from loadgen import StreamLoad, StreamResult, WrkResult, run_ttft, run_wrk
from procs import BenchError, CoreLayout, Service, cpu_seconds, free_port, start_service

__all__ = [
    "PLAIN",
    "CpuUse",
    "GatewayOptions",
    "Settings",
    "Stand",
    "WrkLoad",
    "checked_wrk",
    "gateway_config",
    "mock_stats",
    "start_gateway",
    "start_mock",
    "stop_gateway",
]

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / ".work"
CHAT = "/v1/chat/completions"
_SETTLE_S = 0.2


@dataclass(frozen=True)
class Settings:
    duration_s: float
    reps: int
    concurrency: int
    streams: int
    chunks: int
    chunk_delay_ms: float

    def describe(self) -> str:
        return (
            f"{self.duration_s:g} s per run, {self.reps} runs per figure (median reported), "
            f"direct and gateway runs interleaved; c={self.concurrency} for throughput; "
            f"{self.streams} concurrent streams of {self.chunks} chunks "
            f"{self.chunk_delay_ms:g} ms apart for TTFT"
        )


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds used during one run, per process, and the run's wall time."""

    wall_s: float
    gateway_s: float
    mock_s: float
    load_s: float  # the load generator (wrk / ttft.py), a finished child process


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _post_json(url: str, body: dict[str, Any], key: str) -> tuple[int, Any]:
    data = json.dumps(body).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}"}
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


def mock_stats(mock: Service, path: str = "/stats") -> dict[str, int]:
    """The mock's counters (requests, streams, open_streams, peak_open_streams),
    after the action of ``path`` (/stats/reset, /hold/release, /hold/reset)."""
    stats: dict[str, int] = _get_json(mock.url + path)
    return stats


@dataclass(frozen=True)
class WrkLoad:
    """What wrk sends: the default chat body (post.lua) or ``body``, and whether
    the answers must come from the mock or from a response cache."""

    body: str | None = None
    from_cache: bool = False
    unique: bool = False  # "UNIQUE" in the body becomes a new value on every request


PLAIN = WrkLoad()  # post.lua's chat body, answered by the mock


def checked_wrk(
    mock: Service,
    url: str,
    key: str,
    connections: int,
    duration_s: float,
    layout: CoreLayout,
    load: WrkLoad = PLAIN,
) -> WrkResult:
    """One wrk run that also checks where its answers came from (see ``WrkLoad``)."""
    env = {"BENCH_KEY": key, "BENCH_MODEL": "mock"} | (
        {"BENCH_BODY": load.body} if load.body else {}
    )
    if load.unique:
        env["BENCH_UNIQUE"] = secrets.token_hex(4)  # a new nonce: no body of an earlier run
    served_before = mock_stats(mock)["requests"]
    result = run_wrk(url, connections, duration_s, layout, env)
    time.sleep(_SETTLE_S)  # let requests in flight when wrk stopped reach the mock
    served = mock_stats(mock)["requests"] - served_before
    if load.from_cache:
        # Warmed: at most one fill per connection racing the first entry.
        if served > connections:
            raise BenchError(f"{served} of {result.requests} cache-hit requests reached the mock")
    # wrk counts only answers it received; up to `connections` were in flight at its end.
    elif not result.requests <= served <= result.requests + connections:
        raise BenchError(f"wrk counted {result.requests} answers but the mock served {served}")
    return result


@dataclass
class Stand:
    """The processes under test. ``gateway`` is None for the mock-alone phase."""

    settings: Settings
    layout: CoreLayout
    mock: Service
    gateway: Service | None
    key: str
    last_cpu: CpuUse | None = None

    def _target(self, via_gateway: bool) -> Service:
        if not via_gateway:
            return self.mock
        if self.gateway is None:
            raise BenchError("no gateway on this stand")
        return self.gateway

    def wrk(self, via_gateway: bool, connections: int, duration_s: float = 0) -> WrkResult:
        """One wrk run; through the gateway it also checks every request reached the mock."""
        url = self._target(via_gateway).url + CHAT
        seconds = duration_s or self.settings.duration_s
        before = self._cpu_now()
        result = checked_wrk(self.mock, url, self.key, connections, seconds, self.layout)
        self.last_cpu = self._cpu_since(before)
        return result

    def ttft(self, via_gateway: bool, duration_s: float = 0) -> StreamResult:
        s = self.settings
        url = self._target(via_gateway).url + CHAT
        spread = s.chunks * s.chunk_delay_ms / 1000  # one stream's length
        load = StreamLoad(
            url, self.key, "mock", s.streams, s.chunks, duration_s or s.duration_s, spread
        )
        before = self._cpu_now()
        result = run_ttft(load, self.layout)
        self.last_cpu = self._cpu_since(before)
        return result

    def _cpu_now(self) -> tuple[float, float, float, float]:
        gateway = cpu_seconds(self.gateway.pid) if self.gateway else 0.0
        return time.perf_counter(), gateway, cpu_seconds(self.mock.pid), _children_cpu()

    def _cpu_since(self, before: tuple[float, float, float, float]) -> CpuUse:
        now = self._cpu_now()
        wall, gateway, mock, load = (b - a for a, b in zip(before, now, strict=True))
        return CpuUse(wall, gateway, mock, load)

    def smoke_check(self) -> None:
        """One chat and one embeddings call through the gateway, checked, before timing."""
        url = self._target(True).url
        chat = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
        status, body = _post_json(url + CHAT, chat, self.key)
        if status != 200 or body.get("model") != "mock-model" or not body.get("choices"):
            raise BenchError(f"gateway chat smoke check failed: {status} {body}")
        embed = {"model": "mock-embed", "input": ["a", "b"]}
        status, body = _post_json(url + "/v1/embeddings", embed, self.key)
        if status != 200 or len(body.get("data", ())) != 2:
            raise BenchError(f"gateway embeddings smoke check failed: {status} {body}")


def start_plain_mock(layout: CoreLayout, tag: str) -> Service:
    """bench/mock_upstream.py with its defaults (20 chunks, no delay) on the load core."""
    port = free_port()
    cmd = [sys.executable, str(BENCH_DIR / "mock_upstream.py"), "--port", str(port)]
    log = WORK_DIR / f"mock-{tag}.log"
    url = f"http://127.0.0.1:{port}"
    return start_service("mock upstream", layout.pinned(cmd, layout.load), "listening on", url, log)


def start_mock(settings: Settings, layout: CoreLayout, core: int | None, tag: str) -> Service:
    port = free_port()
    cmd = [
        sys.executable, str(BENCH_DIR / "mock_upstream.py"), "--port", str(port),
        "--chunks", str(settings.chunks), "--chunk-delay-ms", f"{settings.chunk_delay_ms:g}",
    ]  # fmt: skip
    log = WORK_DIR / f"mock-{tag}.log"
    url = f"http://127.0.0.1:{port}"
    return start_service("mock upstream", layout.pinned(cmd, core), "listening on", url, log)


@dataclass(frozen=True)
class GatewayOptions:
    """What a benchmark gateway config adds to the two mock models.

    ``shipped_defaults``: nothing is added but the models and the key; every
    other setting is what ``interlock serve`` ships with (access log on, to
    stderr, which goes to the log file as an operator would redirect it; the
    default SQLite store in ``./.interlock/`` of its own, fresh, working
    directory; default limits and drain timeout; the usage ledger on).
    """

    access_log: bool = False
    stream_models: tuple[str, ...] = ()  # served by the mock under the same name
    max_connections: int | None = None  # per-deployment upstream pool bound
    sections: dict[str, Any] = field(default_factory=dict)  # more top-level config
    label: str = ""  # names its config and log files (default: by access log)
    shipped_defaults: bool = False

    @property
    def tag(self) -> str:
        if self.label:
            return self.label
        if self.shipped_defaults:
            return "defaults"
        return "log-on" if self.access_log else "log-off"


def gateway_config(mock_url: str, options: GatewayOptions) -> dict[str, Any]:
    """The benchmark gateway's config: the mock's models, one key (``BENCH_KEY``), ``options``."""
    bound = options.max_connections
    pool = {} if bound is None or options.shipped_defaults else {"max_connections": bound}

    def model(name: str, upstream: str) -> dict[str, Any]:
        deployment = {"id": name, "provider": "openai", "model": upstream, **pool}
        return {"name": name, "deployments": [{**deployment, "base_url": f"{mock_url}/v1"}]}

    models = [model("mock", "mock-model"), model("mock-embed", "mock-embedding")]
    config: dict[str, Any] = {
        "models": models + [model(name, name) for name in options.stream_models],
        "keys": [{"name": "bench", "key": "os.environ/BENCH_KEY"}],
    }
    if options.shipped_defaults:
        return config
    return {
        **config,
        "server": {"access_log": options.access_log, "drain_timeout_s": 5},
        **options.sections,
    }


def start_gateway(mock: Service, layout: CoreLayout, key: str, options: GatewayOptions) -> Service:
    """``interlock serve`` on the gateway core; its JSON logs go to a file under bench/.work."""
    tag = options.tag
    config = WORK_DIR / f"gateway-{tag}.yaml"
    config.write_text(yaml.safe_dump(gateway_config(mock.url, options), sort_keys=False))
    port = free_port()
    interlock = str(Path(sys.executable).parent / "interlock")
    cmd = [interlock, "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "BENCH_KEY": key}
    log = WORK_DIR / f"gateway-{tag}.log"
    url = f"http://127.0.0.1:{port}"
    pinned = layout.pinned(cmd, layout.gateway)
    cwd = None
    if options.shipped_defaults:
        # Its own working directory, so its store is the default ./.interlock/interlock.db
        # without sharing a file with the other gateways; fresh, so runs compare.
        env.pop("INTERLOCK_DATA_DIR", None)
        cwd = WORK_DIR / f"gateway-{tag}"
        shutil.rmtree(cwd, ignore_errors=True)
        cwd.mkdir(parents=True)
    ready = "Interlock listening on"
    return start_service("gateway", pinned, ready, url, log, env, cwd=cwd)


def stop_gateway(gateway: Service) -> None:
    code = gateway.stop()
    if code != 0:
        raise BenchError(f"gateway exited {code} on SIGTERM (expected 0):\n{gateway.log_tail()}")
