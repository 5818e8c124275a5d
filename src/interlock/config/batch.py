"""Batch and async inference (``batch:``): the queue, the workers' pace and
the limits of batches and jobs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from interlock.config.base import Secret, _Strict

__all__ = ["BatchConfig", "BatchQueueConfig", "BatchWebhooksConfig", "BatchWorkerConfig"]


class BatchQueueConfig(_Strict):
    """The durable queue batch items travel through: Redis Streams, or a table in
    the records store."""

    # auto: Redis Streams when state.backend is redis, else the records store's table.
    backend: Literal["auto", "redis", "sql"] = "auto"
    # The redis backend's Redis URL; unset: state.url.
    url: str | None = None
    # Put before the redis backend's keys; unset: state.prefix.
    prefix: str | None = None
    # A message whose worker stopped renewing its lease is delivered again after this.
    lease_s: float = Field(default=30.0, gt=0, le=3600)


class BatchWorkerConfig(_Strict):
    """The workers that run batch items: where they run, how many items at once,
    how they yield to online traffic and how they shut down."""

    # The gateway runs a worker in its own process (the embedded default);
    # false when dedicated `interlock worker` processes do the work.
    in_process: bool = True
    # Items in flight per worker: at most concurrency / upstream latency items/s
    # each (32 at 2 s: 16/s; raise it, or run more workers, for slow models).
    # Against a fast upstream 64 was no faster than 32 and, with PostgreSQL on
    # the same two CPUs, raised online p95 by a third (bench/results/batch-throughput.md).
    concurrency: int = Field(default=32, ge=1, le=4096)
    # Batch items wait while online requests fill this share of limits.max_in_flight.
    yield_at: float = Field(default=0.5, gt=0, le=1)
    # Attempts per item for upstream failures (each one the router's own retries).
    max_item_attempts: int = Field(default=3, ge=1, le=20)
    # A 429 or 503 from admission delays the item by Retry-After, at most this long.
    max_delay_s: float = Field(default=30.0, gt=0, le=3600)
    # Seconds between each worker's sweeps for finished, expired, cancelled and stuck batches.
    sweep_s: float = Field(default=1.0, gt=0, le=60)
    # ...and while no batch is open anywhere, so an idle gateway does not read
    # the store three times a second. Work taken from the queue, or a batch
    # created or cancelled through this process, brings sweep_s back at once;
    # a worker that does neither sees a new batch within this.
    idle_sweep_s: float = Field(default=30.0, gt=0, le=3600)
    # A batch nobody touched for this long while finalizing (or validating) is picked up again.
    stale_s: float = Field(default=60.0, gt=0, le=86_400)
    # `interlock worker` processes run at this nice value (0-19): on a machine
    # shared with gateways, the scheduler serves online requests first.
    nice: int = Field(default=10, ge=0, le=19)
    # Grace for in-flight items at shutdown; what is unfinished then goes back to the queue.
    drain_s: float = Field(default=20.0, ge=0, le=600)


class BatchWebhooksConfig(_Strict):
    """Webhooks POSTed when an async job or a batch finishes: the hosts they may
    go to, the key that signs them, delivery attempts and timeout."""

    # Hosts a job's webhook may point at (`*.example.com` for sub-domains);
    # empty: webhooks are off. The gateway posts nowhere an operator did not allow.
    allowed_hosts: list[str] = Field(default_factory=list)
    # The HMAC key of the Interlock-Signature header; required when hosts are allowed.
    secret: Secret | None = None
    # Delivery attempts per event, the first included; 408, 429, 5xx, timeouts and
    # connection errors are retried with backoff, other statuses are final.
    max_attempts: int = Field(default=6, ge=1, le=20)
    # Seconds one delivery attempt may take; past it the attempt fails and may be retried.
    timeout_s: float = Field(default=10.0, gt=0, le=120)


class BatchConfig(_Strict):
    # The Batches API, async jobs and Anthropic's Message Batches (/v1/batches, /v1/jobs,
    # /v1/messages/batches); false: they answer 503,
    # no worker runs in the gateway and `interlock worker` refuses to start.
    enabled: bool = True
    # The durable queue items travel through (Redis Streams or the records store).
    queue: BatchQueueConfig = Field(default_factory=BatchQueueConfig)
    # Where items are run, how many at once, and how they yield to online requests.
    worker: BatchWorkerConfig = Field(default_factory=BatchWorkerConfig)
    # Signed webhooks when a job or batch finishes; off until hosts are allowed.
    webhooks: BatchWebhooksConfig = Field(default_factory=BatchWebhooksConfig)
    # Items per queue message: the unit a worker takes, and redoes if it dies.
    chunk_size: int = Field(default=50, ge=1, le=10_000)
    # OpenAI's limit: 50,000 requests per batch.
    max_requests: int = Field(default=50_000, ge=1)
    # Requests in one async job (POST /v1/jobs); more: 400 (use the Batches API).
    max_job_requests: int = Field(default=1_000, ge=1, le=100_000)
    # Largest POST /v1/messages/batches body, in bytes (413 beyond): its requests come
    # in the body, held in memory while they are stored. Anthropic's limit: 256 MB.
    max_message_batch_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # How long "24h" is: shorter only for drills and tests.
    window_s: float = Field(default=86_400.0, gt=0)
