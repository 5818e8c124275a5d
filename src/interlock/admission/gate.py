"""The admission stage: per-key limits and budgets, before any upstream work.

``admit`` reserves the request against the key's limits (requests, and an
estimate of its tokens: prompt characters / 4 plus ``max_tokens``), then
checks the key's spend against its daily and monthly budgets. A refusal is
a 429 (``rate_limit_exceeded``, or ``insufficient_quota`` for budgets, as
OpenAI names them) with ``Retry-After`` and OpenAI's ``x-ratelimit-*``
headers, which admitted responses carry too. ``settle`` swaps the
reservation for the actual usage when the response ends.

The token estimate is deliberately cheap (no tokenizer on the hot path): it
only has to be in the right range, because reconciliation corrects it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from interlock.admission.keys import Principal
from interlock.admission.limits import Decision, RateLimiter
from interlock.admission.spend import SpendTracker
from interlock.chat_markers import prompt_token_ids
from interlock.errors import ServiceUnavailable, TooManyRequests
from interlock.store.ledger import UsageLedger
from interlock.telemetry.record import RequestRecord
from interlock.tokens import message_text

__all__ = ["AdmissionGate", "BudgetGuard"]

# Completion budget assumed when a request sets no max_tokens.
DEFAULT_COMPLETION_ESTIMATE = 1024


def estimate_tokens(body: dict[str, Any]) -> int:
    """Prompt characters / 4 plus the completion the request may produce."""
    messages = body.get("messages")
    if isinstance(messages, list):  # not yet validated: count what looks right
        chars = 0
        for message in messages:
            if isinstance(message, dict):
                content = message.get("content")
                # A plain string (the usual case) needs no parts joined.
                chars += len(content) if isinstance(content, str) else len(message_text(content))
        completion = body.get("max_completion_tokens") or body.get("max_tokens")
        completion = completion if isinstance(completion, int) else DEFAULT_COMPLETION_ESTIMATE
        ids = prompt_token_ids(body)  # a legacy completion's prompts as token ids: exact
        counted = sum(len(prompt) for prompt in ids) if ids is not None else 0
        return chars // 4 + 8 + counted + completion
    raw = body.get("input")
    items = raw if isinstance(raw, list) else [raw]
    return sum(len(x) // 4 + 1 if isinstance(x, str) else 8 for x in items)


class BudgetGuard:
    """USD per day and per month, from the usage ledger. The spend is a running
    total per key refreshed at most every ``cache_s`` (see ``SpendTracker``),
    so the check costs a dict lookup on most requests."""

    def __init__(
        self,
        ledger: Callable[[], UsageLedger | None],
        *,
        cache_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.spend = SpendTracker(ledger, refresh_s=cache_s, clock=clock)
        self._now = now
        self._day: tuple[datetime, datetime] | None = None  # today's start and end

    async def check(self, principal: Principal) -> None:
        day_budget, month_budget = principal.budget_usd_day, principal.budget_usd_month
        if day_budget is None and month_budget is None:
            return
        now = self._now()
        day_start = self._day_start(now)
        # Most requests find a fresh spend and need no await (``fresh``).
        if day_budget is not None:
            spent = self.spend.fresh(principal.name, "day", day_start)
            if spent is None:
                spent = await self.spend.spent(principal.name, "day", day_start)
            if spent >= day_budget:
                _refuse("day", day_budget, day_start + timedelta(days=1), now)
        if month_budget is not None:
            month_start = day_start.replace(day=1)
            spent = self.spend.fresh(principal.name, "month", month_start)
            if spent is None:
                spent = await self.spend.spent(principal.name, "month", month_start)
            if spent >= month_budget:
                _refuse("month", month_budget, _next_month(day_start), now)

    def _day_start(self, now: datetime) -> datetime:
        """The midnight that began ``now``'s day, kept while that day lasts."""
        day = self._day
        if day is None or not day[0] <= now < day[1]:
            start = now.replace(hour=0, minute=0, second=0, microsecond=0)
            day = self._day = (start, start + timedelta(days=1))
        return day[0]


def _refuse(period: str, budget: float, reset: datetime, now: datetime) -> NoReturn:
    raise TooManyRequests(
        f"This key has used its {period}ly budget of ${budget:g}.",
        code="insufficient_quota",
        retry_after_s=(reset - now).total_seconds(),
    )


def _next_month(day: datetime) -> datetime:
    first = day.replace(day=1)
    return (first + timedelta(days=32)).replace(day=1)


class AdmissionGate:
    def __init__(
        self,
        limiter: RateLimiter,
        budgets: BudgetGuard,
        on_reject: Callable[[str], None] | None = None,
    ):
        self.limiter = limiter
        self.budgets = budgets
        self._on_reject = on_reject

    async def admit(
        self, principal: Principal, record: RequestRecord, body: dict[str, Any]
    ) -> None:
        # Budgets first: a key out of money should not also spend a request slot.
        try:
            await self.budgets.check(principal)
        except TooManyRequests:
            if self._on_reject is not None:
                self._on_reject("budget")
            raise
        limits = principal.rate_limits
        if not limits.unlimited:
            tokens = estimate_tokens(body) if limits.limits_tokens else 0
            decision = await self.limiter.admit(principal.name, limits, tokens=tokens)
            record.ratelimit_headers = decision.headers
            if not decision.allowed:
                self._reject(decision)
            record.reservation = decision.reservation

    def _reject(self, decision: Decision) -> None:
        reason = decision.reason or "limit"
        if self._on_reject is not None:
            self._on_reject(reason)
        if decision.status_code == 503:
            raise ServiceUnavailable(
                "Rate limits are unavailable right now; retry shortly.",
                retry_after_s=decision.retry_after_s,
            )
        if decision.retry_after_s is None:
            raise TooManyRequests(
                "This request needs more tokens than the key's whole limit allows.",
                code="request_too_large",
            )
        raise TooManyRequests(
            f"Rate limit reached for this key ({reason}); retry after the Retry-After delay.",
            retry_after_s=decision.retry_after_s,
        )

    async def settle(self, record: RequestRecord) -> None:
        if record.reservation is None:
            return
        actual = (record.input_tokens or 0) + (record.output_tokens or 0)
        await self.limiter.finish(record.reservation, actual)
        record.reservation = None
