"""Many instances on loopback, as an operator runs them (issue 19): nginx in
front of gateway processes, a batch worker, and a Redis, a PostgreSQL and an
OpenAI-compatible upstream of the tests' own.

Every engine here is a real process the tests start, stop and restart:
``redis-server`` (nothing persisted, so a restart is a fresh Redis), a
scratch PostgreSQL cluster (``initdb`` and ``pg_ctl`` as the ``postgres``
user, since PostgreSQL refuses to run as root) and Debian's nginx. A missing
one skips the tests locally and fails them on CI (``CI=true``), like
``redis_scratch`` and ``pg_scratch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
import sqlalchemy as sa
import yaml
from aiohttp import web

from interlock.store import create_engine
from tests.support.servers import ChildProcess, FakeUpstream, GatewayProcess, WorkerProcess
from tests.support.waiting import wait_for

__all__ = [
    "ADMIN_KEY",
    "Fleet",
    "FleetUpstream",
    "Nginx",
    "PostgresCluster",
    "RedisServer",
    "require",
    "require_engines",
]

NGINX = "/usr/sbin/nginx"
ADMIN_KEY = "sk-fleet-admin"
# What every answer of the fake upstream costs: the ledger test adds these up.
PROMPT_TOKENS, COMPLETION_TOKENS = 7, 5


def require(available: bool, what: str) -> None:
    """Skip unless ``available``; on CI (``CI=true``) fail instead, so a
    missing engine cannot pass for a green run."""
    if available:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} (CI=true: it must be available)")
    pytest.skip(what)


def require_engines() -> None:
    """nginx and redis-server are there, before anything is started."""
    require(os.access(NGINX, os.X_OK), f"nginx is not installed ({NGINX}; `make tools`)")
    require(shutil.which("redis-server") is not None, "redis-server is not installed")


def free_port() -> int:
    """A port nobody listens on now. Fixed ports (rather than port 0) let a
    restarted process come back where nginx and the gateways expect it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _stop_group(proc: subprocess.Popen[bytes], sig: signal.Signals, timeout_s: float) -> None:
    """``sig`` to the process group the child leads (``start_new_session``),
    then SIGKILL to the group past ``timeout_s``: nginx's workers with their
    master. The group is signalled only while its leader is unreaped, so the
    id cannot be anybody else's."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


# -- Redis -----------------------------------------------------------------------


class RedisServer:
    """A ``redis-server`` of the tests' own on a fixed port; nothing saved,
    so started again after ``stop`` it is empty, like a Redis without
    persistence after a crash."""

    def __init__(self, directory: Path):
        binary = shutil.which("redis-server")
        require(binary is not None, "redis-server is not installed")
        assert binary is not None
        self.binary, self.directory = binary, directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        with open(self.directory / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for(self.answers, 30, f"redis-server on port {self.port}")

    def answers(self) -> bool:
        try:
            with redis.Redis(
                port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5
            ) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            _stop_group(self.proc, signal.SIGTERM, 10)
            self.proc = None


# -- PostgreSQL -------------------------------------------------------------------


def _postgres_binaries() -> dict[str, str | None]:
    """On PATH, else where Debian's postgresql packages put them."""
    found = {name: shutil.which(name) for name in ("initdb", "pg_ctl", "runuser")}
    for versioned in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        for name in ("initdb", "pg_ctl"):
            found[name] = found[name] or shutil.which(name, path=str(versioned))
    return found


