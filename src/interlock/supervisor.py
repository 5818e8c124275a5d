"""``interlock serve --workers N``: N gateway processes serving one socket.

The parent binds the listening socket, starts the workers and then only
watches them:

* a worker that exits while the gateway is serving is replaced (at once if
  it had been serving a while, after a growing pause if it keeps dying
  young: ``RestartBackoff``); the parent keeps the socket open meanwhile, so
  connections wait in the backlog for a live worker instead of being refused;
* SIGTERM or SIGINT is passed on as SIGTERM, so every worker drains as one
  process would (``server.py``), and the parent exits once they all have;
  a second SIGINT forces them, as it forces one process;
* a worker that cannot start during the first start stops the whole gateway
  with exit 1: a bad config or port fails the same way every time.

Workers are started with ``spawn``: each imports and builds its own gateway,
sharing nothing with the parent but the config and the socket. Metrics live
in ``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary directory unless the
operator names one), so any worker's ``/metrics`` reports every worker's
counters summed and histograms merged. ADR 0019 has why one shared socket
and why not uvicorn's own ``--workers``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from interlock.config import GatewayConfig

__all__ = ["RestartBackoff", "Supervisor", "bind_socket", "serve_workers"]

log = logging.getLogger("interlock.supervisor")

METRICS_DIR_VAR = "PROMETHEUS_MULTIPROC_DIR"
# uvicorn's default listen backlog; connections wait here while a worker is replaced.
BACKLOG = 2048
# How long workers may take past their own drain timeout before they are killed.
DRAIN_MARGIN_S = 15.0


@dataclass
class RestartBackoff:
    """How long to wait before replacing a worker that exited.

    A worker that served at least ``stable_s`` is replaced at once (a one-off
    crash); one that dies sooner doubles the wait each time, from ``first_s``
    up to ``max_s``, so a worker that crashes on every request or on start
    does not spin the machine. ``clock`` is injectable for tests."""

    first_s: float = 0.5
    max_s: float = 30.0
    stable_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _young_deaths: int = field(default=0, init=False)

    def delay(self, started_at: float) -> float:
        if self.clock() - started_at >= self.stable_s:
            self._young_deaths = 0
            return 0.0
        self._young_deaths += 1
        return float(min(self.first_s * 2 ** (self._young_deaths - 1), self.max_s))


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


@dataclass
class _Worker:
    slot: int
    process: BaseProcess
    ready: Connection
    started_at: float
    serving: bool = False


class Supervisor:
    """Keeps ``workers`` processes made by ``start(slot, ready)`` running
    until a signal; ``start`` returns a started process that sends one
    message on ``ready`` once it serves."""

    def __init__(
        self,
        start: Callable[[int, Connection], BaseProcess],
        workers: int,
        drain_timeout_s: float,
        on_dead: Callable[[int], None] = lambda pid: None,
        on_stop: Callable[[], None] = lambda: None,
        backoff: RestartBackoff | None = None,
    ):
        self._start = start
        self._count = workers
        self._drain_timeout_s = drain_timeout_s
        self._on_dead = on_dead
        self._on_stop = on_stop
        self._backoff = backoff or RestartBackoff()
        self._workers: dict[int, _Worker] = {}
        self._pending: dict[int, float] = {}  # slot -> when to start its replacement
        self._signals: list[int] = []
        self._wake_r, self._wake_w = os.pipe()

    def run(self, announce: Callable[[list[int]], None]) -> int:
        """Start every worker, call ``announce`` with their pids once all
        serve, and supervise until a signal; the exit status."""
        previous = self._install_signals()
        try:
            for slot in range(self._count):
                self._spawn(slot)
            if not self._await_first_start():
                self._stop(signal.SIGTERM)
                return 1
            announce([w.process.pid or 0 for w in self._workers.values()])
            return self._supervise()
        finally:
            self._restore_signals(previous)
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _install_signals(self) -> dict[int, Any]:
        os.set_blocking(self._wake_w, False)
        previous: dict[int, Any] = {
            sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        for sig in previous:
            signal.signal(sig, self._on_signal)
        return previous

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        self._signals.append(sig)
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:  # already awake
            pass

    def _spawn(self, slot: int) -> None:
        reader, writer = multiprocessing.Pipe(duplex=False)
        process = self._start(slot, writer)
        writer.close()  # the child has its copy: EOF here once it is gone
        self._workers[slot] = _Worker(slot, process, reader, time.monotonic())

    def _await_first_start(self) -> bool:
        while not all(w.serving for w in self._workers.values()):
            if self._signals:
                return False
            self._wait(None)
            for worker in list(self._workers.values()):
                if not worker.serving and not self._poll_ready(worker):
                    if not worker.process.is_alive():
                        log.error(
                            "worker did not start; stopping",
                            extra={"worker": worker.slot, "exitcode": worker.process.exitcode},
                        )
                        return False
        return True

    def _poll_ready(self, worker: _Worker) -> bool:
        try:
            if worker.ready.poll():
                worker.ready.recv()
                worker.serving = True
        except (EOFError, OSError):  # it closed the pipe unready: it is exiting
            worker.process.join(5)
        return worker.serving

    def _wait(self, timeout: float | None) -> None:
        waitables: list[object] = [self._wake_r]
        for worker in self._workers.values():
            waitables.append(worker.process.sentinel)
            if not worker.serving:
                waitables.append(worker.ready)
        if wait(waitables, timeout):  # type: ignore[arg-type]
            self._drain_wake_pipe()

    def _drain_wake_pipe(self) -> None:
        os.set_blocking(self._wake_r, False)
        try:
            while os.read(self._wake_r, 64):
                pass
        except BlockingIOError:
            pass

    def _supervise(self) -> int:
        while not self._signals:
            now = time.monotonic()
            due = [when - now for when in self._pending.values()]
            self._wait(max(0.0, min(due)) if due else None)
            for worker in list(self._workers.values()):
                if not worker.serving:
                    self._poll_ready(worker)
                if not worker.process.is_alive():
                    self._replace_later(worker)
            now = time.monotonic()
            for slot, when in list(self._pending.items()):
                if when <= now:
                    del self._pending[slot]
                    self._spawn(slot)
        return self._stop(signal.SIGTERM)

    def _replace_later(self, worker: _Worker) -> None:
        del self._workers[worker.slot]
        worker.process.join()
        worker.ready.close()
        pid = worker.process.pid or 0
        self._on_dead(pid)
        delay = self._backoff.delay(worker.started_at)
        log.warning(
            "worker exited; starting another",
            extra={
                "worker": worker.slot,
                "pid": pid,
                "exitcode": worker.process.exitcode,
                "restart_in_s": delay,
            },
        )
        self._pending[worker.slot] = time.monotonic() + delay

    def _stop(self, sig: int) -> int:
        """Pass ``sig`` to every worker and wait for them to drain; a second
        SIGINT is passed on as SIGINT (forced), past the drain timeout they
        are killed."""
        self._pending.clear()
        self._on_stop()
        self._signal_workers(sig)
        deadline = time.monotonic() + self._drain_timeout_s + DRAIN_MARGIN_S
        handled = len(self._signals)
        while any(w.process.is_alive() for w in self._workers.values()):
            left = deadline - time.monotonic()
            if left <= 0:
                log.error("workers still running past the drain timeout; killing them")
                for worker in self._workers.values():
                    worker.process.kill()
                break
            self._wait(left)
            if signal.SIGINT in self._signals[handled:]:  # Ctrl-C again: stop now
                self._signal_workers(signal.SIGINT)
            handled = len(self._signals)
        status = 0
        for worker in self._workers.values():
            worker.process.join()
            worker.ready.close()
            self._on_dead(worker.process.pid or 0)
            if worker.process.exitcode != 0:
                status = 1
        return status

    def _signal_workers(self, sig: int) -> None:
        for worker in self._workers.values():
            pid = worker.process.pid
            if pid is not None and worker.process.is_alive():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass


def serve_workers(
    config: GatewayConfig,
    host: str,
    port: int,
    workers: int,
    log_level: str,
    banner: list[str] | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Run ``workers`` gateway processes on ``host:port`` until a signal."""
    sock = bind_socket(host, port)
    metrics_dir, owned = _metrics_dir()
    context = multiprocessing.get_context("spawn")

    def start(slot: int, ready: Connection) -> BaseProcess:
        process = context.Process(
            target=_worker_main,
            args=(config, sock, log_level, ready),
            name=f"interlock-worker-{slot}",
        )
        process.start()
        return process

    def announce(pids: list[int]) -> None:
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        out.write(f"Interlock listening on http://{shown}:{bound_port}\n")
        out.write(f"Workers: {len(pids)} (pids {', '.join(map(str, pids))})\n")
        for line in banner or []:
            out.write(line + "\n")
        out.flush()

    supervisor = Supervisor(
        start,
        workers,
        config.server.drain_timeout_s,
        on_dead=lambda pid: _forget_metrics(metrics_dir, pid),
        # The workers close their copies as they start draining; once ours is
        # closed too, new connections are refused (a load balancer tries
        # another instance) instead of queueing where no worker will accept.
        on_stop=sock.close,
    )
    try:
        return supervisor.run(announce)
    finally:
        sock.close()
        if owned:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _metrics_dir() -> tuple[str, bool]:
    """The directory the workers keep metric values in, and whether it is
    ours to remove. An operator's own is emptied first: values left by a
    previous run would be added to this one's."""
    named = os.environ.get(METRICS_DIR_VAR)
    if named:
        directory = Path(named)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)
        return named, False
    created = tempfile.mkdtemp(prefix="interlock-metrics-")
    os.environ[METRICS_DIR_VAR] = created  # the workers inherit it
    return created, True


def _forget_metrics(directory: str, pid: int) -> None:
    """A dead worker's in-flight gauges must stop counting; its counters stay
    in the sums (counters never go down)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def _worker_main(
    config: GatewayConfig, sock: socket.socket, log_level: str, ready: Connection
) -> None:
    from interlock.redaction import Redactor
    from interlock.server import serve
    from interlock.telemetry.logging import configure_logging

    redactor = Redactor.from_config(config, os.environ)
    configure_logging(log_level, redactor)

    def started() -> None:
        ready.send(os.getpid())
        ready.close()

    sys.exit(serve(config, "", 0, out=None, redactor=redactor, sock=sock, on_started=started))
