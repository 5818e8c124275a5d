"""Default prices from a maintained offline catalog: ``genai-prices``.

Typing every deployment's price into the config by hand goes stale, and a
forgotten price used to mean a cost of 0. The catalog is the package's
bundled snapshot (no network: the gateway never fetches price updates),
keyed by provider and model, with cache-read and cache-write rates,
long-context tiers and dated price changes. The package is pinned loosely
so ``pip install -U genai-prices`` brings new models without a release of
ours. A deployment's ``price`` in the config overrides the catalog.

Lookups are done once per deployment (and again after ``REFRESH_S``, so a
dated price change in the snapshot takes effect in a long-running process),
never per request: the package's own ``calc_price`` costs ~90 µs a call.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from interlock.pipeline.pricing import Price, Rates

__all__ = ["CATALOG_PROVIDERS", "PriceCatalog"]

log = logging.getLogger("interlock.pricing")

# Our provider names -> the catalog's provider ids. An OpenAI-compatible
# deployment is found by its base URL instead (api.openai.com, DeepSeek,
# Together, Groq ...), so a self-hosted vLLM or Ollama matches nothing.
CATALOG_PROVIDERS = {
    "anthropic": "anthropic",
    "gemini": "google",
    "azure": "azure",
    "bedrock": "aws",
}


class PriceCatalog:
    """The bundled ``genai-prices`` snapshot, read on first use."""

    def __init__(self) -> None:
        from genai_prices import __version__, data_snapshot

        self._snapshot = data_snapshot.get_snapshot()
        self.name = f"genai-prices {__version__}"

    def lookup(
        self, provider: str, model: str, base_url: str | None, at: datetime | None = None
    ) -> Price | None:
        """The catalog's price for ``model`` at ``provider`` (at ``at``, default
        now), or None when the catalog does not know it."""
        provider_id = CATALOG_PROVIDERS.get(provider)
        api_url = base_url if provider == "openai" else None
        if provider_id is None and api_url is None:
            return None
        try:
            found, info = self._snapshot.find_provider_model(model, None, provider_id, api_url)
        except LookupError:
            return None
        prices = info.get_prices(at or datetime.now(tz=UTC))
        base, tiers = _rates(prices)
        if base is None:
            return None
        return Price(base, "catalog", f"{self.name}: {found.id}/{info.id}", tiers)


def _rates(prices: Any) -> tuple[Rates | None, tuple[tuple[int, Rates], ...]]:
    """Flat rates and long-context tiers from a catalog ``ModelPrice``."""
    fields = {
        "input": getattr(prices, "input_mtok", None),
        "output": getattr(prices, "output_mtok", None),
        "cache_read": getattr(prices, "cache_read_mtok", None),
        "cache_write": getattr(prices, "cache_write_mtok", None),
    }
    if fields["input"] is None and fields["output"] is None:
        return None, ()  # priced per request or per second: not ours to guess
    thresholds = sorted(
        {tier.start for value in fields.values() for tier in getattr(value, "tiers", ())}
    )

    def at(threshold: int | None) -> Rates:
        values = {name: _value(raw, threshold) for name, raw in fields.items()}
        plain = values["input"] or 0.0
        return Rates(
            input=plain,
            output=values["output"] or 0.0,
            # The catalog leaves a cache rate out where the provider has none:
            # those tokens are charged as plain input.
            cache_read=plain if values["cache_read"] is None else values["cache_read"],
            cache_write=plain if values["cache_write"] is None else values["cache_write"],
            web_search=float(getattr(prices, "web_searches_kcount", None) or 0.0),
        )

    return at(None), tuple((threshold, at(threshold)) for threshold in thresholds)


def _value(raw: Any, threshold: int | None) -> float | None:
    """The rate at prompt sizes above ``threshold`` (None: the base rate)."""
    if raw is None:
        return None
    if isinstance(raw, Decimal | int | float):
        return float(raw)
    price = raw.base
    for tier in raw.tiers:
        if threshold is not None and tier.start <= threshold:
            price = tier.price
    return float(price)
