"""Processes under test: start, wait for readiness, pin to cores, measure CPU, stop."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BenchError",
    "CoreLayout",
    "CpuMark",
    "Service",
    "cpu_seconds",
    "free_port",
    "open_fds",
    "pin_process",
    "process_tree",
    "raise_fd_limit",
    "rss_bytes",
    "start_service",
    "tree_cpu_seconds",
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


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, ValueError):
        return False


def start_service(
    name: str,
    cmd: Sequence[str],
    ready_text: str,
    url: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    timeout_s: float = 30.0,
    ready_path: str | None = None,
    cwd: Path | None = None,
) -> Service:
    """Start ``cmd`` (in ``cwd``) and wait until its output contains ``ready_text``,
    or, with ``ready_path``, until ``GET url + ready_path`` answers 200."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
        )
    service = Service(name, proc, url, log_path)
    deadline = time.monotonic() + timeout_s

    def ready() -> bool:
        if ready_path is not None:
            return _answers(url + ready_path)
        return ready_text in log_path.read_text(errors="replace")

    while not ready():
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with {proc.returncode}:\n{service.log_tail()}")
        if time.monotonic() > deadline:
            service.stop()
            raise BenchError(f"{name} not ready after {timeout_s:.0f}s:\n{service.log_tail()}")
        time.sleep(0.05)
    return service


@dataclass(frozen=True)
class CpuMark:
    """Machine-wide busy CPU seconds, and the part this driver and its children used."""

    at: float
    busy_s: float
    ours_s: float

    @classmethod
    def now(cls) -> CpuMark:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # not idle/iowait
        own = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
        ours = sum(u.ru_utime + u.ru_stime for u in own)
        return cls(time.monotonic(), busy, ours)

    def others_since(self, start: CpuMark) -> float:
        """Percent of one core used by other processes between ``start`` and this mark.

        Exact once every child has been waited for (at the end of the run).
        """
        foreign = (self.busy_s - start.busy_s) - (self.ours_s - start.ours_s)
        return 100 * max(foreign, 0.0) / max(self.at - start.at, 1e-9)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (a server may fork workers)."""
    children: dict[int, list[int]] = {}
    for entry in _listdir("/proc"):
        if entry.isdigit():
            stat = _read(Path(f"/proc/{entry}/stat"))
            if stat:
                parent = int(stat[stat.rindex(")") + 2 :].split()[1])
                children.setdefault(parent, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """CPU time used so far by ``pid`` and its live descendants."""
    total = 0.0
    for member in process_tree(pid):
        try:
            total += cpu_seconds(member)
        except OSError:
            pass  # ended meanwhile
    return total


def rss_bytes(pid: int) -> int:
    """Resident memory (VmRSS) of ``pid`` and its descendants; 0 once gone."""
    total_kib = 0
    for member in process_tree(pid):
        for line in _read(Path(f"/proc/{member}/status")).splitlines():
            if line.startswith("VmRSS:"):
                total_kib += int(line.split()[1])
    return total_kib * 1024


def open_fds(pid: int) -> int:
    return len(_listdir(f"/proc/{pid}/fd"))


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's (and so its children's) open-file limit; return the soft limit.

    Without CAP_SYS_RESOURCE the hard limit cannot go up: then the soft limit
    goes to the hard one and the caller sizes its loads from the result.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass
    target = wanted if hard == resource.RLIM_INFINITY else max(soft, min(wanted, hard))
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""  # the process or thread ended meanwhile


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def pin_process(pid: int, core: int | None) -> None:
    """Move every thread of a running process to ``core`` (no-op without pinning)."""
    if core is None or not sys.platform.startswith("linux"):
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), {core})
        except ProcessLookupError:
            pass  # a thread that ended meanwhile
