"""The ledger's read queries, as statements (built here, run by ``UsageLedger``).

Kept apart from the writer so each reads on its own: these are pure
functions from filters to SQL, the same SQL on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from interlock.store.schema import usage_ledger, utc_day

__all__ = [
    "GroupBy",
    "breakdown_query",
    "spend_delta_query",
    "spend_query",
    "spend_seed_query",
    "totals_query",
]

GroupBy = Literal["key", "model", "day"]

_c = usage_ledger.c


def _group_column(group_by: GroupBy) -> sa.ColumnElement[Any]:
    if group_by == "key":
        return _c.key_name
    if group_by == "model":
        return _c.model
    if group_by == "day":
        return utc_day(_c.ts)
    raise ValueError(f"cannot group usage by {group_by!r}")


def _window(since: datetime | None, until: datetime | None) -> list[sa.ColumnElement[bool]]:
    conditions: list[sa.ColumnElement[bool]] = []
    if since is not None:
        conditions.append(_c.ts >= since)
    if until is not None:
        conditions.append(_c.ts < until)
    return conditions


def totals_query(
    key_name: str | None,
    model: str | None,
    since: datetime | None,
    until: datetime | None,
    group_by: GroupBy | None,
) -> sa.Select[Any]:
    """Request count, token and cost sums and cache hits, optionally per group."""
    totals: list[sa.ColumnElement[Any]] = [
        sa.func.count().label("requests"),
        sa.func.coalesce(sa.func.sum(_c.prompt_tokens), 0).label("prompt_tokens"),
        sa.func.coalesce(sa.func.sum(_c.completion_tokens), 0).label("completion_tokens"),
        sa.func.coalesce(sa.func.sum(_c.cost_usd), 0.0).label("cost_usd"),
        sa.func.coalesce(sa.func.sum(sa.case((_c.cache_hit, 1), else_=0)), 0).label("cache_hits"),
        sa.func.coalesce(sa.func.sum(_c.units), 0).label("units"),
        sa.func.coalesce(sa.func.sum(sa.case((_c.priced, 0), else_=1)), 0).label("unpriced"),
    ]
    conditions = _window(since, until)
    if key_name is not None:
        conditions.append(_c.key_name == key_name)
    if model is not None:
        conditions.append(_c.model == model)
    if group_by is None:
        return sa.select(*totals).where(*conditions)
    group = _group_column(group_by)
    return (
        sa.select(group.label("group"), *totals).where(*conditions).group_by(group).order_by(group)
    )


def breakdown_query(
    key_name: str | None, model: str | None, since: datetime | None, until: datetime | None
) -> sa.Select[Any]:
    """Totals per UTC day, model and key at once (the console's charts and
    its CSV), with the tokens answered from the cache apart: what the cache
    saved is priced from them."""
    day = utc_day(_c.ts)
    hit_tokens = sa.case((_c.cache_hit, 1), else_=0)
    conditions = _window(since, until)
    if key_name is not None:
        conditions.append(_c.key_name == key_name)
    if model is not None:
        conditions.append(_c.model == model)
    return (
        sa.select(
            day.label("day"),
            _c.model.label("model"),
            _c.key_name.label("key"),
            sa.func.count().label("requests"),
            sa.func.coalesce(sa.func.sum(_c.prompt_tokens), 0).label("prompt_tokens"),
            sa.func.coalesce(sa.func.sum(_c.completion_tokens), 0).label("completion_tokens"),
            sa.func.coalesce(sa.func.sum(_c.cost_usd), 0.0).label("cost_usd"),
            sa.func.coalesce(sa.func.sum(hit_tokens), 0).label("cache_hits"),
            sa.func.coalesce(sa.func.sum(hit_tokens * _c.prompt_tokens), 0).label(
                "cached_prompt_tokens"
            ),
            sa.func.coalesce(sa.func.sum(hit_tokens * _c.completion_tokens), 0).label(
                "cached_completion_tokens"
            ),
        )
        .where(*conditions)
        .group_by(day, _c.model, _c.key_name)
        .order_by(day, _c.model, _c.key_name)
    )


def spend_query(key_name: str, since: datetime, until: datetime | None) -> sa.Select[Any]:
    """The key's summed cost over ``[since, until)``; zero when it has none."""
    return sa.select(sa.func.coalesce(sa.func.sum(_c.cost_usd), 0.0)).where(
        _c.key_name == key_name, *_window(since, until)
    )


def spend_seed_query(key_name: str, since: datetime) -> sa.Select[Any]:
    """The key's summed cost since ``since``, its highest id and its row count."""
    return sa.select(
        sa.func.coalesce(sa.func.sum(_c.cost_usd), 0.0).label("cost"),
        sa.func.max(_c.id).label("last_id"),
        sa.func.count().label("rows"),
    ).where(_c.key_name == key_name, _c.ts >= since)


def spend_delta_query(
    key_name: str, since: datetime, after_id: int, settle_from: int, settle_to: int
) -> sa.CompoundSelect[Any]:
    """Two rows, ``part`` 0 and 1, each with ``cost``, ``last_id`` and ``rows``:
    0 sums the key's rows since ``since`` with ``id > after_id`` (the new ones),
    1 those with ``settle_from < id <= settle_to`` (read again once, see
    ``SpendTracker``). Both are ranges of ``ix_usage_ledger_key_name_id``.
    """

    # The period is a CASE, not a WHERE: given ``ts >= since`` PostgreSQL may
    # scan the (key_name, ts) index, i.e. the whole period, and filter on id.
    in_period = sa.case((_c.ts >= since, _c.cost_usd), else_=0.0)

    def part(number: int, *ids: sa.ColumnElement[bool]) -> sa.Select[Any]:
        return sa.select(
            sa.literal(number).label("part"),
            sa.func.coalesce(sa.func.sum(in_period), 0.0).label("cost"),
            sa.func.max(_c.id).label("last_id"),
            sa.func.count().label("rows"),
        ).where(_c.key_name == key_name, *ids)

    return sa.union_all(
        part(0, _c.id > after_id),
        part(1, _c.id > settle_from, _c.id <= settle_to),
    )
