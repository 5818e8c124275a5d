"""What stored keys are using now, for the admin API and the console: each
key's limits as admission applies them, and its requests in flight."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from interlock.api.services import Services
from interlock.state import StateStoreUnavailable
from interlock.store.keys import KeyRecord

__all__ = ["effective_limits", "in_flight"]


def effective_limits(services: Services, record: KeyRecord) -> dict[str, Any]:
    """The key's limits as admission applies them: its own, and its tier's
    where it sets none (``null``: no limit)."""
    limits = services.pipeline.admission.keys.limits_of(record)
    return {
        "rpm": limits.rpm,
        "tpm": limits.tpm,
        "tokens_per_day": limits.tokens_per_day,
        "max_concurrent": limits.max_concurrent,
    }


async def in_flight(services: Services, records: Iterable[KeyRecord]) -> dict[str, int]:
    """Requests each live key has in flight now, on every instance that
    shares the limits: the slots its ``max_concurrent`` (its own or its
    tier's) hands out. A key without one takes no slot and is left out, as
    is a revoked record (a rotated key's old record shares the new one's
    name). Empty while the shared limits cannot be read."""
    admission = services.pipeline.admission
    names = [
        record.name
        for record in records
        if record.revoked_at is None and admission.keys.limits_of(record).max_concurrent
    ]
    if not names:
        return {}
    try:
        return await admission.gate.limiter.in_flight(names)
    except StateStoreUnavailable:
        return {}
