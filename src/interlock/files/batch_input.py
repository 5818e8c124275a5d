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

__all__ = ["BATCH_ENDPOINTS", "check_batch_lines"]

BATCH_ENDPOINTS = frozenset({"/v1/chat/completions", "/v1/embeddings"})


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
        if not isinstance(item, dict):
            raise _bad(number, "not a JSON object")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise _bad(number, "`custom_id` must be a non-empty string")
        if custom_id in seen:
            raise _bad(number, f"`custom_id` {custom_id!r} appears twice")
        seen.add(custom_id)
        if item.get("method") != "POST":
            raise _bad(number, '`method` must be "POST"')
        url = item.get("url")
        if url not in BATCH_ENDPOINTS:
            allowed = ", ".join(sorted(BATCH_ENDPOINTS))
            raise _bad(number, f"`url` must be one of {allowed}")
        if endpoint is None:
            endpoint = url
        elif url != endpoint:
            raise _bad(number, f"`url` {url} differs from {endpoint} on an earlier line")
        if not isinstance(item.get("body"), dict):
            raise _bad(number, "`body` must be a JSON object")
    if count == 0:
        raise InvalidRequest("The file has no requests.", param="file", code="invalid_file")
    return count


def _bad(number: int, problem: str) -> InvalidRequest:
    return InvalidRequest(f"Line {number}: {problem}.", param="file", code="invalid_file")
