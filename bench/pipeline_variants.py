"""The gateways bench/pipeline_cost.py compares: the bare proxy path, each stage, all of them.

Every variant is the benchmark config of ``stand.py`` (the mock's models,
one key) plus its own sections; ``raw_config`` writes it for one mock and
one records store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from guardrails_cost import POLICIES
from stand import GatewayOptions, gateway_config

__all__ = [
    "ADMISSION",
    "ADMISSION_KEY",
    "BARE",
    "FULL",
    "STAGES",
    "VARIANTS",
    "Variant",
    "raw_config",
]

# Every guardrail, as the suite's full gateway (FULL_GUARDRAILS in suite.py).
ALL_GUARDRAILS = POLICIES["all checks (PII redact, injection, content, limits)"]
# Limits so high nothing is refused: every request takes the whole charge path.
ADMISSION_KEY = {
    "name": "bench",
    "key": "os.environ/BENCH_KEY",
    "limits": {"rpm": 10**9, "tpm": 10**12},
    "budget_usd_day": 10**6,
}


@dataclass(frozen=True)
class Variant:
    name: str
    what: str
    access_log: bool = False
    cache: bool = False
    guardrails: bool = False
    admission: bool = False


ADMISSION = Variant("admission", "key with rpm/tpm limits and a daily budget", admission=True)
STAGES = (
    ADMISSION,
    Variant("access log", "one JSON line per request (to /dev/null)", access_log=True),
    Variant("cache", "response cache: lookup, miss, fill", cache=True),
    Variant("guardrails", "PII redact, injection and content flag, limits", guardrails=True),
)
BARE = Variant("bare", "one unlimited key; no access log, cache, guardrails or tracing")
FULL = Variant(
    "full", "all four stages", access_log=True, cache=True, guardrails=True, admission=True
)
VARIANTS = (BARE, *STAGES, FULL)


def raw_config(variant: Variant, mock_url: str, store_url: str) -> dict[str, Any]:
    sections: dict[str, Any] = {
        "store": {"url": store_url},
        # The other variants idle while one runs: their key refresh polls the
        # store twice a second, CPU that would land in the running variant's figure.
        "admission": {"key_refresh_s": 60},
    }
    if variant.admission:
        sections["keys"] = [ADMISSION_KEY]
    if variant.cache:
        sections["cache"] = {"enabled": True}
    if variant.guardrails:
        sections["guardrails"] = ALL_GUARDRAILS
    return gateway_config(mock_url, GatewayOptions(variant.access_log, sections=sections))
