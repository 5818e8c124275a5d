"""The admin API: keys (create, list, revoke, rotate), usage, slow requests,
chaos. Every handler needs ``Authorization: Bearer <server.admin_key>``."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.services import Services
from interlock.api.wire import json_response, read_json_object
from interlock.config import ChaosConfig, KeyLimits, Permission
from interlock.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
)
from interlock.state import StateStoreUnavailable
from interlock.store.keys import KeyLimits as StoredLimits
from interlock.store.keys import KeyNotFound, KeyRecord, KeyRevoked
from interlock.store.usage_queries import GroupBy

__all__ = [
    "create_key",
    "get_chaos",
    "invalidate_cache",
    "key_action",
    "list_keys",
    "put_chaos",
    "require_admin",
    "slow_requests",
    "usage",
    "validated",
]


def require_admin(request: Request, services: Services) -> None:
    """``Authorization: Bearer <server.admin_key>``, and no other scheme."""
    if services.admin_key_digest is None:
        raise PermissionDenied("The admin API is off: set server.admin_key in the config.")
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    presented = hashlib.sha256(token.strip().encode()).digest()
    # Compared whatever the scheme, so a wrong scheme costs what a wrong key does.
    matches = hmac.compare_digest(presented, services.admin_key_digest)
    if not matches or scheme.lower() != "bearer":
        raise AuthenticationFailed(
            "This endpoint needs the admin key as 'Authorization: Bearer ADMIN_KEY'."
        )


M = TypeVar("M", bound=BaseModel)


def validated(schema: type[M], body: dict[str, Any]) -> M:
    try:
        return schema.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = ".".join(str(part) for part in first["loc"]) or None
        raise InvalidRequest(f"Invalid value for '{param}': {first['msg']}.", param=param) from None


# -- keys ----------------------------------------------------------------------


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    tier: str = "standard"
    allowed_models: list[str] | None = None
    limits: KeyLimits = Field(default_factory=KeyLimits)
    budget_usd_day: float | None = Field(default=None, ge=0)
    budget_usd_month: float | None = Field(default=None, ge=0)
    permissions: list[Permission] = Field(default_factory=list)
    expires_at: datetime | None = None
    # The config file's ``keys[].guardrails`` shape, checked by ``_key_guardrails``.
    guardrails: dict[str, Any] | None = None


def _key_guardrails(spec: NewKey, services: Services) -> dict[str, Any] | None:
    """The new key's guardrails override, validated as the gateway will apply it."""
    if spec.guardrails is None:
        return None
    stage = services.pipeline.guardrails
    if stage is None:
        raise InvalidRequest("This gateway has no guardrails stage.", param="guardrails")
    try:
        stage.book.check_key_override(spec.guardrails, where="guardrails")
    except ValueError as exc:
        raise InvalidRequest(f"Invalid value for {exc}.", param="guardrails") from None
    return spec.guardrails


