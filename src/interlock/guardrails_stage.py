"""The guardrails stage of the pipeline: checks the request before it goes
upstream, and filters the answer on its way back (also when streamed).

Per model group: the top-level ``guardrails:`` policy, overridden by the
group's own. A block is a 400 naming the offending parameter and the rule,
never echoing the value; every decision is in ``x-interlock-guardrails``,
``interlock_guardrail_actions_total`` and the access-log line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson

from interlock.guardrails import Guardrails
from interlock.guardrails.decision import InputDecision
from interlock.guardrails.stream import TextFilter
from interlock.telemetry.metrics import Metrics
from interlock.telemetry.record import RequestRecord

__all__ = ["GuardrailsStage"]


class GuardrailsStage:
    def __init__(self, by_model: Mapping[str, Guardrails], metrics: Metrics):
        self._by_model = {name: g for name, g in by_model.items() if g.enabled}
        self._metrics = metrics

    def check(
        self, model: str, body: dict[str, Any], record: RequestRecord
    ) -> tuple[dict[str, Any], InputDecision | None]:
        """The body to send upstream (maybe redacted), and the decision; raises 400 on block."""
        guardrails = self._by_model.get(model)
        if guardrails is None:
            return body, None
        decision = guardrails.check_input(body)
        record.guardrails.extend(decision.labels)
        for action in decision.actions:
            self._metrics.guardrail_actions.labels(action.rule, action.action).inc()
        if decision.block is not None:
            raise decision.block.error()
        return dict(decision.body), decision

    def filter_completion(
        self, model: str, decision: InputDecision | None, result: dict[str, Any]
    ) -> None:
        guardrails = self._by_model.get(model)
        if guardrails is None or decision is None:
            return
        for choice in result.get("choices") or ():
            message = choice.get("message") or {}
            if isinstance(message.get("content"), str):
                message["content"] = guardrails.output_text(decision, message["content"])

    def filter_stream(
        self, model: str, decision: InputDecision | None, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        guardrails = self._by_model.get(model)
        if guardrails is None or decision is None:
            return chunks
        if guardrails.output_stream(decision) is None:
            return chunks
        return _filtered(chunks, lambda: guardrails.output_stream(decision))


async def _filtered(chunks: AsyncIterator[bytes], new_filter: Any) -> AsyncIterator[bytes]:
    """Rewrite content deltas through one filter per choice; what a filter
    holds back (a value that may be split across chunks) is released with
    the next chunk of that choice, or with its finish chunk."""
    filters: dict[int, TextFilter] = {}
    async for chunk in chunks:
        parsed = orjson.loads(chunk)
        for choice in parsed.get("choices") or ():
            index = choice.get("index", 0)
            text_filter = filters.get(index) or filters.setdefault(index, new_filter())
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                delta["content"] = text_filter.feed(delta["content"])
            if choice.get("finish_reason") is not None:
                delta["content"] = delta.get("content", "") + text_filter.flush()
                choice["delta"] = delta
        yield orjson.dumps(parsed)
