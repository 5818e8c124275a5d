"""What the Batches, Jobs and Message Batches APIs do: create, read, list,
cancel (and delete, for a message batch that ended).

Creating stores the batch (``validating``) and enqueues one ``expand``
message; a worker does the rest. If the queue cannot take the message the
batch is still created, and the sweeper enqueues it once it has waited
``stale_s``: a client that retried on an error would have two batches.
A job brings its requests in its POST: they are stored with it, so its
``expand`` only enqueues their chunks.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from interlock.batch.endpoints import BACKGROUND_RESPONSE
from interlock.batch.queue import QueueUnavailable, WorkQueue
from interlock.batch.records import BatchRow, BatchStatus, RequestCounts, new_batch_id
from interlock.batch.store import BatchStore, NewItem, StoredItem
from interlock.batch.worker import expand_message
from interlock.config.batch import BatchConfig
from interlock.errors import InvalidRequest, NotFound
from interlock.files.batch_input import BATCH_ENDPOINTS
from interlock.store.files import FileStore

__all__ = ["BACKGROUND", "MESSAGE_BATCH", "BatchService", "background_job_id"]

log = logging.getLogger("interlock.batch")

_WINDOWS = ("24h",)
_MAX_METADATA = 16
_CUSTOM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # Anthropic's pattern
MESSAGE_BATCH = "message_batch"
BACKGROUND = "background"  # a background response of the Responses API


class BatchService:
    def __init__(
        self,
        settings: BatchConfig,
        store: BatchStore,
        files: FileStore,
        queue: WorkQueue,
        *,
        check_webhook: Callable[[object], str] | None = None,
        sweep_soon: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.store = store
        self._files = files
        self._queue = queue
        self._check_webhook = check_webhook
        # This process's sweeper looks at once after a batch is opened or
        # cancelled here, whatever pace an idle store had slowed it to.
        self._sweep_soon = sweep_soon
        self._clock = clock

    async def create_batch(self, key_name: str, body: Mapping[str, Any]) -> BatchRow:
        endpoint = _endpoint(body.get("endpoint"))
        if body.get("completion_window") not in _WINDOWS:
            raise InvalidRequest('`completion_window` must be "24h".', param="completion_window")
        file_id = body.get("input_file_id")
        if not isinstance(file_id, str) or not file_id:
            raise InvalidRequest("`input_file_id` is required.", param="input_file_id")
        record = await self._files.get(key_name, file_id)
        if record is None:
            raise NotFound(f"No such File object: {file_id}", code="file_not_found")
        if record.purpose != "batch":
            raise InvalidRequest(
                f"The file's purpose is {record.purpose!r}; a batch needs purpose `batch`.",
                param="input_file_id",
            )
        if record.lines > self.settings.max_requests:
            raise InvalidRequest(
                f"The file has {record.lines:,} requests; a batch may have "
                f"{self.settings.max_requests:,}.",
                param="input_file_id",
            )
        batch = self._new(key_name, "batch", endpoint, record.lines, _metadata(body))
        batch.input_file_id = file_id
        await self.store.create(batch)
        await self._enqueue(batch)
        return batch

    async def create_job(self, key_name: str, body: Mapping[str, Any]) -> BatchRow:
        """``{"requests": [...], "endpoint"?, "webhook_url"?, "metadata"?}``:
        each request a body, or ``{"custom_id", "body"}``."""
        endpoint = _endpoint(body.get("endpoint", "/v1/chat/completions"))
        requests = body.get("requests")
        limit = self.settings.max_job_requests
        if not isinstance(requests, list) or not requests:
            raise InvalidRequest("`requests` must be a non-empty list.", param="requests")
        if len(requests) > limit:
            raise InvalidRequest(
                f"A job has at most {limit:,} requests; use the Batches API for more.",
                param="requests",
            )
        items = _job_items(requests, self.settings.chunk_size)
        batch = self._new(key_name, "job", endpoint, len(items), _metadata(body))
        webhook = body.get("webhook_url")
        if webhook is not None:
            if self._check_webhook is None:
                raise InvalidRequest("Webhooks are disabled on this gateway.", param="webhook_url")
            batch.webhook_url = self._check_webhook(webhook)
            batch.webhook_state = "pending"
        await self.store.create(batch, items)
        await self._enqueue(batch)
        return batch

    async def create_message_batch(self, key_name: str, body: Mapping[str, Any]) -> BatchRow:
        """Anthropic's ``{"requests": [{"custom_id", "params"}, ...]}``: each
        ``params`` a Messages request, checked when it runs (its own
        ``errored`` result if it is bad, as Anthropic does)."""
        requests = body.get("requests")
        limit = self.settings.max_requests
        if not isinstance(requests, list) or not requests:
            raise InvalidRequest("requests: must be a non-empty list.", param="requests")
        if len(requests) > limit:
            raise InvalidRequest(
                f"requests: a batch may have at most {limit:,} requests.", param="requests"
            )
        unknown = sorted(set(body) - {"requests"})
        if unknown:
            raise InvalidRequest(f"{unknown[0]}: Extra inputs are not permitted", param=unknown[0])
        items = _message_batch_items(requests, self.settings.chunk_size)
        batch = self._new(key_name, MESSAGE_BATCH, "/v1/messages", len(items), None)
        await self.store.create(batch, items)
        await self._enqueue(batch)
        return batch

    async def create_background(
        self, key_name: str, response_id: str, envelope: Mapping[str, Any]
    ) -> BatchRow:
        """A job of one item that runs a background response (``envelope``:
        its chat body and its Response's shell); its id is the response's
        (``background_job_id``)."""
        batch = self._new(
            key_name, BACKGROUND, BACKGROUND_RESPONSE, 1, None, background_job_id(response_id)
        )
        item = NewItem(response_id, 0, 0, orjson.dumps(envelope).decode())
        await self.store.create(batch, [item])
        await self._enqueue(batch)
        return batch

    async def delete(self, key_name: str, batch_id: str, kind: str) -> None:
        """A finished batch and its results gone; a running one is refused."""
        batch = await self.get(key_name, batch_id, kind)
        if not batch.status.finished:
            raise InvalidRequest(
                f"The {_noun(kind)} {batch_id} has not ended; cancel it and wait for it "
                "to end before deleting it.",
                code=f"{kind}_not_deletable",
            )
        if not await self.store.delete(batch_id, key_name):
            raise NotFound(f"No such {_noun(kind)}: {batch_id}", code=f"{kind}_not_found")

    async def get(self, key_name: str, batch_id: str, kind: str = "batch") -> BatchRow:
        batch = await self.store.get(batch_id, key_name)
        if batch is None or batch.kind != kind:
            raise NotFound(f"No such {_noun(kind)}: {batch_id}", code=f"{kind}_not_found")
        return batch

    async def listing(
        self,
        key_name: str,
        *,
        limit: int,
        after: str | None,
        before: str | None = None,
        kind: str = "batch",
    ) -> tuple[list[BatchRow], bool]:
        return await self.store.listing(
            key_name, limit=limit, after=after, before=before, kind=kind
        )

    async def cancel(self, key_name: str, batch_id: str, kind: str = "batch") -> BatchRow:
        batch = await self.get(key_name, batch_id, kind)
        if batch.status in (BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS):
            await self.store.transition(
                batch_id,
                [BatchStatus.VALIDATING, BatchStatus.IN_PROGRESS],
                BatchStatus.CANCELLING,
                cancelling_at=int(self._clock()),
            )
            self._sweep_soon()
            return await self.get(key_name, batch_id, kind)
        if batch.shown_status in ("cancelling", "cancelled"):
            return batch
        noun = _noun(kind)
        raise InvalidRequest(
            f"The {noun} is {batch.shown_status}; only a validating or in-progress {noun} "
            "can be cancelled.",
            code=f"{kind}_not_cancellable",
        )

    async def results(self, batch_id: str) -> list[dict[str, Any]]:
        """A finished job's results, in request order."""
        return [_result(item) async for item in self.store.items(batch_id)]

    def _new(
        self,
        key_name: str,
        kind: str,
        endpoint: str,
        total: int,
        metadata: dict[str, str] | None,
        batch_id: str | None = None,
    ) -> BatchRow:
        now = self._clock()
        batch = BatchRow(
            id=batch_id or new_batch_id(kind),
            key_name=key_name,
            kind=kind,
            endpoint=endpoint,
            completion_window="24h",
            status=BatchStatus.VALIDATING,
            total=total,
            created_at=int(now),
            expires_at=int(now + self.settings.window_s),
            touched_at=now,
            metadata=metadata,
        )
        batch.counts = RequestCounts(total=total)
        return batch

    async def _enqueue(self, batch: BatchRow) -> None:
        self._sweep_soon()  # it also enqueues the batch if the queue is out now
        try:
            await self._queue.put([expand_message(batch.id)])
        except QueueUnavailable as exc:
            log.warning(
                "batch queue unavailable; the sweeper will enqueue the batch",
                extra={"batch_id": batch.id, "error": str(exc)},
            )


def background_job_id(response_id: str) -> str:
    """The job that runs a background response, found from the response's id."""
    return f"job_{response_id}"


def _noun(kind: str) -> str:
    return kind.replace("_", " ")  # message_batch: "message batch"


def _endpoint(value: object) -> str:
    if value not in BATCH_ENDPOINTS:
        allowed = ", ".join(sorted(BATCH_ENDPOINTS))
        raise InvalidRequest(f"`endpoint` must be one of: {allowed}.", param="endpoint")
    assert isinstance(value, str)
    return value


def _metadata(body: Mapping[str, Any]) -> dict[str, str] | None:
    metadata = body.get("metadata")
    if metadata is None:
        return None
    if not isinstance(metadata, dict) or len(metadata) > _MAX_METADATA:
        raise InvalidRequest(
            f"`metadata` must be an object of at most {_MAX_METADATA} pairs.", param="metadata"
        )
    for key, value in metadata.items():
        if len(key) > 64 or not isinstance(value, str) or len(value) > 512:
            raise InvalidRequest(
                "`metadata` keys are at most 64 characters, values strings of at most 512.",
                param="metadata",
            )
    return dict(metadata)


def _job_items(requests: list[Any], chunk_size: int) -> list[NewItem]:
    items: list[NewItem] = []
    seen: set[str] = set()
    for index, request in enumerate(requests):
        if not isinstance(request, dict):
            raise InvalidRequest(f"`requests[{index}]` must be an object.", param="requests")
        if isinstance(request.get("body"), dict):
            custom_id, body = request.get("custom_id", str(index)), request["body"]
        else:
            custom_id, body = str(index), request
        if not isinstance(custom_id, str) or not custom_id or custom_id in seen:
            raise InvalidRequest(
                f"`requests[{index}].custom_id` must be a unique non-empty string.",
                param="requests",
            )
        seen.add(custom_id)
        items.append(NewItem(custom_id, index, index // chunk_size, orjson.dumps(body).decode()))
    return items


def _message_batch_items(requests: list[Any], chunk_size: int) -> list[NewItem]:
    items: list[NewItem] = []
    seen: set[str] = set()
    for index, request in enumerate(requests):
        where = f"requests[{index}]"
        if not isinstance(request, dict):
            raise InvalidRequest(f"{where}: must be an object.", param=where)
        custom_id, params = request.get("custom_id"), request.get("params")
        if not isinstance(custom_id, str) or not _CUSTOM_ID.fullmatch(custom_id):
            raise InvalidRequest(
                f"{where}.custom_id: must be 1 to 64 letters, digits, '_' or '-'.",
                param=f"{where}.custom_id",
            )
        if custom_id in seen:
            raise InvalidRequest(
                f"{where}.custom_id: {custom_id!r} appears more than once; each must be unique.",
                param=f"{where}.custom_id",
            )
        if not isinstance(params, dict):
            raise InvalidRequest(f"{where}.params: must be an object.", param=f"{where}.params")
        extra = sorted(set(request) - {"custom_id", "params"})
        if extra:
            raise InvalidRequest(
                f"{where}.{extra[0]}: Extra inputs are not permitted", param=f"{where}.{extra[0]}"
            )
        seen.add(custom_id)
        items.append(NewItem(custom_id, index, index // chunk_size, orjson.dumps(params).decode()))
    return items


def _result(item: StoredItem) -> dict[str, Any]:
    result: dict[str, Any] = {
        "custom_id": item.custom_id,
        "status": item.status.value,
        "status_code": item.response_status,
    }
    if item.result is not None:
        parsed = orjson.loads(item.result)
        if item.response_status == 200:
            result["body"] = parsed
        else:
            result["error"] = parsed.get("error", parsed)
    elif item.status.value != "pending":
        result["error"] = {"code": f"batch_{item.status.value}", "message": "Not executed."}
    return result
