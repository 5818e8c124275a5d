"""The price in use for each deployment: the config's, else the catalog's.

A deployment with neither has an *unknown* price: its answers carry no cost
(the access log shows none, the ledger marks the row unpriced and the usage
totals count such requests), never a silent 0. In-process engines
(simulator, ONNX, sentence-transformers) cost nothing per token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from interlock.config import DeploymentConfig
from interlock.pipeline.price_catalog import PriceCatalog
from interlock.pipeline.pricing import Price, Rates

__all__ = ["IN_PROCESS_PROVIDERS", "PriceBook"]

log = logging.getLogger("interlock.pricing")

IN_PROCESS_PROVIDERS = frozenset({"simulator", "onnx", "sentence-transformers"})
_FREE = Price(Rates(0.0, 0.0, 0.0, 0.0), "in-process")
# Catalog prices are looked up again this often: a dated price change in the
# snapshot then applies within the hour.
REFRESH_S = 3600.0


@dataclass(slots=True)
class _Entry:
    deployment: DeploymentConfig
    price: Price | None
    expires: float  # monotonic; inf for config and in-process prices


class PriceBook:
    """Deployment id -> ``Price`` (None: unknown). ``catalog`` None turns the
    catalog off (only config prices, everything else unknown)."""

    def __init__(
        self,
        catalog: PriceCatalog | None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._catalog = catalog
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    def add(self, deployment: DeploymentConfig) -> Price | None:
        """Resolve (again) and remember ``deployment``'s price."""
        price, expires = self._resolve(deployment)
        self._entries[deployment.id] = _Entry(deployment, price, expires)
        if price is None:
            log.warning(
                "deployment %s: no price for %s model %r in the config or the catalog; "
                "its cost is unknown (budgets do not count it). Set `price` in the config.",
                deployment.id,
                deployment.provider,
                deployment.model,
            )
        return price

    def get(self, deployment_id: str) -> Price | None:
        entry = self._entries.get(deployment_id)
        if entry is None:
            return None
        if self._clock() >= entry.expires:
            entry.price, entry.expires = self._resolve(entry.deployment)
        return entry.price

    def _resolve(self, deployment: DeploymentConfig) -> tuple[Price | None, float]:
        if deployment.price is not None:
            return Price.of(deployment.price), float("inf")
        if deployment.provider in IN_PROCESS_PROVIDERS:
            return _FREE, float("inf")
        if self._catalog is None or deployment.model is None:
            return None, float("inf")
        price = self._catalog.lookup(deployment.provider, deployment.model, deployment.base_url)
        return price, self._clock() + REFRESH_S
