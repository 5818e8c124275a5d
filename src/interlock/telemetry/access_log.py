"""The access log: one JSON line per request, cheap enough for the hot path.

The stdlib ``logging`` path (a ``LogRecord``, a formatter walking its
attributes, a lock and a flush per line) cost about 30 µs a request in
``bench/``, 17 % of throughput. Here a line is one ``orjson.dumps`` into a
buffered binary stream; the buffer is flushed at most ``flush_interval_s``
after the first unflushed line, when it holds ``FLUSH_BYTES``, and at
shutdown. Lines are whole, so they interleave cleanly with other logs on
the same stream, also other processes' (``serve --workers``): the buffer
goes out in writes of whole lines of at most ``PIPE_BUF`` bytes, which a
pipe never interleaves with another writer's.

The only strings on a line from outside the gateway are the client's
``x-request-id`` and model name (everything else is ours: ids and names from
the config, enumerations, numbers); those two pass the ``Redactor``, so a
client's key sent in the wrong field is not logged. Scrubbing whole lines
would cost every request several times more, and even these two cost ~2.5 µs
together, so the common cases skip the scrub: an id the gateway generated
(``req_`` and 24 hex digits: a client sending that shape gains nothing from
it) and a model name already scrubbed (a bounded memo: the names repeat).
"""

from __future__ import annotations

import asyncio
import re
import select
import sys
import time
from typing import Any, BinaryIO

import orjson

from interlock.redaction import Redactor

__all__ = ["AccessLog"]

# The shape of the ids ``api/middleware.py`` generates.
_OWN_REQUEST_ID = re.compile(r"req_[0-9a-f]{24}")
# Model names remembered scrubbed; past this many the memo starts over.
_MODEL_MEMO_SIZE = 1024
# Past this many unflushed bytes, flush at once rather than on the timer.
FLUSH_BYTES = 64 * 1024
# The largest write a pipe keeps whole (4096 on Linux).
_ATOMIC_WRITE = getattr(select, "PIPE_BUF", 512)


class AccessLog:
    def __init__(
        self,
        stream: BinaryIO | None = None,
        flush_interval_s: float = 0.2,
        redactor: Redactor | None = None,
    ):
        self._stream = stream if stream is not None else sys.stderr.buffer
        self._redactor = redactor or Redactor()
        self._scrubbed_models: dict[str, str] = {}
        self._flush_interval_s = flush_interval_s
        self._buffer = bytearray()
        self._flush_pending = False
        self._second = -1
        self._second_text = ""

    def write(self, entry: dict[str, Any]) -> None:
        now = time.time()
        line = {"ts": self._timestamp(now), "level": "info", "logger": "interlock.access", **entry}
        request_id = line.get("request_id")
        if isinstance(request_id, str) and _OWN_REQUEST_ID.fullmatch(request_id) is None:
            line["request_id"] = self._redactor.scrub(request_id)
        model = line.get("model")
        if isinstance(model, str):
            line["model"] = self._scrubbed_model(model)
        self._buffer += orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE)
        if len(self._buffer) >= FLUSH_BYTES:
            self.flush()
        elif not self._flush_pending:
            self._flush_pending = True
            try:
                asyncio.get_running_loop().call_later(self._flush_interval_s, self.flush)
            except RuntimeError:  # no loop (tests, tools): write through
                self.flush()

    def _scrubbed_model(self, model: str) -> str:
        memo = self._scrubbed_models
        scrubbed = memo.get(model)
        if scrubbed is None:
            if len(memo) >= _MODEL_MEMO_SIZE:
                memo.clear()
            scrubbed = memo[model] = self._redactor.scrub(model)
        return scrubbed

    def flush(self) -> None:
        self._flush_pending = False
        pending = self._buffer
        self._buffer = bytearray()
        try:
            for chunk in _whole_lines(pending, _ATOMIC_WRITE):
                self._stream.write(chunk)
                self._stream.flush()
        except (OSError, ValueError):  # closed or broken stderr: logs are not worth a crash
            pass

    def _timestamp(self, now: float) -> str:
        second = int(now)
        if second != self._second:  # strftime once a second, not once a request
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((now - second) * 1000):03d}Z"


def _whole_lines(data: bytearray, limit: int) -> list[memoryview]:
    """``data`` (whole lines) cut into runs of whole lines of at most
    ``limit`` bytes each; a longer line is a run of its own."""
    view = memoryview(data)
    chunks = []
    start = 0
    while start < len(data):
        end = data.rfind(b"\n", start, start + limit)
        if end < 0:  # one line longer than limit
            end = data.find(b"\n", start)
        chunks.append(view[start : end + 1])
        start = end + 1
    return chunks
