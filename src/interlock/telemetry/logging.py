"""Structured logs: one JSON object per line on stderr.

Fields passed with ``extra=`` (request_id, status, duration_ms ...) become
top-level keys, so every line of a request can be found by its request id.
Prompt and completion text is never logged. Every line passes the gateway's
``Redactor`` (message, fields and traceback alike): no secret is logged.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from interlock.redaction import Redactor

__all__ = ["JSONFormatter", "configure_logging"]

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "color_message"}


class JSONFormatter(logging.Formatter):
    """``redactor``: what no line may show (default: key-shaped strings only)."""

    def __init__(self, redactor: Redactor | None = None):
        super().__init__()
        self.redactor = redactor or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        scrub = self.redactor.scrub_value
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                entry[key] = scrub(value)
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "INFO", redactor: Redactor | None = None) -> None:
    """JSON lines on stderr for every logger; ``redactor`` is the gateway's,
    built from its config."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's own access log would duplicate ours (and lacks the request id).
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
