"""A batch worker: takes messages from the queue, runs their items, writes
their results, and keeps every batch moving to its final state.

Messages (JSON): ``{"op": "expand", "batch": id}`` reads a batch's input
file into items and enqueues its chunks; ``{"op": "chunk", "batch": id,
"chunk": n}`` runs the chunk's pending items. A message is acknowledged
only after its results are written; a worker that dies leaves its
messages to be delivered again once their leases lapse, and the store
writes each item's result once (``BatchStore.write_results``). Messages
held are renewed every third of the lease.

The sweeper, on every worker every ``sweep_s`` while any batch is open
(every ``idle_sweep_s`` while none is: ``interlock.batch.pace``), finishes
what no message will: a batch with nothing pending is finalized, one past
its window is expired, one cancelled is closed, and work whose worker died
mid-way (validating or finalizing too long, or no chunk done for
``stale_s`` while items wait) is taken over. Every step is a conditional
update, so several workers sweeping at once do each step once.

Shutdown (``stop``): no new messages; in-flight items get ``drain_s`` to
finish; then the rest stop, results so far are written and unfinished
messages go back to the queue at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable
from typing import IO, Any

import orjson

from interlock.admission.keys import KeyRing
from interlock.admission.principal import Principal
from interlock.batch.input import InputReader
from interlock.batch.metrics import BatchMetrics
from interlock.batch.output import write_lines
from interlock.batch.pace import SweepPace
from interlock.batch.queue import Delivery, QueueUnavailable, WorkQueue
from interlock.batch.records import BatchRow, BatchStatus, ItemStatus
from interlock.batch.runner import ItemRunner
from interlock.batch.store import BatchStore, ItemResult, PendingItem
from interlock.batch.webhooks import WebhookSender
from interlock.config.batch import BatchConfig
from interlock.store.blobs import BlobStore
from interlock.store.files import FileRecord, FileStore

__all__ = ["BatchWorker", "chunk_message", "expand_message", "worker_name"]

log = logging.getLogger("interlock.batch")

_PAGE = 1_000


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def expand_message(batch_id: str) -> bytes:
    return orjson.dumps({"op": "expand", "batch": batch_id})


def chunk_message(batch_id: str, chunk: int) -> bytes:
    return orjson.dumps({"op": "chunk", "batch": batch_id, "chunk": chunk})


class BatchWorker:
    def __init__(
        self,
        settings: BatchConfig,
        store: BatchStore,
        files: FileStore,
        blobs: BlobStore,
        queue: WorkQueue,
        runner: ItemRunner,
        keys: KeyRing,
        metrics: BatchMetrics,
        *,
        webhooks: WebhookSender | None = None,
        name: str | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.name = name or worker_name()
        self._store = store
        self._files = files
        self._blobs = blobs
        self._queue = queue
        self._runner = runner
        self._keys = keys
        self._metrics = metrics
        self._webhooks = webhooks
        self._clock = clock
        worker = settings.worker
        self._items = asyncio.Semaphore(worker.concurrency)
        self._max_held = math.ceil(worker.concurrency / settings.chunk_size) + 1
        self._held: dict[str, Delivery] = {}
        self._work: set[asyncio.Task[None]] = set()
        self._closed: set[str] = set()  # batches whose pending items must stop
        self._batches: dict[str, tuple[float, BatchRow]] = {}
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False
        self._taking = True
        self._closing = asyncio.Event()
        self._room = asyncio.Event()
        self._pace = SweepPace(worker.sweep_s, worker.idle_sweep_s, time.monotonic)
        self.running_items = 0

    # -- life cycle ----------------------------------------------------------

    def start(self) -> None:
        self._loops = [
            asyncio.create_task(self._take_loop(), name=f"batch-take {self.name}"),
            asyncio.create_task(self._renew_loop(), name=f"batch-renew {self.name}"),
            asyncio.create_task(self._sweep_loop(), name=f"batch-sweep {self.name}"),
        ]

    async def stop(self, drain_s: float | None = None) -> None:
        """Stop taking work; let items run ``drain_s``; give the rest back.

        Every loop also ends on a flag, not only on cancellation, and is
        waited for with a bound: a cancellation can be lost inside a client's
        own timeout (Python 3.11's ``asyncio.timeout`` turns one that lands
        as its deadline passes into a ``TimeoutError``, which a loop that
        retries on errors then survives), and a loop that outlives its
        cancellation would keep the process from exiting."""
        drain_s = self.settings.worker.drain_s if drain_s is None else drain_s
        self._taking = False
        if self._loops:
            self._loops[0].cancel()  # take no more work
        if self._work:
            await asyncio.wait(self._work, timeout=drain_s)
        self._stopping = True  # items still running give up at their next step
        if self._work:
            await asyncio.wait(self._work, timeout=max(5.0, drain_s))
        self._closing.set()
        for task in self._loops:
            task.cancel()
        if self._loops:
            _, stuck = await asyncio.wait(self._loops, timeout=5.0)
            if stuck:
                log.error("batch worker loops did not stop", extra={"loops": len(stuck)})
        held = list(self._held.values())
        self._held.clear()
        if held:
            with contextlib.suppress(QueueUnavailable):
                await self._queue.release(held)

    async def _rest(self, seconds: float) -> bool:
        """Sleep ``seconds``, or less if the worker closes; whether it did."""
        try:
            await asyncio.wait_for(self._closing.wait(), seconds)
        except TimeoutError:
            pass
        return self._closing.is_set()

    # -- taking and running messages -----------------------------------------

    async def _take_loop(self) -> None:
        backoff = 0.5
        while self._taking:
            room = self._max_held - len(self._held)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            try:
                deliveries = await self._queue.take(self.name, room, wait_s=2.0)
                backoff = 0.5
            except QueueUnavailable as exc:
                log.warning("batch queue unavailable", extra={"error": str(exc)})
                await self._rest(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            except Exception as exc:  # our bug: logged, and the worker goes on
                log.error("taking batch work failed", exc_info=exc)
                await self._rest(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if not self._taking:  # stopping meanwhile: back to the queue at once
                with contextlib.suppress(QueueUnavailable):
                    await self._queue.release(deliveries)
                return
            if deliveries:
                self._pace.wake()  # their batch is open: watch it closely
            for delivery in deliveries:
                self._held[delivery.id] = delivery
                task = asyncio.create_task(self._handle(delivery))
                self._work.add(task)
                task.add_done_callback(self._work.discard)

    async def _renew_loop(self) -> None:
        interval = self.settings.queue.lease_s / 3
        while not await self._rest(interval):
            held = list(self._held.values())
            if held:
                try:
                    await self._queue.extend(self.name, held)
                except QueueUnavailable as exc:
                    log.warning("batch lease renewal failed", extra={"error": str(exc)})

    async def _handle(self, delivery: Delivery) -> None:
        finished = False
        try:
            message = orjson.loads(delivery.payload)
            if message.get("op") == "expand":
                await self._expand(str(message["batch"]))
                finished = True
            elif message.get("op") == "chunk":
                finished = await self._chunk(str(message["batch"]), int(message["chunk"]))
            else:
                log.error("unknown batch message dropped", extra={"payload": str(message)[:200]})
                finished = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a store or blob outage, or our bug: delivered again later
            log.error("batch message failed; it will be delivered again", exc_info=exc)
        finally:
            self._held.pop(delivery.id, None)
            self._room.set()
        try:
            if finished:
                await self._queue.ack([delivery])
            else:
                await self._queue.release([delivery])
        except QueueUnavailable as exc:
            log.warning("batch queue unavailable after a message", extra={"error": str(exc)})

    async def _batch(self, batch_id: str, fresh: bool = False) -> BatchRow | None:
        """The batch, from a short-lived cache (chunks of one batch ask often)."""
        now = time.monotonic()
        cached = self._batches.get(batch_id)
        if cached is not None and not fresh and now - cached[0] < 1.0:
            return cached[1]
        batch = await self._store.get(batch_id, counts=False)
        if batch is None:
            self._batches.pop(batch_id, None)
            return None
        self._batches[batch_id] = (now, batch)
        if len(self._batches) > 1_000:
            self._batches.pop(next(iter(self._batches)))
        return batch

    async def _chunk(self, batch_id: str, chunk: int) -> bool:
        """Run the chunk's pending items; whether the message is done."""
        batch = await self._batch(batch_id)
        if batch is not None and batch.status is not BatchStatus.IN_PROGRESS:
            batch = await self._batch(batch_id, fresh=True)  # the cached status may be old
        if batch is None or batch.status is not BatchStatus.IN_PROGRESS:
            return True  # gone, or closing: the sweeper settles its items
        items = await self._store.pending_in_chunk(batch_id, chunk)
        if not items:
            return True
        principal = _PrincipalCache(self._keys, batch.key_name)
        stopped = self._stopper(batch_id)
        endpoint = batch.endpoint
        outcomes = await asyncio.gather(
            *(
                self._item(item, endpoint, principal.get, batch.expires_at, stopped)
                for item in items
            )
        )
        results = [r for r in outcomes if r is not None]
        await self._store.write_results(batch_id, results, self.name)
        self._count(endpoint, results)
        self._metrics.last_progress.set(self._clock())
        if len(results) < len(items) and self._stopping:
            return False  # the unfinished items go back to the queue
        await self._maybe_finish(batch)
        return True

    async def _item(
        self,
        item: PendingItem,
        endpoint: str,
        principal: Callable[[], Principal],
        deadline: float,
        stopped: Callable[[], bool],
    ) -> ItemResult | None:
        async with self._items:
            if stopped():
                return None
            self.running_items += 1
            self._metrics.in_flight.inc()
            began = time.perf_counter()
            try:
                return await self._runner.run(item, endpoint, principal, deadline, stopped)
            finally:
                self.running_items -= 1
                self._metrics.in_flight.dec()
                self._metrics.item_duration.labels(endpoint).observe(time.perf_counter() - began)

    def _stopper(self, batch_id: str) -> Callable[[], bool]:
        return lambda: self._stopping or batch_id in self._closed

    def _count(self, endpoint: str, results: list[ItemResult]) -> None:
        for result in results:
            self._metrics.items.labels(endpoint, result.status.value).inc()

    async def _maybe_finish(self, batch: BatchRow) -> None:
        if await self._store.any_pending(batch.id):
            await self._store.update(batch.id)  # progress: the sweeper leaves it alone
            return
        now = int(self._clock())
        if await self._store.transition(
            batch.id, [BatchStatus.IN_PROGRESS], BatchStatus.FINALIZING, finalizing_at=now
        ):
            await self._finalize(batch.id)

    # -- expanding a batch's input -------------------------------------------

    async def _expand(self, batch_id: str) -> None:
        batch = await self._batch(batch_id, fresh=True)
        if batch is None or batch.status is not BatchStatus.VALIDATING:
            return
        settings = self.settings
        if batch.kind == "batch":
            assert batch.input_file_id is not None
            with tempfile.TemporaryFile() as local:
                try:
                    await self._blobs.copy_to(batch.input_file_id, local)
                except FileNotFoundError:
                    await self._fail(batch, "file_not_found", "The input file no longer exists.")
                    return
                reader = InputReader(
                    _rewound(local), batch.endpoint, settings.chunk_size, settings.max_requests
                )
                while not reader.done:
                    page = await asyncio.to_thread(reader.page, _PAGE)
                    await self._store.add_items(batch_id, page)
            if reader.error is not None:
                await self._store.delete_items(batch_id)
                error = reader.error
                await self._fail(batch, error.code, error.message, error.line)
                return
            total = reader.count
        else:
            total = batch.total
        # In progress first, then the chunks: a chunk taken by another worker
        # must find its batch running. A crash in between leaves a running
        # batch without messages, which the sweeper enqueues after stale_s.
        started = await self._store.transition(
            batch_id,
            [BatchStatus.VALIDATING],
            BatchStatus.IN_PROGRESS,
            total=total,
            in_progress_at=int(self._clock()),
        )
        if started:
            chunks = await self._store.chunks(batch_id)
            await self._queue.put([chunk_message(batch_id, c) for c in chunks])

    async def _fail(
        self, batch: BatchRow, code: str, message: str, line: int | None = None
    ) -> None:
        error = {"code": code, "message": message, "param": None, "line": line}
        if await self._store.transition(
            batch.id,
            [BatchStatus.VALIDATING],
            BatchStatus.FAILED,
            failed_at=int(self._clock()),
            errors=orjson.dumps([error]).decode(),
        ):
            self._metrics.batches.labels(batch.kind, BatchStatus.FAILED.value).inc()
            await self._notify(batch.id)

    # -- finishing a batch -----------------------------------------------------

    async def _finalize(self, batch_id: str) -> None:
        """Write the result files and move to the final status (the caller
        moved the batch to FINALIZING, or took it over)."""
        batch = await self._store.get(batch_id, counts=False)
        if batch is None or batch.status is not BatchStatus.FINALIZING:
            return
        if batch.expired_at is not None:
            await self._store.close_pending(batch_id, ItemStatus.EXPIRED)
            final, stamp = BatchStatus.EXPIRED, {}
        elif batch.cancelling_at is not None:
            await self._store.close_pending(batch_id, ItemStatus.CANCELLED)
            final, stamp = BatchStatus.CANCELLED, {"cancelled_at": int(self._clock())}
        else:
            final, stamp = BatchStatus.COMPLETED, {"completed_at": int(self._clock())}
        files: dict[str, Any] = {}
        if batch.kind == "batch":
            files = await self._write_files(batch)
        if await self._store.transition(
            batch_id, [BatchStatus.FINALIZING], final, **stamp, **files
        ):
            self._metrics.batches.labels(batch.kind, final.value).inc()
            self._metrics.batch_done(batch_id)
            self._closed.discard(batch_id)
            log.info(
                "batch finished",
                extra={"batch_id": batch_id, "status": final.value, "total": batch.total},
            )
            await self._notify(batch_id)

    async def _write_files(self, batch: BatchRow) -> dict[str, str | None]:
        with tempfile.TemporaryFile() as output, tempfile.TemporaryFile() as errors:
            good = bad = 0
            page: list[Any] = []
            async for item in self._store.items(batch.id):
                page.append(item)
                if len(page) >= _PAGE:
                    g, b = write_lines(page, output, errors)
                    good, bad, page = good + g, bad + b, []
            g, b = write_lines(page, output, errors)
            good, bad = good + g, bad + b
            found: dict[str, str | None] = {"output_file_id": None, "error_file_id": None}
            for field, suffix, file, lines in (
                ("output_file_id", "output", output, good),
                ("error_file_id", "errors", errors, bad),
            ):
                if lines:
                    found[field] = await self._store_file(batch, suffix, file, lines)
        return found

    async def _store_file(self, batch: BatchRow, suffix: str, file: IO[bytes], lines: int) -> str:
        # One id per batch and kind: finalizing again (a worker died in it)
        # overwrites the same blob and finds the record there already.
        file_id = f"file-{batch.id}-{suffix}"
        file.flush()
        size = file.tell()
        await self._blobs.put(file_id, file)  # type: ignore[arg-type]
        if await self._files.get(batch.key_name, file_id) is None:
            await self._files.add(
                FileRecord(
                    id=file_id,
                    key_name=batch.key_name,
                    filename=f"{batch.id}_{suffix}.jsonl",
                    purpose="batch_output",
                    bytes=size,
                    lines=lines,
                    created_at=int(self._clock()),
                )
            )
        return file_id

    async def _notify(self, batch_id: str) -> None:
        """The webhook, if the batch has one, in the background."""
        if self._webhooks is None:
            return
        batch = await self._store.get(batch_id)
        if batch is None or batch.webhook_url is None or batch.webhook_state != "pending":
            return
        task = asyncio.create_task(self._deliver(batch))
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def _deliver(self, batch: BatchRow) -> None:
        assert self._webhooks is not None and batch.webhook_url is not None
        event = {
            "type": f"{batch.kind}.{batch.status.value}",
            "data": batch.to_job_json() if batch.kind == "job" else batch.to_json(),
        }
        delivered = await self._webhooks.deliver(
            batch.webhook_url, event, event_id=f"{batch.id}.{batch.status.value}"
        )
        await self._store.update(batch.id, webhook_state="delivered" if delivered else "failed")

    # -- the sweeper -----------------------------------------------------------

    async def _sweep_loop(self) -> None:
        pace = self._pace
        while not await self._rest(pace.every_s):
            if not pace.due():
                continue
            self._metrics.sweeps.inc()
            try:
                anything_open = await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store or queue is out: next round
                log.warning("batch sweep failed", extra={"error": str(exc)})
                anything_open = True
            pace.swept(anything_open)

    def sweep_soon(self) -> None:
        """Sweep at the next tick: a batch was opened or cancelled in this
        process (its sweeper may be resting at the idle pace)."""
        self._pace.wake()

    async def sweep(self) -> bool:
        """One round of the sweeper (see the module's docstring); whether it
        found a batch open or awaiting its webhook."""
        now = self._clock()
        stale = now - self.settings.worker.stale_s
        store = self._store
        active = await store.active()
        # The batches whose running items must stop: closing, or out of time.
        self._closed = {
            b.id
            for b in active
            if b.status in (BatchStatus.CANCELLING, BatchStatus.FINALIZING)
            or (b.status is BatchStatus.IN_PROGRESS and b.expires_at <= now)
        }
        for batch in active:
            if batch.status is BatchStatus.VALIDATING:
                if batch.touched_at < stale and await store.claim(batch.id, batch.status, stale):
                    await self._queue.put([expand_message(batch.id)])
            elif batch.status is BatchStatus.IN_PROGRESS:
                await self._sweep_running(batch, now, stale)
            elif batch.status is BatchStatus.CANCELLING:
                if await store.transition(
                    batch.id,
                    [BatchStatus.CANCELLING],
                    BatchStatus.FINALIZING,
                    finalizing_at=int(now),
                ):
                    await self._finalize(batch.id)
            elif batch.status is BatchStatus.FINALIZING:
                if batch.touched_at < stale and await store.claim(batch.id, batch.status, stale):
                    await self._finalize(batch.id)
        awaiting = await store.awaiting_webhook(stale)
        for batch in awaiting:
            if self._webhooks is not None and await store.claim(batch.id, batch.status, stale):
                await self._deliver(batch)
        try:
            self._metrics.queue_depth.set(await self._queue.depth())
        except QueueUnavailable:
            pass
        return bool(active or awaiting)

    async def _sweep_running(self, batch: BatchRow, now: float, stale: float) -> None:
        store = self._store
        if batch.expires_at <= now:
            if await store.transition(
                batch.id,
                [BatchStatus.IN_PROGRESS],
                BatchStatus.FINALIZING,
                expired_at=int(now),
                finalizing_at=int(now),
            ):
                await self._finalize(batch.id)
        elif (pending := await store.pending_count(batch.id)) == 0:
            if await store.transition(
                batch.id, [BatchStatus.IN_PROGRESS], BatchStatus.FINALIZING, finalizing_at=int(now)
            ):
                await self._finalize(batch.id)
        else:
            if batch.total:  # once a sweep, not once a chunk: a count visits every pending item
                self._metrics.progress.labels(batch.id).set(1 - pending / batch.total)
            if batch.touched_at < stale and await store.claim(batch.id, batch.status, stale):
                await self._requeue(batch)

    async def _requeue(self, batch: BatchRow) -> None:
        """No chunk finished for stale_s: its messages may be lost (a queue
        restarted without persistence). Enqueue the chunks that still have
        pending items again; a duplicate only redoes no work."""
        log.warning("batch made no progress; re-enqueuing", extra={"batch_id": batch.id})
        chunks = await self._store.chunks(batch.id, pending_only=True)
        await self._queue.put([chunk_message(batch.id, c) for c in chunks])


class _PrincipalCache:
    """The key's principal, looked up again every second: a revoked key
    stops its batch within a second of the worker learning of it."""

    def __init__(self, keys: KeyRing, name: str):
        self._keys = keys
        self._name = name
        self._at = -math.inf
        self._principal: Principal | None = None

    def get(self) -> Principal:
        now = time.monotonic()
        if self._principal is None or now - self._at > 1.0:
            self._principal = ItemRunner.as_batch(self._keys.principal_named(self._name))
            self._at = now
        return self._principal


def _rewound(file: IO[bytes]) -> IO[bytes]:
    file.seek(0)
    return file
