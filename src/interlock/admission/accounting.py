"""What a finished request owes: its usage-ledger row (and, with limits,
its token reservation settled and its concurrency slot returned).

Called once per request after its last byte. The ledger write is an append
to a bounded in-memory batch and, at the end of this event-loop turn, to
the ledger's journal on local disk; a background writer commits batches,
and the app's shutdown flushes them, so a drained SIGTERM loses no usage
and a ``kill -9`` loses none that reached the journal. The row is added
before the reservation is settled: settling may wait on Redis (or fail),
and the time between the last byte and the journal write is the one window
in which a killed process loses a record its client has seen.
"""

from __future__ import annotations

from datetime import UTC, datetime

from interlock.admission.gate import AdmissionGate
from interlock.store.ledger import UsageLedger, UsageRecord
from interlock.telemetry.record import RequestRecord

__all__ = ["Accounting"]

# Answers that cost no upstream call of their own (recorded with cost 0): the
# ledger's cache_hit. "partial" (embeddings) computed some inputs upstream.
_SERVED_WITHOUT_UPSTREAM = frozenset({"hit", "coalesced"})


class Accounting:
    def __init__(self, ledger: UsageLedger | None = None, gate: AdmissionGate | None = None):
        self.ledger = ledger
        self.gate = gate

    async def finish(self, record: RequestRecord) -> None:
        self._add(record)
        if self.gate is not None and record.reservation is not None:
            await self.gate.settle(record)

    def _add(self, record: RequestRecord) -> None:
        if self.ledger is None or record.model is None or record.key_name is None:
            return  # not a model request (health, metrics, auth failures)
        self.ledger.add(
            UsageRecord(
                ts=datetime.now(UTC),
                request_id=record.request_id,
                key_name=record.key_name,
                model=record.model,
                key_id=record.key_id,
                deployment=record.deployment,
                prompt_tokens=record.input_tokens or 0,
                completion_tokens=record.output_tokens or 0,
                cost_usd=record.cost_usd or 0.0,
                latency_ms=round(record.duration_s * 1000, 3),
                status=record.status,
                cache_hit=record.cache in _SERVED_WITHOUT_UPSTREAM,
                stream=record.stream,
                units=record.units or 0,
                priced=not record.unpriced,
            )
        )
