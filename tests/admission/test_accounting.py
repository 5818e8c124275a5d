"""What a finished request leaves in the usage ledger."""

from __future__ import annotations

from typing import cast

import pytest

from interlock.admission.accounting import Accounting
from interlock.store.ledger import UsageLedger, UsageRecord
from interlock.telemetry.record import RequestRecord


class Rows:
    """Stands in for the ledger's queue (the writer is tested in tests/store)."""

    def __init__(self) -> None:
        self.rows: list[UsageRecord] = []

    def add(self, row: UsageRecord) -> None:
        self.rows.append(row)


@pytest.mark.parametrize(
    ("cache", "counted_as_hit"),
    [("hit", True), ("coalesced", True), ("miss", False), ("partial", False), (None, False)],
)
async def test_answers_without_an_upstream_call_of_their_own_are_cache_hits(
    cache: str | None, counted_as_hit: bool
) -> None:
    rows = Rows()
    record = RequestRecord("req_1", "POST", "/v1/chat/completions")
    record.key_name, record.model, record.status, record.cache = "k", "m", 200, cache
    record.input_tokens, record.output_tokens, record.cost_usd = 3, 4, 0.0
    await Accounting(cast(UsageLedger, rows)).finish(record)
    (row,) = rows.rows
    assert row.cache_hit is counted_as_hit
    assert (row.prompt_tokens, row.completion_tokens) == (3, 4)


async def test_requests_that_reached_no_model_leave_no_row() -> None:
    rows = Rows()
    await Accounting(cast(UsageLedger, rows)).finish(RequestRecord("req_2", "GET", "/metrics"))
    assert rows.rows == []
