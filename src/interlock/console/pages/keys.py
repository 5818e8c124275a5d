"""API keys: list with usage against each limit (requests in flight against
``max_concurrent`` from the rate limiter, the rest from the usage ledger),
create (the secret shown once, on the answer to the form), edit, rotate and
revoke. Each change goes through the admin API's own functions, with its
checks and its audit entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from starlette.responses import Response

from interlock.api.admin import (
    KeyChanges,
    NewKey,
    change_key,
    key_json,
    make_key,
    revoke_key,
    rotate_key,
    validated,
)
from interlock.api.key_load import effective_limits, in_flight
from interlock.console.context import ConsoleRequest, redirect
from interlock.errors import InvalidRequest, NotFound

__all__ = ["create", "one_key", "page"]

_LIMITS = ("rpm", "tpm", "tokens_per_day", "max_concurrent")
_BUDGETS = ("budget_usd_day", "budget_usd_month")


async def page(context: ConsoleRequest) -> Response:
    return await _listing(context)


async def create(context: ConsoleRequest) -> Response:
    body = _settings(context.form, context)
    body["name"] = context.form.get("name", "").strip()
    spec = validated(NewKey, body)
    record, secret = await make_key(context.services, spec, context.actor)
    return await _listing(context, created={"name": record.name, "secret": secret}, status=201)


async def one_key(context: ConsoleRequest) -> Response:
    """``/console/keys/<id>``: the edit form (GET) or its save (POST);
    ``/console/keys/<id>/rotate`` and ``/revoke`` (POST, after a confirmation)."""
    rest = context.request.scope["path"].removeprefix("/console/keys/").strip("/")
    key_id, _, action = rest.partition("/")
    keys = context.services.records.get().keys
    record = await keys.get(key_id)
    if record is None:
        raise NotFound(f"No key `{key_id}`.")
    method = context.request.method
    if method == "GET" and not action:
        return context.page(
            "key.html",
            f"Key {record.name}",
            key=key_json(record),
            tiers=sorted(context.services.tiers),
            guardrails=_json(record.guardrails),
        )
    if method != "POST":
        raise NotFound("There is no such console page.")
    if not action:
        changes = validated(KeyChanges, _settings(context.form, context))
        await change_key(context.services, key_id, changes, context.actor)
        return redirect("/console/keys", notice="updated")
    if action not in ("rotate", "revoke"):
        raise NotFound(f"Unknown key action `{action}`.")
    if context.form.get("confirm") != "yes":
        question = (
            f"Revoke the key “{record.name}”? Its next request is refused, on every instance."
            if action == "revoke"
            else f"Rotate the key “{record.name}”? A new secret replaces it: "
            "the old one is refused from now on."
        )
        return context.page(
            "confirm.html",
            "Confirm",
            question=question,
            fields={},
            action_url=f"/console/keys/{key_id}/{action}",
            back="/console/keys",
            button="Revoke" if action == "revoke" else "Rotate",
        )
    if action == "revoke":
        await revoke_key(context.services, key_id, context.actor)
        return redirect("/console/keys", notice="revoked")
    rotated, secret = await rotate_key(context.services, key_id, context.actor)
    return await _listing(context, created={"name": rotated.name, "secret": secret}, status=201)


async def _listing(
    context: ConsoleRequest, created: dict[str, str] | None = None, status: int = 200
) -> Response:
    services = context.services
    include_revoked = context.query("revoked") == "1"
    records = await services.records.get().keys.list(include_revoked=include_revoked)
    used = await _usage(context)
    busy = await in_flight(services, records)
    keys = []
    for record in records:
        shown = key_json(record)
        shown["usage"] = used.get(record.name, {})
        if record.revoked_at is None:  # a rotated key's old record shares its name
            # The tier's where the key sets none.
            shown["max_concurrent"] = effective_limits(services, record)["max_concurrent"]
            shown["in_flight"] = busy.get(record.name)
        keys.append(shown)
    return context.page(
        "keys.html",
        "API keys",
        status,
        keys=keys,
        created=created,
        include_revoked=include_revoked,
        tiers=sorted(services.tiers),
        models=sorted(g.name for g in services.pipeline.model_groups),
    )


async def _usage(context: ConsoleRequest) -> dict[str, dict[str, Any]]:
    """Per key name, what counts against its limits, from the usage ledger:
    requests and tokens of the last minute, tokens and spend today, spend
    this month (UTC)."""
    ledger = context.services.records.get().ledger
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = midnight.replace(day=1)
    windows = {
        "minute": now - timedelta(minutes=1),
        "day": midnight,
        "month": month,
    }
    used: dict[str, dict[str, Any]] = {}
    for window, since in windows.items():
        for row in await ledger.query(since=since, group_by="key"):
            mine = used.setdefault(row["key"], {})
            tokens = row["prompt_tokens"] + row["completion_tokens"]
            mine[f"{window}_requests"] = row["requests"]
            mine[f"{window}_tokens"] = tokens
            mine[f"{window}_cost_usd"] = row["cost_usd"]
    return used


def _settings(form: dict[str, str], context: ConsoleRequest) -> dict[str, Any]:
    """A key's settings from the form, as the admin API's JSON body."""
    body: dict[str, Any] = {"tier": form.get("tier") or "standard"}
    models = [m.strip() for m in form.get("allowed_models", "").split(",") if m.strip()]
    body["allowed_models"] = models or None
    body["limits"] = {name: _number(form, name, int) for name in _LIMITS}
    for name in _BUDGETS:
        body[name] = _number(form, name, float)
    raw = form.get("guardrails", "").strip()
    if raw:
        try:
            body["guardrails"] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequest(
                "The guardrails override is not JSON.", param="guardrails"
            ) from None
    else:
        body["guardrails"] = None
    return body


def _number(form: dict[str, str], name: str, kind: type[int] | type[float]) -> Any:
    raw = form.get(name, "").strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        noun = "a whole number" if kind is int else "a number"
        raise InvalidRequest(f"{name} must be {noun}.", param=name) from None


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() if value else ""
