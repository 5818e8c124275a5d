"""The log formatter and the access log show no secret."""

from __future__ import annotations

import io
import logging
import sys

import orjson

from interlock.redaction import REDACTED, Redactor
from interlock.telemetry.access_log import AccessLog
from interlock.telemetry.logging import JSONFormatter

KEY = "corp-Q7vXk2LmP9sTz4WnB8yHc3RjF6dGa1Ne"


def _record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "interlock.test", "levelno": logging.WARNING})
    record.levelname, record.msg, record.args = "WARNING", msg, args
    record.__dict__.update(extra)
    return record


def test_message_fields_and_traceback_are_scrubbed() -> None:
    formatter = JSONFormatter(Redactor([KEY]))
    try:
        raise ConnectionError(f"cannot reach http://u:{KEY}@models.test/")
    except ConnectionError:
        record = _record(
            "deployment %s: failed with %s",
            "d-1",
            KEY,
            error=f"Incorrect API key provided: {KEY}",
            labels={"sent": [KEY]},
            request_id="req_1",
        )
        record.exc_info = sys.exc_info()
    line = formatter.format(record)
    assert KEY not in line and KEY[5:20] not in line
    entry = orjson.loads(line)
    assert entry["msg"] == f"deployment d-1: failed with {REDACTED}"
    assert entry["error"] == f"Incorrect API key provided: {REDACTED}"
    assert entry["labels"] == {"sent": [REDACTED]}
    assert entry["request_id"] == "req_1" and entry["logger"] == "interlock.test"
    assert f"u:{REDACTED}@models.test" in entry["exc"]


def test_without_a_config_key_shaped_strings_are_still_scrubbed() -> None:
    token = "sk-il-A1b2C3d4E5f6G7h8I9j0KkLlMmNnOoPp"
    entry = orjson.loads(JSONFormatter().format(_record("client sent %s", token)))
    assert entry["msg"] == f"client sent {REDACTED}"


def test_access_log_scrubs_what_clients_sent() -> None:
    buffer = io.BytesIO()
    log = AccessLog(buffer, redactor=Redactor([KEY]))
    log.write({"request_id": KEY, "model": f"Bearer {KEY}", "status": 404, "key": "team-a"})
    entry = orjson.loads(buffer.getvalue())
    assert (entry["request_id"], entry["model"]) == (REDACTED, f"Bearer {REDACTED}")
    assert entry["key"] == "team-a" and entry["status"] == 404


def test_access_log_skips_only_what_cannot_hold_a_secret() -> None:
    """The gateway's own request ids pass unscrubbed; a model name is scrubbed
    on every line, from the memo after the first."""
    buffer = io.BytesIO()
    log = AccessLog(buffer, redactor=Redactor([KEY]))
    own = "req_0123456789abcdef01234567"
    for request_id in (own, f"req_{KEY}", f"req_{KEY}"):
        log.write({"request_id": request_id, "model": f"m-{KEY}"})
    entries = [orjson.loads(line) for line in buffer.getvalue().splitlines()]
    assert [e["request_id"] for e in entries] == [own, f"req_{REDACTED}", f"req_{REDACTED}"]
    assert {e["model"] for e in entries} == {f"m-{REDACTED}"}
