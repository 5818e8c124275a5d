"""The model registry's admin API (``/admin/models``).

    GET    /admin/models                                   every version (?name=)
    POST   /admin/models                                   register a version
    GET    /admin/models/{name}                            one model's versions
    GET    /admin/models/{name}/versions/{v}               one version
    PATCH  /admin/models/{name}/versions/{v}               change its facts
    DELETE /admin/models/{name}/versions/{v}               remove it (not live/canary)
    POST   /admin/models/{name}/versions/{v}/canary        {share, sticky}
    POST   /admin/models/{name}/versions/{v}/promote       make it live
    POST   /admin/models/{name}/rollback                   {reason}

Every handler needs the admin key. Who made a change is the
``X-Interlock-Actor`` header (the CLI sends the user's name), else "admin"
(``admin.request_actor``); the changes are listed by ``GET /admin/audit``
(``admin.audit``, ``?area=registry``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.admin import request_actor, require_admin, validated
from interlock.api.services import Services
from interlock.api.wire import json_response, read_json_object
from interlock.errors import MethodNotAllowed, NotFound
from interlock.registry.records import ModelVersion, VersionPatch, VersionSpec

__all__ = ["models_root", "models_route"]


class CanaryChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    share: float = Field(gt=0, lt=1)
    sticky: bool = False


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field(default="", max_length=2000)


async def _optional_body(request: Request, services: Services) -> dict[str, Any]:
    """The JSON object of an action that may come without one (promote, rollback)."""
    headers = request.headers
    if headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers:
        return {}
    return await read_json_object(request, services.max_body_bytes)


def _versions_json(versions: list[ModelVersion]) -> dict[str, Any]:
    return {"object": "list", "data": [v.to_json() for v in versions]}


async def models_root(request: Request, services: Services) -> ASGIApp:
    require_admin(request, services)
    registry = services.registry.get()
    if request.method == "GET":
        name = request.query_params.get("name")
        return json_response(_versions_json(await registry.versions(name)))
    spec = validated(VersionSpec, await read_json_object(request, services.max_body_bytes))
    created = await registry.create(spec, request_actor(request))
    return json_response(created.to_json(), 201)


async def models_route(request: Request, services: Services) -> ASGIApp:
    require_admin(request, services)
    registry = services.registry.get()
    rest = request.scope["path"].removeprefix("/admin/models/")
    method, actor = request.method, request_actor(request)
    if rest.endswith("/rollback"):
        if method != "POST":
            raise MethodNotAllowed("Roll back with POST.")
        reason = validated(Rollback, await _optional_body(request, services)).reason
        serving = await registry.rollback(rest.removesuffix("/rollback"), actor, reason)
        return json_response({"object": "model.rollback", "serving": serving.to_json()})
    name, marker, tail = rest.rpartition("/versions/")
    if not marker:
        if method != "GET":
            raise MethodNotAllowed(f"Method {method} is not allowed on a model.")
        versions = await registry.versions(rest)
        if not versions:
            raise NotFound(f"No model `{rest}` in the registry.", param="name")
        return json_response(_versions_json(versions))
    version, _, action = tail.partition("/")
    if action:
        if method != "POST":
            raise MethodNotAllowed(f"Method {method} is not allowed on `{action}`.")
        body = await _optional_body(request, services)
        if action == "promote":
            return json_response((await registry.promote(name, version, actor)).to_json())
        if action == "canary":
            canary = validated(CanaryChange, body)
            changed = await registry.set_canary(name, version, canary.share, canary.sticky, actor)
            return json_response(changed.to_json())
        raise NotFound(f"Unknown action `{action}`: use canary or promote.")
    if method == "GET":
        found = await registry.get(name, version)
        if found is None:
            raise NotFound(f"Model `{name}` has no version `{version}`.", param="version")
        return json_response(found.to_json())
    if method == "PATCH":
        patch = validated(VersionPatch, await read_json_object(request, services.max_body_bytes))
        return json_response((await registry.update(name, version, patch, actor)).to_json())
    if method == "DELETE":
        deleted = await registry.delete(name, version, actor)
        return json_response({"object": "model.version.deleted", **deleted.to_json()})
    raise MethodNotAllowed(f"Method {method} is not allowed on a model version.")