class PostgresCluster:
    """A scratch PostgreSQL cluster (trust auth, loopback, a free port, its
    socket in its own directory), run as the ``postgres`` OS user.

    Made once per session: ``initdb`` costs about a second (``initdb_s``).
    ``stop``/``start`` restart it on the same port and data directory.
    """

    def __init__(self) -> None:
        found = _postgres_binaries()
        missing = sorted(name for name, path in found.items() if path is None)
        require(not missing, f"PostgreSQL tools missing: {', '.join(missing)}")
        require(os.geteuid() == 0, "the scratch PostgreSQL runs as user postgres: needs root")
        try:
            self._owner = pwd.getpwnam("postgres")
        except KeyError:
            require(False, "no postgres OS user to run the scratch PostgreSQL as")
        self.bin = {name: str(path) for name, path in found.items()}
        # In /tmp, not pytest's tmp_path: the postgres user must reach it, and
        # pytest's directories are root's alone (0700).
        self.directory = Path(tempfile.mkdtemp(prefix="interlock-pg-"))
        os.chown(self.directory, self._owner.pw_uid, self._owner.pw_gid)
        self.data = self.directory / "data"
        self.port = free_port()
        self.initdb_s = 0.0

    def _as_postgres(self, *args: str, timeout_s: float = 60) -> str:
        done = subprocess.run(
            [self.bin["runuser"], "-u", "postgres", "--", *args],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=self.directory,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr}{done.stdout}")
        return done.stdout

    def init(self) -> None:
        began = time.monotonic()
        # --no-sync: a scratch cluster need not survive a power cut.
        self._as_postgres(
            self.bin["initdb"], "-D", str(self.data), "-A", "trust", "-U", "postgres",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        self.initdb_s = time.monotonic() - began

    def start(self) -> None:
        # No fsync: the tests stop it cleanly (``stop``), and losing data to a
        # power cut is not what they test. Connections: two gateways' and a
        # worker's pools, and the tests' own.
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=300"
        )
        self._as_postgres(
            self.bin["pg_ctl"], "-D", str(self.data), "-l", str(self.directory / "postgres.log"),
            "-w", "-t", "60", "-o", options, "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """``fast``: clients are disconnected and the server shuts down cleanly."""
        self._as_postgres(self.bin["pg_ctl"], "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        async def create() -> None:
            # CREATE DATABASE checkpoints: slow on a busy machine.
            engine = create_engine(self.url("postgres"), command_timeout_s=120).execution_options(
                isolation_level="AUTOCOMMIT"
            )
            try:
                async with engine.connect() as conn:
                    await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            finally:
                await engine.dispose()

        asyncio.run(create())
        return self.url(name)

    def close(self) -> None:
        if self.running():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)


# -- nginx --------------------------------------------------------------------------

# deploy/compose/nginx.conf on loopback, every path in the test's directory.
# What differs, and why: the gateways are fixed loopback addresses (no
# resolver); one worker process, so least_conn sees every connection;
# fail_timeout 2 s instead of 10 s, so a gateway restarted by a test is back
# in rotation within the test's time; and x-fleet-upstream (test only) tells
# the test which gateway answered. keepalive_timeout is the deployed one (4 s,
# under the gateways' 5 s: see deploy/compose/nginx.conf).
_NGINX_CONF = """\
daemon off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
{user}
events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;

    upstream interlock {{
        zone interlock 64k;
        least_conn;
{servers}
        keepalive 64;
        keepalive_timeout 4s;
    }}

    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 200m;
        large_client_header_buffers 4 64k;

        location / {{
            proxy_pass http://interlock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_cache off;
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;
            proxy_connect_timeout 2s;
            # As deployed: no `non_idempotent`, so a POST that reached a
            # gateway is never sent to the other one.
            proxy_next_upstream error timeout http_502 http_503;
            proxy_next_upstream_tries 2;
            proxy_next_upstream_timeout 10s;
            add_header x-fleet-upstream $upstream_addr always;
        }}
    }}
}}
"""


class Nginx:
    """Debian's nginx as the load balancer in front of ``upstream_ports``."""

    def __init__(self, directory: Path, upstream_ports: list[int]):
        require(os.access(NGINX, os.X_OK), f"nginx is not installed ({NGINX}; `make tools`)")
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        servers = "\n".join(
            f"        server 127.0.0.1:{port} max_fails=3 fail_timeout=2s;"
            for port in upstream_ports
        )
        # As root, nginx's workers would switch to `nobody`, who cannot
        # reach pytest's directories; nothing here needs the lower privilege.
        user = "user root;" if os.geteuid() == 0 else ""
        self.conf = directory / "nginx.conf"
        self.conf.write_text(
            _NGINX_CONF.format(dir=directory, port=self.port, servers=servers, user=user)
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [NGINX, "-p", str(self.directory), "-c", str(self.conf)]
        args += ["-e", str(self.directory / "error.log")]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        wait_for(self._listening, 30, f"nginx listening on {self.port}")

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {self.errors()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1):
            return True
        return False

    def errors(self) -> str:
        log = self.directory / "error.log"
        return log.read_text() if log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None:
            _stop_group(self.proc, signal.SIGTERM, 10)
            self.proc = None


# -- the upstream -----------------------------------------------------------------


@dataclass
class Route:
    """One fake deployment (``/<name>/v1/chat/completions``): what it does
    and what it saw. Set by the test while it serves."""

    status: int = 200
    delay_s: float = 0.0  # before the answer (a unary one, or a stream's first chunk)
    chunk_delay_s: float = 0.02  # between a stream's chunks
    chunks: int = 5
    calls: int = 0
    # Closed: answers wait until the test opens it (coalescing).
    gate: asyncio.Event | None = None


class FleetUpstream:
    """An OpenAI-compatible upstream (unary and SSE chat completions) with
    one route per fake deployment, each counting what reached it and each
    switchable to fail (HTTP 500), to be slow, or to hold its answers."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self._lock = threading.Lock()
        app = web.Application()
        app.router.add_post("/{route}/v1/chat/completions", self._chat)
        self.server = FakeUpstream(app)

    def base_url(self, route: str) -> str:
        self.routes.setdefault(route, Route())
        return f"{self.server.url}/{route}/v1"

    def route(self, name: str) -> Route:
        return self.routes[name]

    def calls(self, name: str) -> int:
        with self._lock:
            return self.routes[name].calls

    def hold(self, name: str) -> None:
        """Answers of ``name`` wait until ``release``."""

        def close_gate() -> None:
            self.routes[name].gate = asyncio.Event()

        self._in_loop(close_gate)

    def release(self, name: str) -> None:
        def open_gate() -> None:
            gate = self.routes[name].gate
            if gate is not None:
                gate.set()
            self.routes[name].gate = None

        self._in_loop(open_gate)

    def _in_loop(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the upstream's event loop (its events live there)."""
        future = asyncio.run_coroutine_threadsafe(_call(action), self.server.loop)
        future.result(10)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        route = self.routes[request.match_info["route"]]
        body = await request.json()
        with self._lock:
            route.calls += 1
            number = route.calls
        if route.gate is not None:
            await route.gate.wait()
        if route.delay_s:
            await asyncio.sleep(route.delay_s)
        if route.status != 200:
            error = {"error": {"message": "injected failure", "type": "server_error"}}
            return web.json_response(error, status=route.status)
        text = f"Answer #{number} from {request.match_info['route']}"
        if body.get("stream"):
            return await _stream(request, route, text)
        message = {"role": "assistant", "content": text}
        return web.json_response(
            {
                "id": f"chatcmpl-{number}",
                "object": "chat.completion",
                "created": 1,
                "model": body.get("model", "m"),
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": _usage(),
            }
        )

    def close(self) -> None:
        self.server.close()


async def _call(action: Callable[[], None]) -> None:
    action()


def _usage() -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


async def _stream(request: web.Request, route: Route, text: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    words = [text] + [f" part {n}" for n in range(1, route.chunks)]
    for n, word in enumerate(words):
        delta = {"role": "assistant", "content": word} if n == 0 else {"content": word}
        await response.write(_event([{"index": 0, "delta": delta}]))
        await asyncio.sleep(route.chunk_delay_s)
    await response.write(_event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    await response.write(_event([], _usage()))
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def _event(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
    chunk: dict[str, Any] = {
        "id": "chatcmpl-stream",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": choices,
    }
    if usage is not None:
        chunk["usage"] = usage
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


# -- the fleet ------------------------------------------------------------------------


@dataclass
class Node:
    """One gateway: its fixed port, its own data directory (ledger journal)
    and, while it runs, its process."""

    index: int
    port: int
    directory: Path
    process: GatewayProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        """As nginx names it in ``x-fleet-upstream``."""
        return f"127.0.0.1:{self.port}"


@dataclass
class Fleet:
    """nginx, ``gateways`` gateway processes and a batch worker on one config,
    sharing ``redis`` and a database on ``postgres``."""

    directory: Path
    redis: RedisServer
    postgres: PostgresCluster
    upstream: FleetUpstream
    database: str
    keys: list[dict[str, Any]]
    gateways: int = 2
    nodes: list[Node] = field(default_factory=list)
    nginx: Nginx | None = None
    worker: WorkerProcess | None = None
    config: dict[str, Any] = field(default_factory=dict)
    config_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.store_url = self.postgres.create_database(self.database)
        self.config = self._config()
        self.config_path = self.directory / "interlock.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config))
        for index in range(self.gateways):
            directory = self.directory / f"gateway-{index + 1}"
            directory.mkdir()
            self.nodes.append(Node(index, free_port(), directory))

    @property
    def url(self) -> str:
        """nginx's address: where clients go."""
        assert self.nginx is not None
        return self.nginx.url

    def _config(self) -> dict[str, Any]:
        upstream = self.upstream
        routing = {
            "strategy": "priority",
            "max_attempts": 2,
            # Trip after 3 failures in a row, and stay open for the test.
            "breaker": {"consecutive_failures": 3, "open_s": 60, "max_open_s": 120},
        }
        return {
            "models": [
                _model("chat", [_deployment("chat-1", upstream.base_url("chat"))]),
                _model(
                    "flaky",
                    [
                        _deployment("flaky-bad", upstream.base_url("flaky-bad"), priority=0),
                        _deployment("flaky-good", upstream.base_url("flaky-good"), priority=1),
                    ],
                    routing=routing,
                ),
                _model("cached", [_deployment("cached-1", upstream.base_url("cached"))]),
                _model("load", [_deployment("load-1", upstream.base_url("load"))]),
            ],
            "keys": self.keys,
            "tiers": {
                "unlimited": {"priority": 1},
                "standard": {"limits": {"rpm": 600, "max_concurrent": 64}, "priority": 1},
                # The rate-limited tier: few enough that a test spends it at once.
                "metered": {"limits": {"rpm": 10}, "priority": 1},
            },
            "server": {"admin_key": ADMIN_KEY, "access_log": False, "drain_timeout_s": 20},
            "state": {"backend": "redis", "url": self.redis.url(0), "prefix": "fleet:"},
            "store": {"url": self.store_url},
            "cache": {"enabled": True, "remote_wait_s": 10},
            # One blob directory for all: the gateway that takes an upload and
            # the worker that reads it are different processes.
            "files": {"dir": str(self.directory / "files")},
            "batch": {"worker": {"in_process": False, "sweep_s": 0.2, "concurrency": 4}},
        }

    # Processes

    def start(self) -> None:
        self._start_in_parallel()
        self.nginx = Nginx(self.directory / "nginx", [node.port for node in self.nodes])
        self.nginx.start()
        wait_for(self._nginx_answers, 30, "nginx answering through the gateways")

    def _start_in_parallel(self) -> None:
        """Gateways and the worker start side by side (~1.5 s of CPU each)."""
        with ThreadPoolExecutor() as pool:
            started: list[Future[Any]] = [
                pool.submit(self.start_gateway, node.index) for node in self.nodes
            ]
            started.append(pool.submit(self.start_worker))
            for future in started:
                future.result(120)  # re-raises a failed start here

    def start_gateway(self, index: int) -> GatewayProcess:
        """Start gateway ``index`` on its port; back once it listens."""
        node = self.nodes[index]
        assert node.process is None or node.process.proc.poll() is not None
        if node.process is not None:
            node.process.close()
        # Its own data directory: each process journals its ledger rows there.
        env = {"INTERLOCK_DATA_DIR": str(node.directory)}
        node.process = GatewayProcess(
            self.config, node.directory, env=env, extra_args=["--port", str(node.port)]
        )
        return node.process

    def start_worker(self) -> None:
        self.worker = WorkerProcess(self.config_path)

    def _nginx_answers(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(self.url + "/health/live", timeout=2).status_code == 200
        return False

    def kill(self, index: int) -> None:
        """``kill -9`` gateway ``index``."""
        process = self.nodes[index].process
        assert process is not None
        process.kill()

    def terminate(self, index: int, timeout_s: float = 30) -> int:
        """SIGTERM gateway ``index`` and wait for it to drain and exit."""
        process = self.nodes[index].process
        assert process is not None
        return process.terminate(timeout_s)

    def ensure_running(self) -> None:
        """Restart any gateway a test left stopped, and wait until nginx
        sends to each again: the next test starts on a whole fleet."""
        for node in self.nodes:
            if node.process is None or node.process.proc.poll() is not None:
                self.start_gateway(node.index)
        for node in self.nodes:
            wait_for(partial(self.in_rotation, node), 30, f"nginx sends to {node.address}")

    def in_rotation(self, node: Node) -> bool:
        """Whether nginx sends requests to ``node`` (it may have marked it
        failed for ``fail_timeout`` while it was down)."""
        seen: Counter[str] = Counter()
        with httpx.Client(timeout=5) as client:
            for _ in range(2 * len(self.nodes)):
                with contextlib.suppress(httpx.HTTPError):
                    response = client.get(self.url + "/health/live")
                    seen[answered_by(response.headers)] += 1
        return seen[node.address] > 0

    def close(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        # SIGTERM to all first: they drain side by side, not one after another.
        for process in self.processes():
            if process.proc.poll() is None:
                process.proc.send_signal(signal.SIGTERM)
        for process in self.processes():
            process.close()

    def processes(self) -> Iterator[ChildProcess]:
        for node in self.nodes:
            if node.process is not None:
                yield node.process
        if self.worker is not None:
            yield self.worker


def answered_by(headers: Mapping[str, str]) -> str:
    """The gateway (``host:port``) that answered through nginx (the last one
    it tried), from a response's headers (httpx's or aiohttp's)."""
    return headers.get("x-fleet-upstream", "").split(",")[-1].strip()


def _deployment(name: str, base_url: str, priority: int | None = None) -> dict[str, Any]:
    deployment: dict[str, Any] = {
        "id": name,
        "provider": "openai",
        "model": name,
        "base_url": base_url,
        "price": {"input_per_million": 1.0, "output_per_million": 2.0},
    }
    if priority is not None:
        deployment["priority"] = priority
    return deployment


def _model(
    name: str, deployments: list[dict[str, Any]], routing: dict[str, Any] | None = None
) -> dict[str, Any]:
    model: dict[str, Any] = {"name": name, "deployments": deployments}
    if routing is not None:
        model["routing"] = routing
    return model
