"""Who is calling: the principal a bearer credential (API key or JWT) resolves to."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from interlock.admission.limits import KeyLimits as RateLimits
from interlock.config import KeyLimits

__all__ = ["Principal"]

_UNLIMITED = KeyLimits()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling and what they may do, tier defaults already applied."""

    name: str
    permissions: frozenset[str] = frozenset()
    key_id: str | None = None  # None for keys from the config file
    tier: str = "standard"
    limits: KeyLimits = _UNLIMITED
    allowed_models: frozenset[str] | None = None
    budget_usd_day: float | None = None
    budget_usd_month: float | None = None
    priority: int = 0
    expires_at: datetime | None = None
    revoked: bool = False
    # The key's guardrails override as ``GuardrailsBook.for_request`` takes it
    # (canonical JSON text), or None.
    guardrails: str | None = None
    # ``limits`` as the rate limiter takes them, built once: a principal
    # lives until its key changes, and admission reads this on every request.
    rate_limits: RateLimits = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        limits = self.limits
        rate_limits = RateLimits(
            rpm=limits.rpm,
            tpm=limits.tpm,
            tokens_per_day=limits.tokens_per_day,
            max_concurrent=limits.max_concurrent,
        )
        object.__setattr__(self, "rate_limits", rate_limits)  # frozen: as dataclasses set fields

    def may_use(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models
