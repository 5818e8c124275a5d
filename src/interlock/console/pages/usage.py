"""Usage and spend from the usage ledger: per day, model and key, with what
the response cache saved; charts, tables, and the same rows as CSV."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from starlette.responses import Response

from interlock.api.services import Services
from interlock.console.context import SECURITY_HEADERS, ConsoleRequest
from interlock.errors import InvalidRequest
from interlock.pipeline.pricing import usage_cost

__all__ = ["export_csv", "page"]

DEFAULT_DAYS = 30
_SUMMED = ("requests", "prompt_tokens", "completion_tokens", "cost_usd", "cache_hits", "saved_usd")
_CSV_COLUMNS = (
    "day",
    "model",
    "key",
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "cache_hits",
    "cached_prompt_tokens",
    "cached_completion_tokens",
    "saved_usd",
)


async def page(context: ConsoleRequest) -> Response:
    filters = _filters(context)
    rows = await _rows(context.services, filters)
    by_day = _grouped(rows, "day")
    by_model = _grouped(rows, "model")
    by_key = _grouped(rows, "key")
    charts = [
        _chart("chart-requests", "Requests per day", by_day, "day", "requests", "requests"),
        _chart("chart-tokens", "Tokens per day", by_day, "day", "tokens", "tokens"),
        _chart("chart-spend", "Spend per day", by_day, "day", "cost_usd", "USD"),
        _chart("chart-saved", "Saved by the cache per day", by_day, "day", "saved_usd", "USD"),
        _chart("chart-models", "Spend per model", by_model, "model", "cost_usd", "USD"),
        _chart("chart-keys", "Spend per key", by_key, "key", "cost_usd", "USD"),
    ]
    keys = await context.services.records.get().keys.list(include_revoked=True)
    return context.page(
        "usage.html",
        "Usage and spend",
        filters=filters,
        key_names=sorted({k.name for k in keys}),
        model_names=sorted(g.name for g in context.services.pipeline.model_groups),
        totals=_total(rows),
        by_day=by_day,
        by_model=by_model,
        by_key=by_key,
        charts=charts,
        csv_query=context.request.url.query,
    )


async def export_csv(context: ConsoleRequest) -> Response:
    rows = await _rows(context.services, _filters(context))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(_CSV_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row[column]) for column in _CSV_COLUMNS])
    headers = {**SECURITY_HEADERS, "content-disposition": 'attachment; filename="usage.csv"'}
    return Response(out.getvalue(), 200, headers, media_type="text/csv; charset=utf-8")


def _cell(value: Any) -> Any:
    # A spreadsheet runs a cell that starts with = + - @ as a formula: key names are user text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return round(value, 8) if isinstance(value, float) else value


def _filters(context: ConsoleRequest) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    since = _day(context.query("since"), "since") or today - timedelta(days=DEFAULT_DAYS - 1)
    until = _day(context.query("until"), "until") or today
    if until < since:
        raise InvalidRequest("The end day is before the start day.")
    return {
        "key": context.query("key"),
        "model": context.query("model"),
        "since": since,
        "until": until,
    }


def _day(raw: str | None, name: str) -> date | None:
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a day as YYYY-MM-DD.", param=name) from None


async def _rows(services: Services, filters: dict[str, Any]) -> list[dict[str, Any]]:
    since = datetime.combine(filters["since"], time.min, UTC)
    until = datetime.combine(filters["until"] + timedelta(days=1), time.min, UTC)
    ledger = services.records.get().ledger
    rows = await ledger.breakdown(filters["key"], filters["model"], since, until)
    prices = _model_prices(services)
    for row in rows:
        price = prices.get(row["model"])
        cached = {
            "prompt_tokens": row["cached_prompt_tokens"],
            "completion_tokens": row["cached_completion_tokens"],
        }
        row["saved_usd"] = usage_cost(cached, price) if price is not None else 0.0
    return rows


def _model_prices(services: Services) -> dict[str, Any]:
    """Each model's price for what the cache saved: its first deployment with
    a known price (a hit is answered by no deployment, so by none's price)."""
    prices = {}
    pipeline = services.pipeline
    for group in pipeline.model_groups:
        for deployment in group.deployments:
            price = pipeline.price(deployment)
            if price is not None:
                prices[group.name] = price
                break
    return prices


def _grouped(rows: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = defaultdict(lambda: dict.fromkeys(_SUMMED, 0))
    for row in rows:
        group = groups[row[by]]
        for name in _SUMMED:
            group[name] += row[name]
    ordered = (
        sorted(groups.items())
        if by == "day"
        else sorted(groups.items(), key=lambda item: -item[1]["cost_usd"])
    )
    return [
        {by: name, "tokens": g["prompt_tokens"] + g["completion_tokens"], **g}
        for name, g in ordered
    ]


def _total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    total = dict.fromkeys(_SUMMED, 0)
    for row in rows:
        for name in _SUMMED:
            total[name] += row[name]
    total["tokens"] = total["prompt_tokens"] + total["completion_tokens"]
    return total


def _chart(
    element: str, title: str, groups: list[dict[str, Any]], by: str, value: str, unit: str
) -> dict[str, Any]:
    return {
        "id": element,
        "title": title,
        "unit": unit,
        "x": [g[by] for g in groups],
        "y": [round(g[value], 6) if isinstance(g[value], float) else g[value] for g in groups],
    }
