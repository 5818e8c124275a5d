"""A finished batch's output and error files, in OpenAI's line format:

    {"id": "batch_req_...", "custom_id": "request-1",
     "response": {"status_code": 200, "request_id": "batch_req_...", "body": {...}},
     "error": null}

A request that ran and failed is in the error file with its status and
error body; one that never ran (the window closed, the batch was
cancelled) with ``response: null`` and an ``error`` saying why. Lines are
in input order. Results are stored as JSON text and spliced in as they are
(never parsed again): the files of a 50,000-request batch are written at
the speed of the disk.
"""

from __future__ import annotations

from typing import IO

import orjson

from interlock.batch.records import ItemStatus, new_item_request_id
from interlock.batch.store import StoredItem

__all__ = ["is_success", "output_line", "write_lines"]

_NOT_RUN = {
    ItemStatus.EXPIRED: (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
    ItemStatus.CANCELLED: ("batch_cancelled", "This request was cancelled with its batch."),
    ItemStatus.PENDING: ("batch_failed", "This request was not executed."),
}


def output_line(item: StoredItem) -> bytes:
    """The item's line, newline included."""
    request_id = item.request_id or new_item_request_id()
    head = b'{"id":' + orjson.dumps(request_id) + b',"custom_id":' + orjson.dumps(item.custom_id)
    if item.result is not None and item.response_status is not None:
        return (
            head
            + b',"response":{"status_code":'
            + str(item.response_status).encode()
            + b',"request_id":'
            + orjson.dumps(request_id)
            + b',"body":'
            + item.result.encode()
            + b'},"error":null}\n'
        )
    code, message = _NOT_RUN.get(item.status, _NOT_RUN[ItemStatus.PENDING])
    error = orjson.dumps({"code": code, "message": message})
    return head + b',"response":null,"error":' + error + b"}\n"


def is_success(item: StoredItem) -> bool:
    return item.status is ItemStatus.SUCCEEDED


def write_lines(items: list[StoredItem], output: IO[bytes], errors: IO[bytes]) -> tuple[int, int]:
    """Append ``items`` to the two files; the number of lines each gained."""
    good = bad = 0
    for item in items:
        if is_success(item):
            output.write(output_line(item))
            good += 1
        else:
            errors.write(output_line(item))
            bad += 1
    return good, bad
