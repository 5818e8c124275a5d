"""Who may call: API keys, JWTs (``jwt_auth``), tiers and their per-key limits,
and how admission behaves when shared state is unreachable."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from interlock.config.base import Secret, _Strict
from interlock.config.jwt_auth import JwtConfig

__all__ = ["AdmissionConfig", "KeyConfig", "KeyLimits", "Permission", "TierConfig"]

Permission = Literal["force_deployment"]


class KeyLimits(_Strict):
    """Per-key limits; None means the tier's default (and a tier's None: unlimited)."""

    # Requests per minute, refilled continuously (a burst of rpm, then one every
    # 60/rpm s); over it, admission answers 429 with Retry-After.
    rpm: int | None = Field(default=None, ge=1)
    # Tokens per minute: an estimate (prompt characters / 4 plus max_tokens) is
    # reserved at admission and corrected to the actual usage when the response ends.
    tpm: int | None = Field(default=None, ge=1)
    # Tokens per rolling 24 hours, counted like tpm; refilled continuously, not at midnight.
    tokens_per_day: int | None = Field(default=None, ge=1)
    # Requests of this key in flight at once, streams included; one more gets a 429.
    max_concurrent: int | None = Field(default=None, ge=1)


class TierConfig(_Strict):
    limits: KeyLimits = Field(default_factory=KeyLimits)
    # Higher tiers are served first from the load-shedding wait queue.
    priority: int = 0


def _default_tiers() -> dict[str, TierConfig]:
    return {
        # Config-file keys default to this: operators' own keys, no caps.
        "unlimited": TierConfig(priority=1),
        "anonymous": TierConfig(limits=KeyLimits(rpm=20, tpm=20_000, max_concurrent=2)),
        "standard": TierConfig(
            limits=KeyLimits(rpm=600, tpm=1_000_000, max_concurrent=64), priority=1
        ),
        "premium": TierConfig(
            limits=KeyLimits(rpm=6_000, tpm=10_000_000, max_concurrent=512), priority=2
        ),
    }


class KeyConfig(_Strict):
    """An API key defined in the config file; more are created through the admin
    API or ``interlock keys``. A store key with the same secret is ignored."""

    # Names the key in rate limits, budgets, the usage ledger and logs; unique among keys.
    name: str = Field(min_length=1)
    # The secret callers send as `Authorization: Bearer ...`; give it as os.environ/NAME.
    key: Secret
    # A name in `tiers`: supplies the limits left unset below and the queue priority.
    tier: str = "unlimited"
    # This key's own limits; each one left unset is the tier's.
    limits: KeyLimits = Field(default_factory=KeyLimits)
    # The model groups this key may call (others: 403 model_not_allowed); None or []: all.
    allowed_models: list[str] | None = None
    # US dollars of spend per UTC day, summed from the usage ledger; once reached, 429
    # insufficient_quota until midnight UTC. None: no cap.
    budget_usd_day: float | None = Field(default=None, ge=0)
    # US dollars per UTC calendar month, counted and enforced like budget_usd_day.
    budget_usd_month: float | None = Field(default=None, ge=0)
    # force_deployment: may send x-interlock-force-deployment (incident repro).
    permissions: list[Permission] = Field(default_factory=list)
    # Overrides the guardrails policy (top level, then the model group's) for
    # this key's requests; checked by interlock.guardrails at start-up.
    guardrails: dict[str, Any] | None = None


class AdmissionConfig(_Strict):
    # When Redis is unreachable: keep serving with per-instance limits, or refuse.
    on_state_failure: Literal["fail_open_local", "fail_closed"] = "fail_open_local"
    # How often each instance re-reads changed keys (revocations) from the store.
    key_refresh_s: float = Field(default=0.5, gt=0, le=60)
    # JWT bearer tokens accepted beside API keys; None: API keys only.
    jwt: JwtConfig | None = None
