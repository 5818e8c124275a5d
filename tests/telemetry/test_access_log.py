from __future__ import annotations

import asyncio
import io
import select
from typing import Any

import orjson

from interlock.telemetry.access_log import FLUSH_BYTES, AccessLog


class CountingBuffer(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_lines_are_json_with_timestamp_and_fields() -> None:
    buffer = CountingBuffer()
    log = AccessLog(buffer)
    log.write({"request_id": "req_1", "status": 200})
    log.write({"request_id": "req_2", "status": 404})
    lines = [orjson.loads(line) for line in buffer.getvalue().splitlines()]
    assert [line["request_id"] for line in lines] == ["req_1", "req_2"]
    assert lines[0]["logger"] == "interlock.access" and lines[0]["ts"].endswith("Z")
    assert buffer.flushes == 2  # no event loop: written through


async def test_flushes_once_per_interval_on_a_loop() -> None:
    buffer = CountingBuffer()
    log = AccessLog(buffer, flush_interval_s=0.01)
    for i in range(20):  # under PIPE_BUF together: one write
        log.write({"i": i})
    assert buffer.flushes == 0
    await asyncio.sleep(0.03)
    assert buffer.flushes == 1
    log.write({"i": 20})
    await asyncio.sleep(0.03)
    assert buffer.flushes == 2
    assert len(buffer.getvalue().splitlines()) == 21


class WriteRecorder(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: Any) -> int:
        self.writes.append(bytes(data))
        return super().write(data)


async def test_writes_whole_lines_a_pipe_keeps_whole() -> None:
    """Several worker processes share one stderr: each write is whole lines
    of at most PIPE_BUF bytes (or one longer line alone), which a pipe never
    interleaves with another process's writes."""
    buffer = WriteRecorder()
    log = AccessLog(buffer, flush_interval_s=0.01)
    for i in range(300):
        log.write({"request_id": f"r{i}", "status": 200})
    log.write({"request_id": "big", "note": "x" * (2 * select.PIPE_BUF)})
    log.write({"request_id": "after", "status": 200})
    log.flush()
    assert len(buffer.writes) > 2
    for data in buffer.writes:
        assert data.endswith(b"\n")
        assert len(data) <= select.PIPE_BUF or data.count(b"\n") == 1
    ids = [orjson.loads(line)["request_id"] for line in buffer.getvalue().splitlines()]
    assert ids == [f"r{i}" for i in range(300)] + ["big", "after"]


def test_a_full_buffer_is_flushed_without_waiting_for_the_timer() -> None:
    buffer = WriteRecorder()
    log = AccessLog(buffer, flush_interval_s=3600)
    log._flush_pending = True  # as if a timer were set on a loop
    line = {"note": "y" * 1000}
    for _ in range(FLUSH_BYTES // 1000 + 1):
        log.write(line)
    assert buffer.writes
