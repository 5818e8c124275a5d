"""The admin API: keys (create, list, show, edit, revoke, rotate), usage, slow
requests, chaos, and the audit log of every change made through it. Every
handler needs ``Authorization: Bearer <server.admin_key>``; who makes a
change is the ``X-Interlock-Actor`` header (``request_actor``), else "admin"."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.key_load import effective_limits, in_flight
from interlock.api.services import Services
from interlock.api.wire import int_param, json_response, read_json_object
from interlock.config import ChaosConfig, KeyLimits, Permission
from interlock.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
)
from interlock.state import StateStoreUnavailable
from interlock.store.audit import AREAS
from interlock.store.keys import KeyLimits as StoredLimits
from interlock.store.keys import KeyNotFound, KeyRecord, KeyRevoked
from interlock.store.usage_queries import GroupBy

__all__ = [
    "KeyChanges",
    "NewKey",
    "audit",
    "change_key",
    "create_key",
    "get_chaos",
    "get_key",
    "invalidate_cache",
    "key_action",
    "key_json",
    "list_keys",
    "make_key",
    "put_chaos",
    "request_actor",
    "require_admin",
    "revoke_key",
    "rotate_key",
    "set_chaos",
    "update_key",
    "usage",
    "validated",
]

_MAX_ACTOR = 200


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


def request_actor(request: Request) -> str:
    """Who makes a change, for the audit log: ``X-Interlock-Actor``, else "admin"."""
    actor = (request.headers.get("x-interlock-actor") or "").strip()
    return actor[:_MAX_ACTOR] or "admin"


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


class KeyChanges(BaseModel):
    """``PATCH /admin/keys/{id}``: the settings to change; those left out
    keep. ``limits`` replaces the key's limits as a whole (one left out: the
    tier's); ``null`` means every model, no budget, no guardrails override."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    tier: str | None = None
    # Not empty: an empty list would mean every model, not none (revoke the key instead).
    allowed_models: list[str] | None = Field(default=None, min_length=1)
    limits: KeyLimits | None = None
    budget_usd_day: float | None = Field(default=None, ge=0)
    budget_usd_month: float | None = Field(default=None, ge=0)
    guardrails: dict[str, Any] | None = None

    @field_validator("name", "tier", "limits", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Runs only on a value given: a setting left out stays as it is.
        if value is None:
            raise ValueError("it cannot be null")
        return value


def _key_guardrails(guardrails: dict[str, Any] | None, services: Services) -> dict[str, Any] | None:
    """A key's guardrails override, validated as the gateway will apply it."""
    if guardrails is None:
        return None
    stage = services.pipeline.guardrails
    if stage is None:
        raise InvalidRequest("This gateway has no guardrails stage.", param="guardrails")
    try:
        stage.book.check_key_override(guardrails, where="guardrails")
    except ValueError as exc:
        raise InvalidRequest(f"Invalid value for {exc}.", param="guardrails") from None
    return guardrails


def _known_tier(tier: str, services: Services) -> None:
    if tier not in services.tiers:
        raise InvalidRequest(f"Unknown tier `{tier}`.", param="tier")


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


async def make_key(services: Services, spec: NewKey, actor: str) -> tuple[KeyRecord, str]:
    """Create a key as ``POST /admin/keys`` does (checked, audited, usable
    here at once and elsewhere within a second); return it and its secret."""
    _known_tier(spec.tier, services)
    if spec.expires_at is not None and spec.expires_at.tzinfo is None:
        raise InvalidRequest("expires_at needs a time zone (e.g. ...Z).", param="expires_at")
    guardrails = _key_guardrails(spec.guardrails, services)
    record, plain = await services.records.get().keys.create(
        spec.name,
        spec.tier,
        allowed_models=spec.allowed_models,
        limits=StoredLimits(**spec.limits.model_dump()),
        budget_usd_day=spec.budget_usd_day,
        budget_usd_month=spec.budget_usd_month,
        permissions=spec.permissions,
        expires_at=spec.expires_at,
        guardrails=guardrails,
        actor=actor,
    )
    await services.pipeline.admission.keys.refresh()
    return record, plain


async def change_key(services: Services, key_id: str, changes: KeyChanges, actor: str) -> KeyRecord:
    """Change a live key's settings (those set in ``changes``) as
    ``PATCH /admin/keys/{id}`` does; every instance applies them within a
    second, as a revocation. 404 for an unknown or revoked key."""
    given: dict[str, Any] = {name: getattr(changes, name) for name in changes.model_fields_set}
    if changes.tier is not None:
        _known_tier(changes.tier, services)
    if changes.limits is not None:
        given["limits"] = StoredLimits(**changes.limits.model_dump())
    if "guardrails" in given:
        given["guardrails"] = _key_guardrails(changes.guardrails, services)
    try:
        record = await services.records.get().keys.update(key_id, actor=actor, **given)
    except (KeyNotFound, KeyRevoked):
        raise NotFound(f"No active key `{key_id}`.") from None
    await services.pipeline.admission.keys.refresh()
    return record


async def revoke_key(services: Services, key_id: str, actor: str) -> None:
    """Revoke a live key (404 otherwise); refused on every instance within a second."""
    if not await services.records.get().keys.revoke(key_id, actor=actor):
        raise NotFound(f"No active key `{key_id}`.")
    await services.pipeline.admission.keys.refresh()


async def rotate_key(services: Services, key_id: str, actor: str) -> tuple[KeyRecord, str]:
    """Replace a live key (404 otherwise) with a new one of the same
    settings; return the new key and its secret."""
    try:
        record, plain = await services.records.get().keys.rotate(key_id, actor=actor)
    except (KeyNotFound, KeyRevoked):
        raise NotFound(f"No active key `{key_id}`.") from None
    await services.pipeline.admission.keys.refresh()
    return record, plain


async def create_key(request: Request, services: Services) -> ASGIApp:
    require_admin(request, services)
    spec = validated(NewKey, await read_json_object(request, services.max_body_bytes))
    record, plain = await make_key(services, spec, request_actor(request))
    return json_response({**key_json(record), "key": plain}, 201)


async def list_keys(request: Request, services: Services) -> ASGIApp:
    require_admin(request, services)
    include_revoked = request.query_params.get("include_revoked") in {"1", "true"}
    records = await services.records.get().keys.list(include_revoked=include_revoked)
    return json_response({"object": "list", "data": [key_json(r) for r in records]})


async def get_key(request: Request, services: Services) -> ASGIApp:
    """GET /admin/keys/{id}: the key (revoked ones too), its limits as
    admission applies them (``effective_limits``: its tier's where it sets
    none) and ``in_flight``: its requests holding a concurrency slot now, on
    every instance; null where nothing counts them (no ``max_concurrent``,
    a revoked key) or while the shared limits cannot be read."""
    require_admin(request, services)
    key_id = _key_id(request)
    record = await services.records.get().keys.get(key_id)
    if record is None:
        raise NotFound(f"No key `{key_id}`.")
    busy = await in_flight(services, [record])
    return json_response(
        {
            **key_json(record),
            "effective_limits": effective_limits(services, record),
            "in_flight": busy.get(record.name),
        }
    )


def _key_id(request: Request) -> str:
    """The id in ``/admin/keys/{id}``; 404 for a path with more after it."""
    key_id: str = request.scope["path"].removeprefix("/admin/keys/")
    if not key_id or "/" in key_id:
        raise NotFound(f"Unknown path: {request.method} {request.scope['path']}")
    return key_id


async def key_action(request: Request, services: Services) -> ASGIApp:
    """POST /admin/keys/{id}/revoke | /admin/keys/{id}/rotate"""
    require_admin(request, services)
    key_id, _, action = request.scope["path"].removeprefix("/admin/keys/").partition("/")
    if action == "revoke":
        await revoke_key(services, key_id, request_actor(request))
        return json_response({"id": key_id, "revoked": True})
    if action == "rotate":
        record, plain = await rotate_key(services, key_id, request_actor(request))
        return json_response({**key_json(record), "key": plain}, 201)
    raise NotFound(f"Unknown key action `{action}`: use revoke or rotate.")


async def update_key(request: Request, services: Services) -> ASGIApp:
    """PATCH /admin/keys/{id} (``KeyChanges``): the key as it is now."""
    require_admin(request, services)
    key_id = _key_id(request)
    changes = validated(KeyChanges, await read_json_object(request, services.max_body_bytes))
    record = await change_key(services, key_id, changes, request_actor(request))
    return json_response(key_json(record))


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


async def get_chaos(request: Request, services: Services) -> ASGIApp:
    require_admin(request, services)
    return json_response(services.chaos.config.model_dump())


async def set_chaos(services: Services, config: ChaosConfig, actor: str) -> None:
    """Replace the chaos settings as ``PUT /admin/chaos`` does: every rule's
    deployment must be one the router serves; the change is audited."""
    # The deployments the router serves now: the config file's and the registry's.
    known = {d for group in services.pipeline.model_groups for d in group.deployments}
    unknown = [r.deployment for r in config.rules if r.deployment not in known]
    if unknown:
        raise InvalidRequest(f"Unknown deployment(s): {', '.join(unknown)}.", param="rules")
    # Recorded first: the settings never change without their audit entry.
    await services.records.get().audit.record(
        actor=actor,
        area="chaos",
        action="set",
        target="chaos",
        detail={"before": services.chaos.config.model_dump(), "after": config.model_dump()},
    )
    services.chaos.config = config


async def put_chaos(request: Request, services: Services) -> ASGIApp:
    """Replace the chaos settings: ``{"enabled": true, "rules": [...]}``."""
    require_admin(request, services)
    body = await read_json_object(request, services.max_body_bytes)
    config = validated(ChaosConfig, body)
    await set_chaos(services, config, request_actor(request))
    return json_response(config.model_dump())


# -- audit log -----------------------------------------------------------------


async def audit(request: Request, services: Services) -> ASGIApp:
    """GET /admin/audit?area=registry|keys|chaos&target=&limit=: changes made
    through the admin API, newest first (every area unless one is given)."""
    require_admin(request, services)
    query = request.query_params
    limit = int_param(query.get("limit"), "limit", 100, 1, 1000)
    area = query.get("area")
    if area is not None and area not in AREAS:
        raise InvalidRequest(f"area must be one of {', '.join(AREAS)}.", param="area")
    entries = await services.records.get().audit.entries(
        area=area, target=query.get("target"), limit=limit
    )
    return json_response({"object": "list", "data": entries})
