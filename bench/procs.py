"""Processes under test: start, wait for readiness, pin to cores, measure CPU, stop."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BenchError",
    "CoreLayout",
    "Service",
    "cpu_seconds",
    "free_port",
    "pin_process",
    "start_service",
]

_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark cannot produce a trustworthy figure; the message says why."""


@dataclass(frozen=True)
class CoreLayout:
    """Which core runs what. ``None`` means no pinning (fewer than two cores)."""

    gateway: int | None
    load: int | None

    @classmethod
    def detect(cls) -> CoreLayout:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2 or shutil.which("taskset") is None:
            return cls(None, None)
        return cls(gateway=cores[1], load=cores[0])

    def describe(self) -> str:
        if self.gateway is None:
            return "no pinning (fewer than 2 usable cores or no taskset): all processes share"
        return (
            f"gateway pinned to core {self.gateway}; mock upstream AND load generator share "
            f"core {self.load} (only {os.cpu_count()} cores: a limitation)"
        )

    def pinned(self, cmd: Sequence[str], core: int | None) -> list[str]:
        return ["taskset", "-c", str(core), *cmd] if core is not None else list(cmd)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Service:
    """A server subprocess whose stdout and stderr go to ``log_path``."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout_s: float = 15.0) -> int:
        """SIGTERM, wait, and return the exit code (kills after ``timeout_s``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_service(
    name: str,
    cmd: Sequence[str],
    ready_text: str,
    url: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> Service:
    """Start ``cmd`` and wait until its output contains ``ready_text``."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(cmd), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    service = Service(name, proc, url, log_path)
    deadline = time.monotonic() + timeout_s
    while ready_text not in log_path.read_text(errors="replace"):
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with {proc.returncode}:\n{service.log_tail()}")
        if time.monotonic() > deadline:
            service.stop()
            raise BenchError(f"{name} not ready after {timeout_s:.0f}s:\n{service.log_tail()}")
        time.sleep(0.05)
    return service


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def pin_process(pid: int, core: int | None) -> None:
    """Move every thread of a running process to ``core`` (no-op without pinning)."""
    if core is None or not sys.platform.startswith("linux"):
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), {core})
        except ProcessLookupError:
            pass  # a thread that ended meanwhile
