"""Runs the app under uvicorn with graceful drain on SIGTERM/SIGINT.

On the first signal: readiness turns 503, the connections waiting in the
listen queue are taken, listeners close (new connections are refused),
in-flight requests and streams finish for up to ``drain_timeout_s``, then the
process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import TextIO

import uvicorn

from interlock.api.middleware import DrainState
from interlock.api.protocol import GatewayProtocol
from interlock.app import create_app
from interlock.config import GatewayConfig
from interlock.redaction import Redactor

__all__ = ["GatewayServer", "serve"]

# Young-generation collections start after this many more container objects
# allocated than freed. CPython's 700 is below the live set of a few dozen
# in-flight requests, so it collected every ~17 requests (~9 µs of CPU per
# request here, gc.callbacks); above that live set, request garbage (freed by
# reference counting) never triggers a collection and only objects that stay
# (cache entries, pooled connections) do. bench/README.md has the figures.
GC_YOUNG_THRESHOLD = 50_000


class GatewayServer(uvicorn.Server):
    """``out``: where the listening address and ``banner`` go once started;
    None for a worker process, whose supervisor announces the socket."""

    def __init__(
        self,
        config: uvicorn.Config,
        drain: DrainState,
        banner: list[str],
        out: TextIO | None,
        on_started: Callable[[], None] | None = None,
    ):
        super().__init__(config)
        self._drain = drain
        self._banner = banner
        self._out = out
        self._on_started = on_started

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Unlike uvicorn's, this does not re-raise the signal after shutdown:
        # a drained gateway exits 0.
        self._drain.draining = True
        if self._drain.began_at is None:
            self._drain.began_at = time.monotonic()
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self._serve_the_listen_queue()
        await super().shutdown(sockets)

    async def _serve_the_listen_queue(self) -> None:
        """Accept every connection the kernel holds for us, then close the
        listeners, before uvicorn's drain begins.

        Closing a listening socket resets the connections whose handshake the
        kernel completed but the server had not accepted yet. A proxy
        (nginx) may already have sent a request on one: it sees the reset and
        answers its client 502, and never resends a POST elsewhere (seen in
        ``tests/scale``'s rolling restart under load). Taken here, they are
        served like any connection in the drain (``Connection: close``); only
        one that arrives between the last ``accept`` and the close, a few
        microseconds, is still reset.
        """
        loop = asyncio.get_running_loop()
        taken: list[socket.socket] = []
        for server in self.servers:
            for listener in server.sockets:
                # A second descriptor of the same socket: accept() on
                # asyncio's own is not allowed, and closing this one leaves it.
                queue = socket.socket(fileno=os.dup(listener.fileno()))
                try:
                    queue.setblocking(False)
                    while True:
                        try:
                            connection, _ = queue.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        taken.append(connection)
                finally:
                    queue.close()
            server.close()  # uvicorn closes it again, harmlessly
        for connection in taken:
            with contextlib.suppress(OSError):  # the client gave up meanwhile
                await loop.connect_accepted_socket(
                    self._new_protocol, connection, ssl=self.config.ssl
                )

    def _new_protocol(self) -> asyncio.Protocol:
        """A connection's protocol, as uvicorn's listeners make them."""
        protocol: asyncio.Protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config, server_state=self.server_state, app_state=self.lifespan.state
        )
        return protocol

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        settle_heap()
        if self._on_started is not None:
            self._on_started()
        if self._out is None:
            return
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                self._out.write(f"Interlock listening on http://{host}:{port}\n")
        for line in self._banner:
            self._out.write(line + "\n")
        self._out.flush()


def settle_heap() -> None:
    """Once started: everything built so far (modules, config, pools) lives
    for the whole process, so it leaves the collector's sight and full
    collections only walk per-request garbage, and do not stall streams;
    young collections come less often (``GC_YOUNG_THRESHOLD``)."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def serve(
    config: GatewayConfig,
    host: str,
    port: int,
    banner: list[str] | None = None,
    out: TextIO | None = sys.stdout,
    redactor: Redactor | None = None,
    sock: socket.socket | None = None,
    on_started: Callable[[], None] | None = None,
) -> int:
    """``redactor``: the one the process's logs use (default: built from
    ``config``). ``sock``: an already listening socket to serve instead of
    binding ``host:port`` (a worker process's, shared with its siblings)."""
    drain = DrainState()
    app = create_app(config, drain=drain, redactor=redactor)
    uv_config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop" if sys.platform != "win32" else "asyncio",
        # httptools with bounds on what one client may hold (ADR 0012).
        http=GatewayProtocol.bind(config.server),
        # No route speaks WebSocket: an Upgrade request is plain HTTP.
        ws="none",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        # We log no client addresses; uvicorn's X-Forwarded-For rewriting
        # would cost every request for nothing.
        proxy_headers=False,
        timeout_graceful_shutdown=int(config.server.drain_timeout_s),
    )
    server = GatewayServer(uv_config, drain, banner or [], out, on_started)
    server.run(sockets=None if sock is None else [sock])
    return 0 if server.started else 1
