"""The guardrails stage of the pipeline: checks the request before it goes
upstream, and filters the answer on its way back (also when streamed).

Per request: the top-level ``guardrails:`` policy, overridden by the model
group's own, then by the key's (``GuardrailsBook``; config-file keys and
keys created through the admin API alike). A block is a 400 naming
the offending parameter and the rule, never echoing the value; every decision
is in ``x-interlock-guardrails``, ``interlock_guardrail_actions_total`` and
the access-log line.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from interlock.errors import InterlockError
from interlock.guardrails import Guardrails, GuardrailsBook
from interlock.guardrails.decision import InputDecision
from interlock.guardrails.stream import TextFilter
from interlock.telemetry.metrics import Metrics
from interlock.telemetry.record import RequestRecord

__all__ = ["Guard", "GuardrailsStage"]


@dataclass(frozen=True, slots=True)
class Guard:
    """The policy that checked a request, and its decision: the answer is
    filtered by the same policy."""

    guardrails: Guardrails
    decision: InputDecision


class GuardrailsStage:
    def __init__(self, book: GuardrailsBook, metrics: Metrics):
        self.book = book
        self._metrics = metrics

    def policy_for(self, model: str, key_override: str | None) -> Guardrails:
        """The policy for a request; a key override that no longer applies (a
        stored key from an older gateway) fails the request rather than
        skipping checks the key was meant to have."""
        try:
            return self.book.for_request(model, key_override)
        except ValueError as exc:
            raise InterlockError(
                f"This key's guardrails cannot be applied ({exc}); an admin must replace the key.",
                code="key_guardrails_invalid",
            ) from None

    def check(
        self, guardrails: Guardrails, body: dict[str, Any], record: RequestRecord
    ) -> tuple[dict[str, Any], Guard]:
        """The body to send upstream (maybe redacted), and the guard for the
        answer; raises 400 on block."""
        decision = guardrails.check_input(body)
        record.guardrails.extend(decision.labels)
        for action in decision.actions:
            self._metrics.guardrail_actions.labels(action.rule, action.action).inc()
        if decision.block is not None:
            raise decision.block.error()
        return dict(decision.body), Guard(guardrails, decision)

    def filter_completion(self, guard: Guard | None, result: dict[str, Any]) -> None:
        if guard is None:
            return
        for choice in result.get("choices") or ():
            message = choice.get("message") or {}
            if isinstance(message.get("content"), str):
                message["content"] = guard.guardrails.output_text(
                    guard.decision, message["content"]
                )

    def filter_stream(
        self, guard: Guard | None, chunks: AsyncIterator[bytes]
    ) -> AsyncIterator[bytes]:
        if guard is None:
            return chunks
        guardrails, decision = guard.guardrails, guard.decision
        first = guardrails.output_stream(decision)
        if first is None:
            return chunks
        spare = [first]  # built to learn whether the answer is filtered: the first choice's
        return _filtered(
            chunks, lambda: spare.pop() if spare else guardrails.output_stream(decision)
        )


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
