"""A batch's input file read into items (in a worker thread).

The file was checked line by line at upload (``files/batch_input.py``);
here each line is read again with the same checks
(``request_problem``) and must name the batch's endpoint, as OpenAI
requires. The body is kept as the client wrote it (JSON text),
validated when the item runs, through the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from interlock.batch.store import NewItem
from interlock.files.batch_input import request_problem

__all__ = ["InputError", "InputReader"]


@dataclass(frozen=True, slots=True)
class InputError:
    code: str
    message: str
    line: int | None = None


class InputReader:
    """Items of an input file a page at a time (each page read in a worker
    thread by the caller): a 200 MB file is never all in memory."""

    def __init__(self, lines: Iterable[bytes], endpoint: str, chunk_size: int, max_requests: int):
        self._lines = enumerate(lines, start=1)
        self._endpoint = endpoint
        self._chunk_size = chunk_size
        self._max_requests = max_requests
        self._seen: set[str] = set()
        self.count = 0
        self.error: InputError | None = None
        self.done = False

    def page(self, size: int) -> list[NewItem]:
        """Up to ``size`` more items; an empty page once the file is read or
        ``error`` is set."""
        items: list[NewItem] = []
        while len(items) < size and not self.done:
            number, line = next(self._lines, (0, b""))
            if number == 0:
                self.done = True
                if self.count == 0:
                    self.error = InputError("empty_file", "The input file has no requests.")
                break
            if not line.strip():
                continue
            item = self._item(number, line)
            if item is None:
                self.done = True
                return []
            items.append(item)
        return items

    def _item(self, number: int, line: bytes) -> NewItem | None:
        if self.count >= self._max_requests:
            self.error = InputError(
                "too_many_requests",
                f"The batch has more than {self._max_requests:,} requests.",
                number,
            )
            return None
        try:
            request = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.error = InputError("invalid_json_line", "Not valid JSON.", number)
            return None
        problem = request_problem(request, self._seen)
        url = request.get("url") if isinstance(request, dict) else None
        if problem is None and url != self._endpoint:
            problem = (
                "mismatched_url",
                f"the line's `url` is {url!r}; this batch runs {self._endpoint}",
            )
        if problem is not None:
            code, message = problem
            self.error = InputError(code, message[0].upper() + message[1:] + ".", number)
            return None
        custom_id = request["custom_id"]
        self._seen.add(custom_id)
        index, self.count = self.count, self.count + 1
        body = orjson.dumps(request["body"]).decode()
        return NewItem(custom_id, index, index // self._chunk_size, body)
