"""A batch as the store keeps it, and as the Batches and Jobs APIs show it.

One row serves every API (``kind``): a batch of the OpenAI Batches API reads
its requests from an uploaded file; an async job and an Anthropic Message
Batch (``message_batch``, shown by ``interlock.batch.anthropic``) carry
them in their POST.
The stored ``status`` is the engine's; what a client sees is derived from it
and the transition times: a batch being finalized after a cancel still
shows ``cancelling``, and one after its window ran out ``in_progress``, as
OpenAI's do, until it reaches its final state.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

import orjson

__all__ = [
    "ACTIVE",
    "BatchRow",
    "BatchStatus",
    "ItemStatus",
    "RequestCounts",
    "new_batch_id",
    "new_item_request_id",
]


class BatchStatus(StrEnum):
    VALIDATING = "validating"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset(
    {BatchStatus.FAILED, BatchStatus.COMPLETED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}
)
# What the sweeper looks at: every status a batch can be stuck in.
ACTIVE = (
    BatchStatus.VALIDATING,
    BatchStatus.IN_PROGRESS,
    BatchStatus.FINALIZING,
    BatchStatus.CANCELLING,
)


class ItemStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


# The id's prefix per kind, as each API names its objects.
_ID_PREFIXES = {"batch": "batch", "job": "job", "message_batch": "msgbatch"}


def new_batch_id(kind: str = "batch") -> str:
    """Time first, then randomness: ids sort in creation order."""
    return f"{_ID_PREFIXES[kind]}_{time.time_ns() // 1000:014x}{secrets.token_hex(6)}"


def new_item_request_id() -> str:
    return f"batch_req_{secrets.token_hex(12)}"


@dataclass(frozen=True, slots=True)
class RequestCounts:
    total: int = 0
    succeeded: int = 0
    errored: int = 0  # ran and failed
    expired: int = 0
    cancelled: int = 0

    @property
    def failed(self) -> int:
        """Failed, expired and cancelled: every line of OpenAI's error file."""
        return self.errored + self.expired + self.cancelled

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    def to_json(self) -> dict[str, int]:
        return {"total": self.total, "completed": self.succeeded, "failed": self.failed}


@dataclass(slots=True)
class BatchRow:
    id: str
    key_name: str
    kind: str  # batch | job | message_batch
    endpoint: str
    completion_window: str
    status: BatchStatus
    total: int
    created_at: int
    expires_at: int
    touched_at: float
    input_file_id: str | None = None
    metadata: dict[str, str] | None = None
    webhook_url: str | None = None
    webhook_state: str | None = None
    errors: list[dict[str, Any]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    counts: RequestCounts = field(default_factory=RequestCounts)

    @classmethod
    def from_row(cls, row: Any) -> BatchRow:
        values = dict(row)
        values["status"] = BatchStatus(values["status"])
        for name in ("metadata", "errors"):
            text = values.get(name)
            values[name] = orjson.loads(text) if text else None
        return cls(**values)

    def to_row(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in _COLUMNS}
        values["status"] = self.status.value
        for name in ("metadata", "errors"):
            value = values[name]
            values[name] = orjson.dumps(value).decode() if value is not None else None
        return values

    @property
    def shown_status(self) -> str:
        """The status a client sees (see the module's docstring)."""
        if self.status is BatchStatus.FINALIZING:
            if self.cancelling_at is not None:
                return BatchStatus.CANCELLING.value
            if self.expired_at is not None:
                return BatchStatus.IN_PROGRESS.value
        return self.status.value

    def to_json(self) -> dict[str, Any]:
        """OpenAI's batch object."""
        errors = None
        if self.errors:
            errors = {"object": "list", "data": self.errors}
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": errors,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.shown_status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": self.in_progress_at,
            "expires_at": self.expires_at,
            "finalizing_at": self.finalizing_at,
            "completed_at": self.completed_at,
            "failed_at": self.failed_at,
            "expired_at": self.expired_at if self.status.finished else None,
            "cancelling_at": self.cancelling_at,
            "cancelled_at": self.cancelled_at,
            "request_counts": self.counts.to_json(),
            "metadata": self.metadata,
        }

    def to_job_json(self) -> dict[str, Any]:
        """An async job (``GET /v1/jobs/{id}``), without its results."""
        counts = self.counts
        status = self.shown_status
        return {
            "id": self.id,
            "object": "job",
            "endpoint": self.endpoint,
            # A job has nothing to validate: it waits for a worker.
            "status": "queued" if status == BatchStatus.VALIDATING.value else status,
            "created_at": self.created_at,
            "completed_at": self.completed_at or self.expired_at or self.cancelled_at,
            "expires_at": self.expires_at,
            "progress": {
                "total": counts.total,
                "completed": counts.succeeded,
                "failed": counts.failed,
                "percent": round(100.0 * counts.done / counts.total, 1) if counts.total else 0.0,
            },
            "webhook": {"url": self.webhook_url, "state": self.webhook_state}
            if self.webhook_url
            else None,
            "metadata": self.metadata,
        }


# The table's columns: every field but the counts, which are counted.
_COLUMNS = tuple(f.name for f in fields(BatchRow) if f.name != "counts")
