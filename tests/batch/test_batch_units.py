"""The small policies under batch work, without a server: online load,
the key as it stands now, the output line format, the input reader."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from interlock.admission.concurrency import InFlightLimiter
from interlock.admission.keys import KeyRing
from interlock.admission.principal import Principal
from interlock.batch.anthropic import batch_json, result_line
from interlock.batch.input import InputError, InputReader
from interlock.batch.load import BUSY_KEY, OnlineLoad
from interlock.batch.output import output_line
from interlock.batch.records import BatchRow, BatchStatus, ItemStatus, RequestCounts
from interlock.batch.runner import BATCH_PRIORITY, ItemRunner
from interlock.batch.store import NewItem, StoredItem
from interlock.config import KeyConfig
from interlock.config.base import Secret
from interlock.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from interlock.files.batch_input import check_batch_lines
from interlock.state.memory import MemoryStateStore


def test_online_load_counts_requests_in_flight_and_waiting_but_not_the_batchs_own() -> None:
    limiter = InFlightLimiter(max_in_flight=10, max_queue=10, queue_timeout_s=1)
    batch_items = 0
    load = OnlineLoad(limiter, yield_at=0.5, batch_in_flight=lambda: batch_items)
    limiter.in_flight = 4
    assert not load.busy()
    limiter.in_flight = 5
    assert load.busy()  # 5 online of 10: half the cap
    batch_items = 3
    limiter.in_flight = 7  # 4 online, 3 the batch's
    assert not load.busy()


async def test_a_busy_gateway_pauses_workers_in_other_processes_through_the_state_store() -> None:
    state = MemoryStateStore()  # stands in for the Redis both processes share
    gateway_limiter = InFlightLimiter(max_in_flight=10, max_queue=10, queue_timeout_s=1)
    worker_limiter = InFlightLimiter(max_in_flight=10, max_queue=10, queue_timeout_s=1)
    gateway = OnlineLoad(gateway_limiter, 0.5, lambda: 0, state)
    worker = OnlineLoad(worker_limiter, 0.5, lambda: worker_limiter.in_flight, state)
    worker_limiter.in_flight = 8  # the worker's own items never make it busy
    await worker.tick()
    assert not worker.busy()
    gateway_limiter.in_flight = 6
    await gateway.tick()
    await worker.tick()
    assert worker.busy()
    gateway_limiter.in_flight = 1
    await state.delete(BUSY_KEY)  # what the flag's TTL does once the gateway calms down
    await gateway.tick()
    await worker.tick()
    assert not worker.busy()


def test_a_batch_runs_as_the_key_stands_now_below_every_tier() -> None:
    now = datetime(2026, 12, 5, tzinfo=UTC)
    ring = KeyRing([KeyConfig(name="team", key=Secret("sk-team-key-1"))], clock=lambda: now)
    principal = ItemRunner.as_batch(ring.principal_named("team"))
    assert principal.name == "team" and principal.priority == BATCH_PRIORITY
    with pytest.raises(AuthenticationFailed):
        ring.principal_named("gone")
    revoked = Principal(name="old", revoked=True)
    expired = Principal(name="late", expires_at=now - timedelta(seconds=1))
    ring._by_digest[b"x"] = revoked
    ring._by_digest[b"y"] = expired
    with pytest.raises(PermissionDenied, match="revoked"):
        ring.principal_named("old")
    with pytest.raises(PermissionDenied, match="expired"):
        ring.principal_named("late")


def test_output_lines_are_openais_and_splice_the_stored_body() -> None:
    body = '{"id":"chatcmpl-1","object":"chat.completion"}'
    ok = orjson.loads(output_line(StoredItem("a", ItemStatus.SUCCEEDED, 200, body, "batch_req_1")))
    assert ok == {
        "id": "batch_req_1",
        "custom_id": "a",
        "response": {"status_code": 200, "request_id": "batch_req_1", "body": orjson.loads(body)},
        "error": None,
    }
    failed = orjson.loads(
        output_line(StoredItem("b", ItemStatus.FAILED, 400, '{"error":{"message":"x"}}', "r2"))
    )
    assert failed["response"]["status_code"] == 400 and failed["error"] is None
    expired = orjson.loads(output_line(StoredItem("c", ItemStatus.EXPIRED, None, None, None)))
    assert expired["response"] is None and expired["error"]["code"] == "batch_expired"
    assert expired["id"].startswith("batch_req_")


def _line(custom_id: str, url: str = "/v1/chat/completions") -> bytes:
    return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": {"n": 1}})


def _read(lines: list[bytes], max_requests: int) -> tuple[list[NewItem], InputError | None]:
    reader = InputReader(lines, "/v1/chat/completions", 2, max_requests)
    items: list[NewItem] = []
    while not reader.done:
        items += reader.page(3)  # pages smaller than the file: several reads
    return items, reader.error


def test_input_is_read_into_chunks_in_order() -> None:
    items, error = _read([_line(f"r{n}") for n in range(5)], 10)
    assert error is None
    assert [(i.custom_id, i.line, i.chunk) for i in items] == [
        ("r0", 0, 0),
        ("r1", 1, 0),
        ("r2", 2, 1),
        ("r3", 3, 1),
        ("r4", 4, 2),
    ]


@pytest.mark.parametrize(
    ("lines", "code", "line"),
    [
        ([_line("a"), _line("a")], "duplicate_custom_id", 2),
        ([_line("a"), _line("b", "/v1/embeddings")], "mismatched_url", 2),
        ([b"{not json"], "invalid_json_line", 1),
        ([orjson.dumps({"custom_id": "a", "method": "POST", "body": {}})], "mismatched_url", 1),
        ([_line(str(n)) for n in range(4)], "too_many_requests", 4),
        ([b"", b"  "], "empty_file", None),
    ],
)
def test_bad_input_names_the_line(lines: list[bytes], code: str, line: int | None) -> None:
    _, error = _read(lines, 3)
    assert error is not None
    assert (error.code, error.line) == (code, line)


def test_an_upload_line_without_a_url_is_a_400_naming_it() -> None:
    line = orjson.dumps({"custom_id": "a", "method": "POST", "body": {}})
    with pytest.raises(InvalidRequest, match="Line 1: `url` must be one of"):
        check_batch_lines([line], 10)


def test_a_message_batch_result_line_splices_the_stored_answer_and_names_what_never_ran() -> None:
    def line(status: ItemStatus, result: str | None) -> dict[str, object]:
        parsed: dict[str, object] = orjson.loads(
            result_line(StoredItem("c", status, 200, result, None))
        )
        return parsed

    assert line(ItemStatus.SUCCEEDED, '{"id":"msg_1"}') == {
        "custom_id": "c",
        "result": {"type": "succeeded", "message": {"id": "msg_1"}},
    }
    error = '{"type":"error","error":{"type":"invalid_request_error","message":"m"}}'
    assert line(ItemStatus.FAILED, error)["result"] == {
        "type": "errored",
        "error": orjson.loads(error),
    }
    assert line(ItemStatus.CANCELLED, None)["result"] == {"type": "canceled"}
    assert line(ItemStatus.EXPIRED, None)["result"] == {"type": "expired"}
    never = line(ItemStatus.PENDING, None)["result"]
    assert never["type"] == "errored"  # type: ignore[index]


def test_a_message_batch_shows_rfc3339_times_and_its_results_url_once_ended() -> None:
    batch = BatchRow(
        "msgbatch_1",
        "k",
        "message_batch",
        "/v1/messages",
        "24h",
        BatchStatus.IN_PROGRESS,
        3,
        1_767_225_600,
        1_767_312_000,
        0.0,
    )
    batch.counts = RequestCounts(total=3, succeeded=1, errored=1)
    running = batch_json(batch, "http://gw/r")
    assert running["created_at"] == "2026-01-01T00:00:00Z"
    assert running["expires_at"] == "2026-01-02T00:00:00Z"
    assert (running["ended_at"], running["results_url"]) == (None, None)
    assert running["request_counts"] == {
        "processing": 1,
        "succeeded": 1,
        "errored": 1,
        "canceled": 0,
        "expired": 0,
    }
    batch.cancelling_at = 1_767_225_660
    assert batch_json(batch, "http://gw/r")["processing_status"] == "canceling"
    batch.status, batch.cancelled_at = BatchStatus.CANCELLED, 1_767_225_720
    ended = batch_json(batch, "http://gw/r")
    assert ended["processing_status"] == "ended" and ended["results_url"] == "http://gw/r"
    assert ended["ended_at"] == "2026-01-01T00:02:00Z"
    assert ended["cancel_initiated_at"] == "2026-01-01T00:01:00Z"
