"""Load generators: wrk (non-streaming POSTs) and bench/ttft.py (streams).

Both run as their own processes, pinned to the load core, and bounded in
time. Any failed request is a ``BenchError``: a benchmark that counts errors
as fast answers is worse than none.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from procs import BenchError, CoreLayout

__all__ = [
    "StreamLoad",
    "StreamResult",
    "WrkResult",
    "ensure_wrk",
    "finish_ttft",
    "run_ttft",
    "run_wrk",
    "start_ttft",
]

BENCH_DIR = Path(__file__).resolve().parent
POST_LUA = BENCH_DIR / "post.lua"
TTFT_CLIENT = BENCH_DIR / "ttft.py"
_RESULT_TAG = "BENCH_RESULT "


@dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    cdf_ms: tuple[float, ...] = ()  # percentiles 1..99 and 99.9, for plots


@dataclass(frozen=True)
class StreamLoad:
    """One run of bench/ttft.py: who to call, how many streams, and its bounds."""

    url: str
    key: str
    model: str
    streams: int
    expect_chunks: int
    duration_s: float
    spread_s: float = 0.0
    once: bool = False  # each worker runs a single stream (hold N open), no loop
    deadline_s: float = 0.0  # hard stop; 0 lets the client pick duration + 60 s
    allow_errors: bool = False  # errors are the measured outcome, not a failed run
    at_least: bool = False  # expect_chunks is a minimum (a proxy may split the last)

    def argv(self) -> list[str]:
        cmd = [
            sys.executable, str(TTFT_CLIENT), "--url", self.url, "--key", self.key,
            "--model", self.model, "--streams", str(self.streams),
            "--duration", f"{self.duration_s:g}", "--spread", f"{self.spread_s:g}",
            "--expect-chunks", str(self.expect_chunks), "--deadline", f"{self.deadline_s:g}",
        ]  # fmt: skip
        flags = {
            "--once": self.once, "--allow-errors": self.allow_errors, "--at-least": self.at_least
        }  # fmt: skip
        return cmd + [flag for flag, on in flags.items() if on]

    @property
    def time_limit_s(self) -> float:
        return (self.deadline_s or self.spread_s + self.duration_s + 60) + 30


@dataclass(frozen=True)
class StreamResult:
    """bench/ttft.py's summary; times in ms, NaN where no stream was counted."""

    streams: int
    rate: float  # completed streams per second
    p50_ms: float  # time to first token
    p99_ms: float
    gap_p50_ms: float
    gap_p99_ms: float
    total_p50_ms: float
    coalesced_pct: float
    errors: int
    error_kinds: dict[str, int]
    opened_streams: int  # streams that got a 200 head, counted or not
    peak_open: int
    ttft_cdf_ms: tuple[float, ...]

    @classmethod
    def parse(cls, summary: dict[str, Any]) -> StreamResult:
        def ms(group: str, key: str) -> float:
            value = summary[group][key]
            return math.nan if value is None else float(value)

        return cls(
            streams=summary["streams"],
            rate=summary["streams_per_s"],
            p50_ms=ms("ttft_ms", "p50"),
            p99_ms=ms("ttft_ms", "p99"),
            gap_p50_ms=ms("gap_ms", "p50"),
            gap_p99_ms=ms("gap_ms", "p99"),
            total_p50_ms=ms("total_ms", "p50"),
            coalesced_pct=summary["coalesced_pct"],
            errors=summary["errors"],
            error_kinds=summary["error_kinds"],
            opened_streams=summary["opened"],
            peak_open=summary["peak_open"],
            ttft_cdf_ms=tuple(summary["ttft_cdf_ms"]),
        )


def ensure_wrk() -> str:
    """Path to wrk, installing the Debian package when we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise BenchError("wrk is not installed: run `sudo apt-get install -y wrk` and retry")
    print("wrk not found; installing it with apt-get ...", flush=True)
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
        subprocess.run(install, capture_output=True, check=False)
    found = shutil.which("wrk")
    if not found:
        raise BenchError("could not install wrk with apt-get; install it by hand")
    return found


def _parse_wrk(output: str) -> dict[str, Any]:
    for line in output.splitlines():
        if line.startswith(_RESULT_TAG):
            parsed: dict[str, Any] = orjson.loads(line[len(_RESULT_TAG) :])
            return parsed
    raise BenchError(f"wrk printed no {_RESULT_TAG.strip()} line:\n{output}")


def _check_wrk(result: dict[str, Any], url: str, output: str) -> None:
    errors = {k: v for k, v in result.items() if k.endswith(("_errors", "timeouts")) and v}
    if errors:
        raise BenchError(f"wrk against {url} saw errors {errors}:\n{output}")
    if result["requests"] == 0:
        raise BenchError(f"wrk against {url} completed no request:\n{output}")


def run_wrk(
    url: str,
    connections: int,
    duration_s: float,
    layout: CoreLayout,
    env: dict[str, str],
) -> WrkResult:
    """One time-bounded wrk run; raises ``BenchError`` on any failed request."""
    cmd = [
        "wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--timeout", "5s",
        "-s", str(POST_LUA), url,
    ]  # fmt: skip
    try:
        done = subprocess.run(
            layout.pinned(cmd, layout.load),
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            timeout=duration_s + 30,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk against {url} did not finish in time") from exc
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise BenchError(f"wrk exited {done.returncode}:\n{output}")
    result = _parse_wrk(output)
    _check_wrk(result, url, output)
    return WrkResult(
        requests=result["requests"],
        rps=result["requests"] / (result["duration_us"] / 1e6),
        p50_ms=result["p50_us"] / 1000,
        p99_ms=result["p99_us"] / 1000,
        cdf_ms=tuple(v / 1000 for v in result.get("cdf_us", ())),
    )


def start_ttft(load: StreamLoad, layout: CoreLayout) -> subprocess.Popen[str]:
    """bench/ttft.py started on the load core; ``finish_ttft`` collects it."""
    return subprocess.Popen(
        layout.pinned(load.argv(), layout.load),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_ttft(proc: subprocess.Popen[str], load: StreamLoad) -> StreamResult:
    """Wait (bounded) for the client; a failed stream is a ``BenchError`` unless
    ``load.allow_errors``, in which case the errors are in the result."""
    try:
        stdout, stderr = proc.communicate(timeout=load.time_limit_s)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise BenchError(f"TTFT client against {load.url} did not finish in time") from exc
    lines = stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise BenchError(f"TTFT client against {load.url} failed:\n{stdout}{stderr}")
    return StreamResult.parse(orjson.loads(lines[-1]))


def run_ttft(load: StreamLoad, layout: CoreLayout) -> StreamResult:
    """One time-bounded run of bench/ttft.py (see ``finish_ttft``)."""
    return finish_ttft(start_ttft(load, layout), load)
