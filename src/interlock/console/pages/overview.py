"""The overview: live traffic figures (polled by the page) and today's totals."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from interlock.api.services import Services
from interlock.api.wire import json_response
from interlock.console.context import SECURITY_HEADERS, ConsoleRequest
from interlock.console.overview import totals_of
from interlock.errors import InterlockError

__all__ = ["live", "page", "today"]


async def page(context: ConsoleRequest) -> Response:
    return context.page("overview.html", "Overview", figures=await _figures(context.services))


async def live(context: ConsoleRequest) -> Response:
    response = json_response(await _figures(context.services))
    response.headers.update(SECURITY_HEADERS)
    return response


async def _figures(services: Services) -> dict[str, Any]:
    metrics = services.telemetry.metrics
    shown = (
        metrics.requests,
        metrics.cache_requests,
        metrics.in_flight,
        metrics.gateway_added,
        metrics.genai_ttft,
    )
    figures = services.console.window.observe(metrics.families(shown))
    figures["today"] = await today(services)
    return figures


async def today(services: Services) -> dict[str, Any] | None:
    """Requests, tokens and spend since midnight UTC, from the usage ledger
    (None while the records store is not open)."""
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    try:
        rows = await services.records.get().ledger.query(since=midnight)
    except InterlockError:
        return None
    return totals_of(rows)
