"""Model calls an edge makes for a request besides the request's own.

A Responses request whose context is past its compaction threshold
(``api/responses_compaction.py``) first has the model summarise it: a
second chat call through the pipeline. It runs on a record of its own,
under the request's id, so the usage ledger has a row for what it cost, the
access log and the metrics a line for it, and the request's own record
still describes the request's own call (its deployment, its usage, its
status), as the middleware finishes it.
"""

from __future__ import annotations

from typing import Any

from interlock.admission.accounting import Accounting
from interlock.errors import InterlockError
from interlock.pipeline import ModelRequest, Operation, Pipeline, RequestOptions
from interlock.telemetry.hub import Telemetry
from interlock.telemetry.record import RequestRecord

__all__ = ["SideCalls"]

JSONDict = dict[str, Any]


class SideCalls:
    def __init__(self, pipeline: Pipeline, telemetry: Telemetry, accounting: Accounting):
        self._pipeline = pipeline
        self._telemetry = telemetry
        self._accounting = accounting

    async def chat(
        self,
        parent: RequestRecord,
        route: str,
        body: JSONDict,
        authorization: str | None,
        options: RequestOptions,
    ) -> JSONDict:
        """The chat completion for ``body`` (an edge's translation, asking
        for no stream) on behalf of the request ``parent`` records, with its
        key and its routing and cache headers (``options``); ``route`` names
        the call in the access log and the metrics."""
        record = RequestRecord(parent.request_id, parent.method, route)
        record.dialect = options.dialect
        called = ModelRequest(Operation.CHAT, body, record, authorization, options, checked=True)
        try:
            answer = await self._pipeline.run(called)
            record.status = 200
        except InterlockError as exc:
            record.status = exc.status_code
            record.error_type = exc.error_type
            raise
        finally:
            self._telemetry.finish(record)
            await self._accounting.finish(record)
        assert isinstance(answer, dict)  # the body asks for no stream
        return answer
