"""Load generators: wrk (non-streaming POSTs) and bench/ttft.py (streams).

Both run as their own processes, pinned to the load core, and bounded in
time. Any failed request is a ``BenchError``: a benchmark that counts errors
as fast answers is worse than none.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from procs import BenchError, CoreLayout

__all__ = ["StreamResult", "WrkResult", "ensure_wrk", "run_ttft", "run_wrk"]

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


@dataclass(frozen=True)
class StreamResult:
    streams: int
    rate: float  # completed streams per second
    p50_ms: float
    p99_ms: float


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
    )


def run_ttft(
    url: str,
    streams: int,
    duration_s: float,
    expect_chunks: int,
    spread_s: float,
    layout: CoreLayout,
    key: str = "",
) -> StreamResult:
    """One time-bounded run of bench/ttft.py; raises ``BenchError`` on any failed stream."""
    cmd = [
        sys.executable, str(TTFT_CLIENT), "--url", url, "--streams", str(streams),
        "--duration", f"{duration_s:g}", "--expect-chunks", str(expect_chunks),
        "--spread", f"{spread_s:g}", "--key", key,
    ]  # fmt: skip
    try:
        done = subprocess.run(
            layout.pinned(cmd, layout.load), capture_output=True, text=True, timeout=duration_s + 60
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"TTFT client against {url} did not finish in time") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BenchError(f"TTFT client against {url} failed:\n{done.stdout}{done.stderr}")
    result = orjson.loads(lines[-1])
    return StreamResult(
        result["streams"], result["streams_per_s"], result["p50_ms"], result["p99_ms"]
    )
