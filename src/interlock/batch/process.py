"""``interlock worker``: batch workers in a process of their own.

The same config as ``interlock serve``, the same composition root
(``build_gateway``: pipeline, admission, guardrails, cache, router with its
breakers, telemetry, usage ledger), with no HTTP server; only a Prometheus
endpoint (``--metrics-port``) for the worker's metrics. Scale by starting
more of them: they share the queue (Redis Streams or the records store's
table) and the records store.

The process runs at ``batch.worker.nice`` (10 by default): where it shares
a machine with gateways, the kernel gives online requests the CPU first.

SIGTERM or SIGINT stops taking work; items in flight get
``batch.worker.drain_s`` to finish and the rest go back to the queue, then
the usage ledger is flushed. A second signal does not hurry it: the drain
is bounded already.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

from interlock.config import GatewayConfig
from interlock.redaction import Redactor

__all__ = ["run_worker"]

log = logging.getLogger("interlock.batch")


def run_worker(
    config: GatewayConfig,
    *,
    metrics_host: str,
    metrics_port: int | None,
    redactor: Redactor,
) -> int:
    _lower_priority(config.batch.worker.nice)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - not on Windows
        pass
    return asyncio.run(_run(config, metrics_host, metrics_port, redactor))


def _lower_priority(nice: int) -> None:
    """Batch work is lower priority than online work, also for the CPU."""
    if nice <= 0 or not hasattr(os, "nice"):
        return
    try:
        os.nice(nice)
    except OSError as exc:  # not allowed here: the worker runs at normal priority
        log.warning("could not lower the worker's priority", extra={"error": str(exc)})


async def _run(
    config: GatewayConfig, metrics_host: str, metrics_port: int | None, redactor: Redactor
) -> int:
    from interlock.app import build_gateway  # the whole gateway: only when a worker runs

    if not config.batch.enabled:
        print("error: batch.enabled is false in this config", file=sys.stderr)
        return 1
    gateway = build_gateway(config, redactor=redactor, batch_worker=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server: Any = None
    async with gateway.lifespan():
        runtime = gateway.services.batches
        worker = runtime.runtime.worker if runtime.runtime is not None else None
        address = "off"
        if metrics_port is not None:
            from prometheus_client import start_http_server

            server, _thread = start_http_server(
                metrics_port, metrics_host, registry=gateway.services.telemetry.metrics.registry
            )
            address = f"http://{metrics_host}:{server.server_port}/metrics"
        queue = runtime.runtime.queue.engine if runtime.runtime is not None else "?"
        name = worker.name if worker is not None else "?"
        print(f"Interlock worker {name} ready (queue {queue}; metrics {address})", flush=True)
        await stop.wait()
        log.info("batch worker stopping", extra={"worker": name})
    if server is not None:
        server.shutdown()
    await _end_stray_tasks()
    return 0


async def _end_stray_tasks() -> None:
    """Cancel what is still running, with a bound. ``asyncio.run`` would
    wait without one, and a task that lost its cancellation (see
    ``BatchWorker.stop``) would keep the process alive after a clean drain:
    by now the work is handed back and the ledger flushed, so such a task
    is logged and the process leaves without it."""
    current = asyncio.current_task()
    stray = [task for task in asyncio.all_tasks() if task is not current]
    for task in stray:
        task.cancel()
    if not stray:
        return
    _, stuck = await asyncio.wait(stray, timeout=5.0)
    if stuck:
        log.error(
            "tasks did not stop at shutdown; exiting without them",
            extra={"tasks": sorted(task.get_name() for task in stuck)},
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
