"""One batch item through the pipeline, as the key that submitted it.

The item is admitted with ``AdmissionStage.admit_as`` (the worker holds no
credential; the key is looked up by name and refused once revoked) at the
lowest priority, so online requests waiting for an in-flight slot go
first. Then validation, guardrails, cache, router (breakers, retries,
failover), telemetry and the usage ledger, as for any request.

What happens on an error decides whether the item fails:

* a 429 (rate limit, budget, upstream limit), a 503 for load or for every
  deployment's breaker open: the item waits (``Retry-After``, capped) and
  tries again, without spending an attempt: batch work paces itself to
  what the key and the deployments allow, and never fails for it;
* other upstream failures (5xx): another attempt, up to
  ``max_item_attempts``, with backoff; then the error is its result;
* anything else (a 400, a 403, an unknown model): its result at once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

import orjson

from interlock.admission.accounting import Accounting
from interlock.admission.principal import Principal
from interlock.batch.endpoints import ENDPOINTS, BatchEndpoint
from interlock.batch.records import ItemStatus, new_item_request_id
from interlock.batch.store import ItemResult, PendingItem
from interlock.errors import (
    InterlockError,
    InvalidRequest,
    NoHealthyDeployment,
    Overloaded,
)
from interlock.files.documents import Documents, names_file_ids
from interlock.pipeline import ModelRequest, Pipeline
from interlock.telemetry.hub import Telemetry
from interlock.telemetry.record import RequestRecord

__all__ = ["BATCH_PRIORITY", "ItemRunner", "LoadGauge"]

# Below every tier's priority: the in-flight queue serves online requests first.
BATCH_PRIORITY = -1_000_000
_BACKOFF_BASE_S = 0.5
_BACKOFF_MAX_S = 10.0


class LoadGauge(Protocol):
    def busy(self) -> bool:
        """True while online traffic should have the gateway to itself."""
        ...


class ItemRunner:
    def __init__(
        self,
        pipeline: Pipeline,
        telemetry: Telemetry,
        accounting: Accounting,
        load: LoadGauge,
        *,
        max_attempts: int,
        max_delay_s: float,
        on_retry: Callable[[str], None] = lambda reason: None,
        sleep: Callable[[float], Any] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        busy_poll_s: float = 0.05,
        documents: Documents | None = None,
    ):
        self._pipeline = pipeline
        self._telemetry = telemetry
        self._accounting = accounting
        self._load = load
        self._max_attempts = max_attempts
        self._max_delay_s = max_delay_s
        self._on_retry = on_retry
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._busy_poll_s = busy_poll_s
        # The key's uploads a line's messages name by file id; None: not read.
        self._documents = documents

    @staticmethod
    def as_batch(principal: Principal) -> Principal:
        """The key's principal with the batch priority."""
        return replace(principal, priority=BATCH_PRIORITY)

    async def run(
        self,
        item: PendingItem,
        endpoint: str,
        principal: Callable[[], Principal],
        deadline: float,
        stopped: Callable[[], bool],
    ) -> ItemResult | None:
        """The item's result; None when it was not finished because the
        batch's window closed or it was cancelled or the worker is stopping
        (``stopped``): it stays pending."""
        attempts = item.attempts
        request_id = new_item_request_id()
        how = ENDPOINTS[endpoint]
        while True:
            while self._load.busy() and not stopped():
                await self._sleep(self._busy_poll_s)
            if stopped() or self._clock() >= deadline:
                return None
            record = RequestRecord(request_id, "POST", f"batch {endpoint}")
            record.dialect = how.dialect
            delay: float | None = None
            try:
                body = orjson.loads(item.body)
                if body.get("stream"):
                    raise InvalidRequest(
                        "Streaming is not available in a batch; leave out `stream`.",
                        param="stream",
                    )
                prepared = how.prepare(body)
                messages = prepared.body.get("messages")
                if self._documents is not None and names_file_ids(messages):
                    # As online: the Responses API's files are in its `input`.
                    param = "input" if how.dialect == "responses" else None
                    await self._documents.inline(principal().name, messages, param)
                request = ModelRequest(
                    how.operation, prepared.body, record, None, how.options, prepared.checked
                )
                self._pipeline.unalias(request)
                admitted = await self._pipeline.admission.admit_as(principal(), request)
                answer = await self._pipeline.run(request, admitted)
                assert isinstance(answer, dict)  # a stream was refused above
                record.status = 200
                return ItemResult(
                    item.custom_id,
                    ItemStatus.SUCCEEDED,
                    200,
                    orjson.dumps(prepared.answer(answer)).decode(),
                    request_id,
                    attempts + 1,
                )
            except InterlockError as exc:
                record.status = exc.status_code
                record.error_type = exc.error_type
                reason = _pacing_reason(exc)
                if reason is not None:
                    self._on_retry(reason)
                    delay = self._paced_delay(exc.retry_after_s)
                else:
                    attempts += 1
                    if exc.status_code < 500 or attempts >= self._max_attempts:
                        return _failed(item, exc, how, request_id, attempts)
                    self._on_retry("upstream_error")
                    delay = self._backoff(attempts)
            finally:
                self._telemetry.finish(record)
                await self._accounting.finish(record)
            await self._pause(min(delay, max(0.0, deadline - self._clock())), stopped)

    async def _pause(self, seconds: float, stopped: Callable[[], bool]) -> None:
        """Wait ``seconds``, in slices: a stopping worker or closing batch
        does not wait out a long Retry-After."""
        remaining = seconds
        while remaining > 0 and not stopped():
            step = min(remaining, self._busy_poll_s * 4)
            await self._sleep(step)
            remaining -= step

    def _paced_delay(self, retry_after_s: float | None) -> float:
        wanted = retry_after_s if retry_after_s is not None else 1.0
        return min(self._max_delay_s, wanted) * (0.5 + self._rng.random())

    def _backoff(self, attempts: int) -> float:
        cap = min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * 2 ** (attempts - 1))
        return self._rng.uniform(0, cap)


def _pacing_reason(exc: InterlockError) -> str | None:
    """Why the item should wait rather than fail, or None."""
    if exc.status_code == 429:
        return "rate_limited"
    if isinstance(exc, NoHealthyDeployment) and exc.code != "all_deployments_failed":
        return "breaker_open"  # every breaker open or resting: wait for one to close
    if isinstance(exc, Overloaded):
        return "overloaded"
    return None


def _failed(
    item: PendingItem, exc: InterlockError, how: BatchEndpoint, request_id: str, attempts: int
) -> ItemResult:
    return ItemResult(
        item.custom_id,
        ItemStatus.FAILED,
        exc.status_code,
        orjson.dumps(how.error_body(exc)).decode(),
        request_id,
        attempts,
    )
