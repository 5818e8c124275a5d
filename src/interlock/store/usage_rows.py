"""A finished request's usage record, and the row the ledger binds for it.

The ledger encodes each record into its row when the record is added (one
C call for all but the timestamp), so neither the event loop nor the
writer thread converts a whole batch at once; the journal stores the same
row, and ``RowEncoder.decode`` turns a journaled row back into one for
either backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from interlock.store.sqlite_writer import sqlite_time

__all__ = ["COLUMNS", "Row", "RowEncoder", "UsageRecord"]


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One finished request. ``key_id`` is None for keys from the config file."""

    ts: datetime
    request_id: str
    key_name: str
    model: str
    key_id: str | None = None
    deployment: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    status: int = 200
    cache_hit: bool = False
    stream: bool = False
    # What a tensor model counts instead of tokens: the rows (first
    # dimension) of a /v1/infer request. 0 for chat and embeddings.
    units: int = 0
    # False: the deployment's price was unknown, so cost_usd is not a cost
    # (0 here, counted apart by the usage totals).
    priced: bool = True

    def __post_init__(self) -> None:
        # Refused here, on the caller's stack: in the buffer it would fail every batch.
        if self.ts.tzinfo is None:
            raise ValueError("UsageRecord.ts must be timezone-aware")


# ``ts`` first: it is the one value that is converted for SQLite (``RowEncoder``);
# then the ledger's own ``record_id``, then the record's fields.
_FIELDS = tuple(f.name for f in fields(UsageRecord) if f.name != "ts")
COLUMNS = ("ts", "record_id", *_FIELDS)
Row = tuple[Any, ...]
# Columns newer than some journals a crashed process may have left: their value there.
_ADDED_LATER = {"units": 0, "priced": True}


class RowEncoder:
    """A record as the row tuple that is bound, in ``COLUMNS`` order (one C
    call for all but the timestamp), and a journaled row back again."""

    def __init__(self, sqlite: bool):
        self._time = sqlite_time if sqlite else None
        self._rest = attrgetter(*_FIELDS)

    def __call__(self, record: UsageRecord, record_id: str) -> Row:
        ts = record.ts if self._time is None else self._time(record.ts)
        return (ts, record_id, *self._rest(record))

    def decode(self, values: Mapping[str, Any]) -> Row:
        """A row from a journal (written by either backend), for this one."""
        ts = datetime.fromisoformat(values["ts"])
        ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts
        if not isinstance(values["record_id"], str):
            raise ValueError("record_id")
        rest = (values[c] if c in values else _ADDED_LATER[c] for c in COLUMNS[1:])
        return (ts if self._time is None else self._time(ts), *rest)
