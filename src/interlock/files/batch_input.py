"""A batch input file, checked line by line at upload, as OpenAI describes it:

    {"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "...", "messages": [...]}}

one JSON object a line (blank lines are skipped), a non-empty ``custom_id``
unique in the file, ``method`` POST, ``url`` one endpoint a batch can run,
the same in every line, ``body`` an object; at most ``max_lines`` requests.
The first problem is reported with its line number; the body itself is
checked when the batch runs it, through the pipeline, like any request.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from interlock.errors import InvalidRequest

__all__ = ["BATCH_ENDPOINTS", "check_batch_lines", "request_problem"]

BATCH_ENDPOINTS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/responses",
        "/v1/completions",
        "/v1/moderations",
    }
)


def check_batch_lines(lines: Iterable[bytes], max_lines: int) -> int:
    """The number of requests in the file; ``InvalidRequest`` naming the
    first bad line otherwise."""
    seen: set[str] = set()
    endpoint: str | None = None
    count = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        count += 1
        if count > max_lines:
            raise _bad(number, f"the file has more than {max_lines:,} requests")
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise _bad(number, "not valid JSON") from None
        problem = request_problem(item, seen)
        if problem is not None:
            raise _bad(number, problem[1])
        seen.add(item["custom_id"])
        url = item.get("url")
        if url not in BATCH_ENDPOINTS:
            allowed = ", ".join(sorted(BATCH_ENDPOINTS))
            raise _bad(number, f"`url` must be one of {allowed}")
        if endpoint is None:
            endpoint = url
        elif url != endpoint:
            raise _bad(number, f"`url` {url} differs from {endpoint} on an earlier line")
    if count == 0:
        raise InvalidRequest("The file has no requests.", param="file", code="invalid_file")
    return count


def request_problem(item: object, seen: set[str]) -> tuple[str, str] | None:
    """What is wrong with one line's request, as (code, message), or None;
    its ``url`` is the caller's to check (the upload and a batch want
    different things of it). ``seen``: the custom_ids of earlier lines."""
    if not isinstance(item, dict):
        return "invalid_request", "not a JSON object"
    custom_id = item.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "missing_required_parameter", "`custom_id` must be a non-empty string"
    if custom_id in seen:
        return "duplicate_custom_id", f"`custom_id` {custom_id!r} appears twice"
    if item.get("method") != "POST":
        return "invalid_method", '`method` must be "POST"'
    if not isinstance(item.get("body"), dict):
        return "invalid_request", "`body` must be a JSON object"
    return None


def _bad(number: int, problem: str) -> InvalidRequest:
    return InvalidRequest(f"Line {number}: {problem}.", param="file", code="invalid_file")
