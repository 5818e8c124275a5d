"""Batch inference's metrics, on the gateway's (or worker's) registry.

``interlock_batch_progress_ratio`` has a batch-id label: bounded by the
batches running now, since a batch's series is removed when it finishes.
``interlock_batch_last_progress_timestamp_seconds`` is what the stuck-queue
alert reads: work waiting, and none done for a while.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["BatchMetrics"]

_ITEM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class BatchMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.queue_depth = Gauge(
            "interlock_batch_queue_depth",
            "Queue messages (chunks of batch items) not yet done, as this process last saw.",
            multiprocess_mode="max",
            registry=registry,
        )
        self.items = Counter(
            "interlock_batch_items",
            "Batch items finished, by endpoint and outcome.",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.item_duration = Histogram(
            "interlock_batch_item_duration_seconds",
            "Time from a worker starting an item to its result, waits included.",
            ["endpoint"],
            buckets=_ITEM_BUCKETS,
            registry=registry,
        )
        self.retries = Counter(
            "interlock_batch_item_retries",
            "Times an item waited or was tried again, by reason.",
            ["reason"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "interlock_batch_items_in_flight",
            "Batch items being run now.",
            multiprocess_mode="livesum",
            registry=registry,
        )
        self.progress = Gauge(
            "interlock_batch_progress_ratio",
            "Share of a running batch's items finished.",
            ["batch"],
            multiprocess_mode="max",
            registry=registry,
        )
        self.last_progress = Gauge(
            "interlock_batch_last_progress_timestamp_seconds",
            "When a worker last finished a chunk of items (unix time).",
            multiprocess_mode="max",
            registry=registry,
        )
        self.sweeps = Counter(
            "interlock_batch_sweeps",
            "Sweeps of the batch store for finished, expired, cancelled and stuck "
            "batches (every batch.worker.sweep_s while one is open, idle_sweep_s while none is).",
            registry=registry,
        )
        self.batches = Counter(
            "interlock_batches_finished",
            "Batches and jobs that reached a final status.",
            ["kind", "status"],
            registry=registry,
        )
        self.last_progress.set(time.time())

    def batch_done(self, batch_id: str) -> None:
        try:
            self.progress.remove(batch_id)
        except KeyError:
            pass