def key_json(record: KeyRecord) -> dict[str, Any]:
    """A key as the admin API shows it: never the key itself, nor its digest."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None

    limits = record.limits
    return {
        "id": record.id,
        "object": "api_key",
        "name": record.name,
        "key_prefix": record.key_prefix,
        "tier": record.tier,
        "allowed_models": list(record.allowed_models) if record.allowed_models else None,
        "limits": {
            "rpm": limits.rpm,
            "tpm": limits.tpm,
            "tokens_per_day": limits.tokens_per_day,
            "max_concurrent": limits.max_concurrent,
        },
        "budget_usd_day": record.budget_usd_day,
        "budget_usd_month": record.budget_usd_month,
        "permissions": sorted(record.permissions),
        "expires_at": iso(record.expires_at),
        "revoked_at": iso(record.revoked_at),
        "created_at": iso(record.created_at),
        "rotated_from": record.rotated_from,
        "guardrails": record.guardrails,
    }


async def create_key(request: Request, services: Services) -> ASGIApp:
    require_admin(request, services)
    spec = validated(NewKey, await read_json_object(request, services.max_body_bytes))
    if spec.tier not in services.tiers:
        raise InvalidRequest(f"Unknown tier `{spec.tier}`.", param="tier")
    if spec.expires_at is not None and spec.expires_at.tzinfo is None:
        raise InvalidRequest("expires_at needs a time zone (e.g. ...Z).", param="expires_at")
    guardrails = _key_guardrails(spec, services)
    store = services.records.get()
    record, plain = await store.keys.create(
        spec.name,
        spec.tier,
        allowed_models=spec.allowed_models,
        limits=StoredLimits(**spec.limits.model_dump()),
        budget_usd_day=spec.budget_usd_day,
        budget_usd_month=spec.budget_usd_month,
        permissions=spec.permissions,
        expires_at=spec.expires_at,
        guardrails=guardrails,
    )
    await (
        services.pipeline.admission.keys.refresh()
    )  # usable here at once, elsewhere within a second
    return json_response({**key_json(record), "key": plain}, 201)


async def list_keys(request: Request, services: Services) -> ASGIApp:
    require_admin(request, services)
    include_revoked = request.query_params.get("include_revoked") in {"1", "true"}
    records = await services.records.get().keys.list(include_revoked=include_revoked)
    return json_response({"object": "list", "data": [key_json(r) for r in records]})


async def key_action(request: Request, services: Services) -> ASGIApp:
    """POST /admin/keys/{id}/revoke | /admin/keys/{id}/rotate"""
    require_admin(request, services)
    key_id, _, action = request.scope["path"].removeprefix("/admin/keys/").partition("/")
    keys = services.records.get().keys
    if action == "revoke":
        if not await keys.revoke(key_id):
            raise NotFound(f"No active key `{key_id}`.")
        await services.pipeline.admission.keys.refresh()
        return json_response({"id": key_id, "revoked": True})
    if action == "rotate":
        try:
            record, plain = await keys.rotate(key_id)
        except (KeyNotFound, KeyRevoked):
            raise NotFound(f"No active key `{key_id}`.") from None
        await services.pipeline.admission.keys.refresh()
        return json_response({**key_json(record), "key": plain}, 201)
    raise NotFound(f"Unknown key action `{action}`: use revoke or rotate.")


# -- usage ---------------------------------------------------------------------


def _time(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{name} must be an ISO 8601 time.", param=name) from None
    if value.tzinfo is None:
        raise InvalidRequest(f"{name} needs a time zone (e.g. ...Z).", param=name)
    return value


async def usage(request: Request, services: Services) -> ASGIApp:
    """GET /admin/usage?key=&model=&since=&until=&group_by=key|model|day"""
    require_admin(request, services)
    query = request.query_params
    group_by = query.get("group_by")
    if group_by is not None and group_by not in get_args(GroupBy):
        raise InvalidRequest("group_by must be key, model or day.", param="group_by")
    rows = await services.records.get().ledger.query(
        key_name=query.get("key"),
        model=query.get("model"),
        since=_time(request, "since"),
        until=_time(request, "until"),
        group_by=group_by,  # type: ignore[arg-type]  # checked against GroupBy above
    )
    return json_response({"object": "list", "data": rows})


# -- cache ---------------------------------------------------------------------


async def invalidate_cache(request: Request, services: Services) -> ASGIApp:
    """DELETE /admin/cache?namespace=&model= (at least one): every instance
    misses from then on (others within about a second)."""
    require_admin(request, services)
    cache = services.pipeline.cache.cache
    if cache is None:
        raise InvalidRequest("The response cache is off (cache.enabled: false).")
    namespace = request.query_params.get("namespace")
    model = request.query_params.get("model")
    if namespace is None and model is None:
        raise InvalidRequest("Give namespace, model or both.", param="namespace")
    try:
        await cache.invalidate(namespace=namespace, model=model)
    except StateStoreUnavailable:
        raise ServiceUnavailable(
            "The shared state store is unreachable: the invalidation did not happen.",
            retry_after_s=5,
        ) from None
    return json_response({"invalidated": {"namespace": namespace, "model": model}})


# -- operations ----------------------------------------------------------------


async def slow_requests(request: Request, services: Services) -> ASGIApp:
    require_admin(request, services)
    limit = request.query_params.get("limit", "20")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise InvalidRequest("limit must be an integer from 1 to 1000.", param="limit")
    entries = services.telemetry.slow.slowest(int(limit))
    return json_response({"object": "list", "data": entries})


async def get_chaos(request: Request, services: Services) -> ASGIApp:
    require_admin(request, services)
    return json_response(services.chaos.config.model_dump())


async def put_chaos(request: Request, services: Services) -> ASGIApp:
    """Replace the chaos settings: ``{"enabled": true, "rules": [...]}``."""
    require_admin(request, services)
    body = await read_json_object(request, services.max_body_bytes)
    config = validated(ChaosConfig, body)
    # The deployments the router serves now: the config file's and the registry's.
    known = {d for group in services.pipeline.model_groups for d in group.deployments}
    unknown = [r.deployment for r in config.rules if r.deployment not in known]
    if unknown:
        raise InvalidRequest(f"Unknown deployment(s): {', '.join(unknown)}.", param="rules")
    services.chaos.config = config
    return json_response(config.model_dump())
