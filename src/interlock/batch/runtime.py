"""Batch inference put together from the config, once the records store is
open: the queue, the API's service and, where this process runs one, a
worker. The gateway (``app.py``) and ``interlock worker`` both use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from interlock.admission.accounting import Accounting
from interlock.admission.keys import KeyRing
from interlock.batch.load import OnlineLoad
from interlock.batch.metrics import BatchMetrics
from interlock.batch.queue import WorkQueue
from interlock.batch.runner import ItemRunner
from interlock.batch.service import BatchService
from interlock.batch.store import BatchStore
from interlock.batch.worker import BatchWorker
from interlock.config import GatewayConfig
from interlock.files.documents import Documents
from interlock.pipeline import Pipeline
from interlock.state import StateStore
from interlock.store import Store
from interlock.store.blobs import BlobStore
from interlock.telemetry.hub import Telemetry

if TYPE_CHECKING:
    from interlock.batch.webhooks import WebhookSender

__all__ = ["BatchRuntime", "build_queue", "open_batch", "queue_backend"]

log = logging.getLogger("interlock.batch")


def queue_backend(config: GatewayConfig) -> str:
    """``redis`` or ``sql``: what ``batch.queue.backend: auto`` means here."""
    backend = config.batch.queue.backend
    if backend == "auto":
        return "redis" if config.state.backend == "redis" else "sql"
    return backend


def build_queue(config: GatewayConfig, store: Store) -> WorkQueue:
    settings = config.batch.queue
    if queue_backend(config) == "redis":
        from interlock.batch.queue.redis_streams import RedisStreamQueue

        url = settings.url or config.state.url
        assert url is not None  # checked when the config was loaded
        prefix = settings.prefix if settings.prefix is not None else config.state.prefix
        return RedisStreamQueue.from_url(url, prefix=prefix, lease_s=settings.lease_s)
    from interlock.batch.queue.sql import SqlQueue

    return SqlQueue(store.engine, lease_s=settings.lease_s)


def build_webhooks(config: GatewayConfig) -> WebhookSender | None:
    settings = config.batch.webhooks
    if not settings.allowed_hosts or settings.secret is None:
        return None
    from interlock.batch.webhooks import WebhookSender

    return WebhookSender(
        settings.secret.reveal().encode(),
        max_attempts=settings.max_attempts,
        timeout_s=settings.timeout_s,
    )


@dataclass(slots=True)
class BatchRuntime:
    service: BatchService
    queue: WorkQueue
    worker: BatchWorker | None
    webhooks: WebhookSender | None
    load_watch: asyncio.Task[None] | None = None
    load: OnlineLoad | None = None

    async def aclose(self, drain_s: float | None = None) -> None:
        """Stop the worker (its in-flight work finished or given back), then
        the webhook client and the queue."""
        try:
            if self.worker is not None:
                await self.worker.stop(drain_s)
        finally:
            if self.load_watch is not None:
                if self.load is not None:
                    self.load.stop()
                self.load_watch.cancel()
                _, stuck = await asyncio.wait([self.load_watch], timeout=5.0)
                if stuck:
                    log.error("the online-load watch did not stop")
            if self.webhooks is not None:
                with contextlib.suppress(Exception):
                    await self.webhooks.aclose()
            await self.queue.aclose()


def open_batch(
    config: GatewayConfig,
    store: Store,
    pipeline: Pipeline,
    telemetry: Telemetry,
    accounting: Accounting,
    keys: KeyRing,
    blobs: BlobStore,
    metrics: BatchMetrics,
    state: StateStore,
    *,
    run_worker: bool,
    worker_name: str | None = None,
) -> BatchRuntime:
    """Batch inference on ``store``, with a worker started when ``run_worker``."""
    settings = config.batch
    queue = build_queue(config, store)
    batches = BatchStore(store.engine)
    webhooks = build_webhooks(config)
    check_webhook = None
    if webhooks is not None:
        from interlock.batch.webhooks import check_webhook_url

        hosts = tuple(settings.webhooks.allowed_hosts)

        def check_webhook(url: object) -> str:
            return check_webhook_url(url, hosts)

    worker_ref: list[BatchWorker] = []
    service = BatchService(
        settings,
        batches,
        store.files,
        queue,
        check_webhook=check_webhook,
        sweep_soon=lambda: worker_ref[0].sweep_soon() if worker_ref else None,
    )
    # Gateways raise the shared busy flag, workers read it (both, in one process).
    load = OnlineLoad(
        pipeline.admission.in_flight,
        settings.worker.yield_at,
        lambda: worker_ref[0].running_items if worker_ref else 0,
        state,
    )
    load_watch = asyncio.create_task(load.run(), name="batch-online-load")
    worker = None
    if run_worker:
        runner = ItemRunner(
            pipeline,
            telemetry,
            accounting,
            load,
            max_attempts=settings.worker.max_item_attempts,
            max_delay_s=settings.worker.max_delay_s,
            on_retry=lambda reason: metrics.retries.labels(reason).inc(),
            documents=Documents(store.files, blobs),
        )
        worker = BatchWorker(
            settings,
            batches,
            store.files,
            blobs,
            queue,
            runner,
            keys,
            metrics,
            webhooks=webhooks,
            name=worker_name,
        )
        worker_ref.append(worker)
        worker.start()
        log.info(
            "batch worker started",
            extra={
                "worker": worker.name,
                "queue": queue.engine,
                "concurrency": settings.worker.concurrency,
            },
        )
    return BatchRuntime(service, queue, worker, webhooks, load_watch, load)
