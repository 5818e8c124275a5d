from __future__ import annotations

import asyncio
import io

import orjson

from interlock.telemetry.access_log import AccessLog


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
    for i in range(100):
        log.write({"i": i})
    assert buffer.flushes == 0
    await asyncio.sleep(0.03)
    assert buffer.flushes == 1
    log.write({"i": 100})
    await asyncio.sleep(0.03)
    assert buffer.flushes == 2
    assert len(buffer.getvalue().splitlines()) == 101
