"""The guard stage: checks the request before it goes upstream, and filters
the answer on its way back (also when streamed).

Per request: the top-level ``guardrails:`` policy, overridden by the model
group's own, then by the key's (``GuardrailsBook``; config-file keys and
keys created through the admin API alike). A block is a 400 naming
the offending parameter and the rule, never echoing the value; every decision
is in ``x-interlock-guardrails``, ``interlock_guardrail_actions_total`` and
the access-log line. A request whose policy checks nothing costs one lookup.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from interlock.chat_markers import prompt_token_ids
from interlock.errors import InterlockError, InvalidRequest
from interlock.guardrails import Guardrails, GuardrailsBook
from interlock.guardrails.body import called_function, custom_input
from interlock.guardrails.decision import InputDecision
from interlock.guardrails.facade import InjectionModelNotLoaded
from interlock.guardrails.stream import TextFilter
from interlock.telemetry.metrics import Metrics
from interlock.telemetry.record import RequestRecord

if TYPE_CHECKING:
    from interlock.pipeline.call import ModelCall

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

    async def guard(self, call: ModelCall) -> None:
        """Check the call's input: the body to send may be redacted, and the
        call keeps the guard its answer is filtered by. Raises 400 on block.
        Async for the learned injection model, which runs in its own threads."""
        try:
            policy = self.policy_for(call.group.name, call.principal.guardrails)
        except InjectionModelNotLoaded:  # a key's policy names it: once, off the loop
            await self.book.load_model()
            policy = self.policy_for(call.group.name, call.principal.guardrails)
        if not policy.enabled:
            return
        if prompt_token_ids(call.body) is not None:
            raise InvalidRequest(
                "This request's guardrails read prompts, and a prompt of token ids cannot be "
                "read: send the prompt as text.",
                param="prompt",
                code="unsupported_parameter",
            )
        record = call.record
        began = time.perf_counter()
        try:
            call.body, call.guard = await self.check(policy, call.body, record)
        finally:
            record.stages["guardrails"] = time.perf_counter() - began

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

    async def check(
        self, guardrails: Guardrails, body: dict[str, Any], record: RequestRecord
    ) -> tuple[dict[str, Any], Guard]:
        """The body to send upstream (maybe redacted), and the guard for the
        answer; raises 400 on block."""
        decision = await guardrails.check_input_async(body)
        record.guardrails.extend(decision.labels)
        for action in decision.actions:
            self._metrics.guardrail_actions.labels(action.rule, action.action).inc()
        if decision.block is not None:
            raise decision.block.error()
        return dict(decision.body), Guard(guardrails, decision)

    @staticmethod
    def filter_completion(guard: Guard | None, result: dict[str, Any]) -> None:
        if guard is None:
            return
        guardrails, decision = guard.guardrails, guard.decision
        for choice in result.get("choices") or ():
            message = choice.get("message") or {}
            if isinstance(message.get("content"), str):
                message["content"] = guardrails.output_text(decision, message["content"])
            for call in message.get("tool_calls") or ():
                if custom_input(call) is not None:  # a freeform tool's input: text
                    call["custom"]["input"] = guardrails.output_text(
                        decision, call["custom"]["input"]
                    )
                    continue
                function = called_function(call)
                if function is not None:
                    function["arguments"] = guardrails.output_arguments(
                        decision, function["arguments"]
                    )

    @staticmethod
    def filter_stream(guard: Guard | None, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        if guard is None:
            return chunks
        first = guard.guardrails.output_stream(guard.decision)
        if first is None:
            return chunks  # this policy leaves answers alone
        return _filtered(chunks, _ChoiceFilters(guard, first))


class _ChoiceFilters:
    """One output filter per streamed choice, made when the choice first
    appears; one per tool call of a choice, for its arguments."""

    __slots__ = ("_calls", "_custom", "_filters", "_guard", "_spare")

    def __init__(self, guard: Guard, first: TextFilter):
        self._guard = guard
        # Built to learn whether the answer is filtered at all: the first choice's.
        self._spare: TextFilter | None = first
        self._filters: dict[int, TextFilter] = {}
        self._calls: dict[int, dict[int, TextFilter]] = {}  # by choice, then call index
        self._custom: set[tuple[int, int]] = set()  # (choice, call) of freeform tools' calls

    def for_call(self, choice: int, call: int, custom: bool = False) -> TextFilter:
        """The filter of a call's arguments (``custom``: of a freeform
        tool's input, which is text, not JSON)."""
        calls = self._calls.setdefault(choice, {})
        text_filter = calls.get(call)
        if text_filter is None:
            guardrails, decision = self._guard.guardrails, self._guard.decision
            if custom:
                text_filter = guardrails.output_stream(decision)
                self._custom.add((choice, call))
            else:
                text_filter = guardrails.output_arguments_stream(decision)
            assert text_filter is not None  # same policy and decision as the first
            calls[call] = text_filter
        return text_filter

    def calls_of(self, choice: int) -> dict[int, TextFilter]:
        return self._calls.get(choice, {})

    def rest_piece(self, choice: int, call: int, rest: str) -> dict[str, Any]:
        """The streamed piece that carries what a call's filter held back."""
        if (choice, call) in self._custom:
            return {"index": call, "custom": {"input": rest}}
        return {"index": call, "function": {"arguments": rest}}

    def for_choice(self, index: int) -> TextFilter:
        text_filter = self._filters.get(index)
        if text_filter is None:
            text_filter, self._spare = self._spare, None
            if text_filter is None:
                text_filter = self._guard.guardrails.output_stream(self._guard.decision)
                assert text_filter is not None  # same policy and decision as the first
            self._filters[index] = text_filter
        return text_filter


async def _filtered(chunks: AsyncIterator[bytes], filters: _ChoiceFilters) -> AsyncIterator[bytes]:
    """Rewrite content deltas through each choice's filter; what a filter
    holds back (a value that may be split across chunks) is released with
    the next chunk of that choice, or with its finish chunk."""
    async for chunk in chunks:
        parsed = orjson.loads(chunk)
        for choice in parsed.get("choices") or ():
            index = choice.get("index", 0)
            text_filter = filters.for_choice(index)
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                delta["content"] = text_filter.feed(delta["content"])
            for piece in delta.get("tool_calls") or ():
                position = piece.get("index", 0)
                if custom_input(piece) is not None:
                    call = filters.for_call(index, position, custom=True)
                    piece["custom"]["input"] = call.feed(piece["custom"]["input"])
                    continue
                function = called_function(piece)
                if function is not None:
                    call = filters.for_call(index, position)
                    function["arguments"] = call.feed(function["arguments"])
            if choice.get("finish_reason") is not None:
                delta["content"] = delta.get("content", "") + text_filter.flush()
                for position, call in filters.calls_of(index).items():
                    rest = call.flush()
                    if rest:  # what a call's filter held: its arguments' end
                        piece = filters.rest_piece(index, position, rest)
                        delta.setdefault("tool_calls", []).append(piece)
                choice["delta"] = delta
        yield orjson.dumps(parsed)
