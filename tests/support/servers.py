"""Real servers on loopback for tests: fake upstreams and a live gateway.

``FakeUpstream`` runs an aiohttp application in a background thread with its
own event loop, so it serves the gateway subprocess, sync SDK clients and
in-process async tests alike. ``GatewayProcess`` runs ``interlock serve`` as
a child process, the way users run it.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

__all__ = ["FakeUpstream", "GatewayProcess"]


class FakeUpstream:
    """Serve ``app`` on 127.0.0.1 (random port) until ``close()``."""

    def __init__(self, app: web.Application):
        self.app = app
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fake upstream did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def close(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def __enter__(self) -> FakeUpstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ChildProcess:
    """An ``interlock`` command as a child process, started once it prints
    the line that says it is ready; stdout and stderr read in the background
    so the child never blocks on a full pipe."""

    def __init__(self, args: list[str], env: dict[str, str] | None, ready_prefix: str):
        self.stderr_lines: queue.Queue[str] = queue.Queue()
        self.stdout_lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "interlock", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # SIGABRT dumps every thread's stack to stderr (see terminate).
            env={**os.environ, "PYTHONFAULTHANDLER": "1", **(env or {})},
        )
        stderr_pump = threading.Thread(target=self._pump_stderr, daemon=True)
        stderr_pump.start()
        try:
            self.ready_line = self._wait_for(ready_prefix)
        except BaseException:
            # Not started (exited early, or the test's timeout struck while it
            # was starting): no caller holds it to stop it, so it stops here,
            # rather than run on into the next test and be reaped there.
            self.proc.kill()
            self.proc.wait(10)
            stderr_pump.join(10)  # it reads to the end; then its pipe can close
            self._close_pipes()
            raise

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr_lines.put(line.rstrip("\n"))

    def _wait_for(self, prefix: str) -> str:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout_lines.append(line.rstrip("\n"))
            if line.startswith(prefix):
                # Keep reading the banner in the background so stdout never blocks.
                threading.Thread(target=self._pump_stdout, daemon=True).start()
                return line.rstrip("\n")
        raise RuntimeError(f"interlock {self.proc.args[3]} exited early: {self.drain_stderr()}")

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout_lines.append(line.rstrip("\n"))

    def drain_stderr(self) -> list[str]:
        lines = []
        while True:
            try:
                lines.append(self.stderr_lines.get_nowait())
            except queue.Empty:
                return lines

    def logs(self) -> Iterator[str]:
        yield from self.drain_stderr()

    def kill(self) -> None:
        """``kill -9``: no drain, no goodbye."""
        self.proc.kill()
        self.proc.wait(10)

    def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM and wait; past ``timeout_s``, SIGABRT (its stacks land in
        ``stderr_lines``, for the test's failure message), then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)
            try:
                return self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                return self.proc.wait(5)

    def close(self) -> None:
        self.terminate()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class GatewayProcess(ChildProcess):
    """``interlock serve --config FILE --port 0`` as a child process."""

    def __init__(
        self,
        config: dict[str, Any] | None,
        tmp_path: Path,
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ):
        args = ["serve", "--host", "127.0.0.1", "--port", "0"]
        if config is not None:
            path = tmp_path / "interlock.yaml"
            path.write_text(yaml.safe_dump(config))
            args += ["--config", str(path)]
        super().__init__(args + (extra_args or []), env, "Interlock listening on ")
        self.base_url = self.ready_line.split()[-1]


class WorkerProcess(ChildProcess):
    """``interlock worker --config FILE`` (batch workers) as a child process."""

    def __init__(self, config_path: Path, env: dict[str, str] | None = None):
        args = ["worker", "--config", str(config_path), "--metrics-port", "0"]
        super().__init__(args, env, "Interlock worker ")
        self.name = self.ready_line.split()[2]


class InProcessGateway:
    """The gateway app under a real uvicorn server in a background thread,
    so tests can reach its telemetry objects (span exporter, log stream)."""

    def __init__(self, app: Any):
        import uvicorn

        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, log_config=None, lifespan="on", http="httptools"
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        deadline = 100
        while not self.server.started and deadline:
            threading.Event().wait(0.05)
            deadline -= 1
        if not self.server.started:
            raise RuntimeError("in-process gateway did not start")
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"

    def _run(self) -> None:
        # Signals can only be handled on the main thread; uvicorn knows.
        asyncio.run(self.server.serve())

    # Longer than the gateway's own shutdown bounds add up to: the usage ledger's
    # last flush alone may retry for 10 s (a SQLite file whose write lock others
    # hold on a starved machine), after the batch worker's stop (5 s and more).
    # Joined for less, a test went on while the shutdown was still within its
    # bounds, and its connections read as leaked (a flake under CPU load).
    _SHUTDOWN_S = 60.0

    def close(self) -> None:
        self.server.should_exit = True
        self._thread.join(self._SHUTDOWN_S)
        if self._thread.is_alive():
            raise RuntimeError(f"in-process gateway did not stop within {self._SHUTDOWN_S} s")
