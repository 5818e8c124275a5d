"""A batch as Anthropic's Message Batches API shows it: the
``message_batch`` object and the lines of its results file.

Processing is ``in_progress`` until every request has an outcome,
``canceling`` once a cancel was asked, ``ended`` after. Times are RFC 3339.
The request counts are live: a request moves from ``processing`` to its
outcome as it finishes (Anthropic moves them all at the end; the sum is the
total either way). Each result was stored in Anthropic's shape when its
item ran (``batch/endpoints.py``), so a results line splices the stored
JSON text in as it is.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from interlock.batch.records import BatchRow, ItemStatus
from interlock.batch.store import StoredItem

__all__ = ["batch_json", "processing_status", "result_line"]

_NOT_RUN = {
    ItemStatus.EXPIRED: b'{"type":"expired"}',
    ItemStatus.CANCELLED: b'{"type":"canceled"}',
}


def processing_status(batch: BatchRow) -> str:
    if batch.status.finished:
        return "ended"
    return "canceling" if batch.cancelling_at is not None else "in_progress"


def batch_json(batch: BatchRow, results_url: str) -> dict[str, Any]:
    """The ``message_batch`` object; ``results_url`` is shown once it ended."""
    counts = batch.counts
    status = processing_status(batch)
    ended = status == "ended"
    ended_at = batch.completed_at or batch.cancelled_at or batch.expired_at or batch.failed_at
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": status,
        "request_counts": {
            "processing": counts.total - counts.done,
            "succeeded": counts.succeeded,
            "errored": counts.errored,
            "canceled": counts.cancelled,
            "expired": counts.expired,
        },
        "created_at": _rfc3339(batch.created_at),
        "expires_at": _rfc3339(batch.expires_at),
        "ended_at": _rfc3339(ended_at) if ended else None,
        "cancel_initiated_at": _rfc3339(batch.cancelling_at),
        "archived_at": None,
        "results_url": results_url if ended else None,
    }


def result_line(item: StoredItem) -> bytes:
    """One line of the results file, newline included."""
    head = b'{"custom_id":' + orjson.dumps(item.custom_id) + b',"result":'
    if item.status is ItemStatus.SUCCEEDED and item.result is not None:
        result = b'{"type":"succeeded","message":' + item.result.encode() + b"}"
    elif item.status is ItemStatus.FAILED and item.result is not None:
        result = b'{"type":"errored","error":' + item.result.encode() + b"}"
    else:
        result = _NOT_RUN.get(item.status) or _never_ran()
    return head + result + b"}\n"


def _never_ran() -> bytes:
    # A batch that ended with an item still pending: finalizing closes every
    # pending item as expired or cancelled, so only a store edited by hand.
    error = {"type": "error", "error": {"type": "api_error", "message": "Not executed."}}
    return b'{"type":"errored","error":' + orjson.dumps(error) + b"}"


def _rfc3339(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")
