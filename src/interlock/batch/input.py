"""A batch's input file read into items (in a worker thread).

The file was checked line by line at upload (``files/batch_input.py``);
here each line is read again and must name the batch's endpoint, as
OpenAI requires. The body is kept as the client wrote it (JSON text),
validated when the item runs, through the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from interlock.batch.store import NewItem

__all__ = ["InputError", "ParsedInput", "read_batch_items"]


@dataclass(frozen=True, slots=True)
class InputError:
    code: str
    message: str
    line: int | None = None


@dataclass(slots=True)
class ParsedInput:
    items: list[NewItem] = field(default_factory=list)
    error: InputError | None = None


def read_batch_items(
    lines: Iterable[bytes], endpoint: str, chunk_size: int, max_requests: int
) -> ParsedInput:
    parsed = ParsedInput()
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if len(parsed.items) >= max_requests:
            parsed.error = InputError(
                "too_many_requests",
                f"The batch has more than {max_requests:,} requests.",
                number,
            )
            return parsed
        try:
            request = orjson.loads(line)
        except orjson.JSONDecodeError:
            parsed.error = InputError("invalid_json_line", "Not valid JSON.", number)
            return parsed
        problem = _problem(request, endpoint, seen)
        if problem is not None:
            parsed.error = InputError(problem[0], problem[1], number)
            return parsed
        custom_id = request["custom_id"]
        seen.add(custom_id)
        index = len(parsed.items)
        parsed.items.append(
            NewItem(custom_id, index, index // chunk_size, orjson.dumps(request["body"]).decode())
        )
    if not parsed.items:
        parsed.error = InputError("empty_file", "The input file has no requests.")
    return parsed


def _problem(request: object, endpoint: str, seen: set[str]) -> tuple[str, str] | None:
    if not isinstance(request, dict):
        return "invalid_request", "Each line must be a JSON object."
    custom_id = request.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return "missing_required_parameter", "`custom_id` must be a non-empty string."
    if custom_id in seen:
        return "duplicate_custom_id", f"`custom_id` {custom_id!r} appears twice."
    if request.get("url") != endpoint:
        return (
            "mismatched_url",
            f"The line's `url` is {request.get('url')!r}; this batch runs {endpoint}.",
        )
    if request.get("method", "POST") != "POST":
        return "invalid_method", '`method` must be "POST".'
    if not isinstance(request.get("body"), dict):
        return "invalid_request", "`body` must be a JSON object."
    return None
