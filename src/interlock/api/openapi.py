"""``GET /openapi.json``: an OpenAPI 3.1 document of every route in the table.

Request schemas are generated from the pydantic models the edges validate
with (``pipeline/schemas.py``, the dialects' schemas, the admin API's), all
at once so that shared and same-named models get one component each; what
else the document says comes from ``openapi_routes.py``. Built once per
process, at the first request, and served without a key: it describes the
API, and holds nothing about this gateway's keys, models or deployments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import metadata
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from interlock.api.openapi_routes import ROUTES, TAGS, RouteDoc
from interlock.api.services import Services

__all__ = ["build_document", "document_bytes", "openapi_json", "table_routes"]

_REF = "#/components/schemas/{model}"
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")
# A route missing from the registry is still documented, plainly; the test
# suite fails for it.
_UNDOCUMENTED = RouteDoc("Undocumented", "undocumented")

_SECURITY_SCHEMES = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer <key>` (or a JWT, where configured).",
    },
    "adminKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "The admin key (`server.admin_key`): `Authorization: Bearer <admin key>`.",
    },
    "anthropicApiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-api-key",
        "description": "An API key as Anthropic's SDKs send it.",
    },
}
_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "key": [{"apiKey": []}],
    "admin": [{"adminKey": []}],
    "none": [],
    "optional": [{"apiKey": []}, {}],
    "anthropic": [{"apiKey": []}, {"anthropicApiKey": []}],
}
# Every error but a streamed one (an SSE event after the first byte).
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
            "required": ["message", "type"],
        }
    },
    "required": ["error"],
}
_ERROR_RESPONSE = {
    "description": "An error, in OpenAI's shape (Anthropic's on `/v1/messages`).",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InterlockError"}}},
}


async def openapi_json(request: Request, services: Services) -> ASGIApp:
    return Response(document_bytes(), media_type="application/json")


@cache
def document_bytes() -> bytes:
    """The document for this process's route table, built at the first call."""
    try:
        version = metadata.version("interlock")
    except metadata.PackageNotFoundError:  # run from a checkout, not installed
        version = "0"
    return orjson.dumps(build_document(table_routes(), version))


def table_routes() -> list[tuple[str, str]]:
    """Every (path or template, method) of the route table."""
    from interlock.api import table  # the table imports this module

    routes = [(path, method) for path, methods in table.exact_routes.items() for method in methods]
    routes += [
        (template, method) for _, template, methods in table.prefix_routes for method in methods
    ]
    return routes


def build_document(
    routes: Iterable[tuple[str, str]],
    version: str = "0",
    registry: Mapping[tuple[str, str], RouteDoc] = ROUTES,
) -> dict[str, Any]:
    """An OpenAPI 3.1 document of ``routes``, described by ``registry``."""
    docs = {route: registry.get(route, _UNDOCUMENTED) for route in routes}
    bodies = {route: doc.request() if doc.request else None for route, doc in docs.items()}
    refs, schemas = _schemas({model for model in bodies.values() if model is not None})
    paths: dict[str, dict[str, Any]] = {}
    for (path, method), doc in docs.items():
        item = paths.setdefault(path, _path_item(path))
        body = bodies[path, method]
        item[method.lower()] = _operation(path, method, doc, refs[body] if body else None)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Interlock",
            "version": version,
            "description": "An OpenAI-compatible AI gateway. Every model request, whichever "
            "API it speaks, takes one pipeline: keys and limits, guardrails, cache, routing "
            "and failover, telemetry and the usage ledger.",
        },
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": paths,
        "components": {
            "schemas": {**schemas, "InterlockError": _ERROR_SCHEMA},
            "responses": {"Error": _ERROR_RESPONSE},
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }


def _schemas(
    models: set[type[BaseModel]],
) -> tuple[dict[type[BaseModel], dict[str, str]], dict[str, Any]]:
    """Each model's ``$ref``, and every schema they need by component name."""
    ordered = sorted(models, key=lambda model: (model.__module__, model.__qualname__))
    keys, top = models_json_schema([(model, "validation") for model in ordered], ref_template=_REF)
    return {model: keys[(model, "validation")] for model in ordered}, top.get("$defs", {})


def _path_item(path: str) -> dict[str, Any]:
    names = _PATH_PARAMETER.findall(path)
    if not names:
        return {}
    return {
        "parameters": [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in names
        ]
    }


def _operation(
    path: str, method: str, doc: RouteDoc, body: dict[str, str] | None
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": method.lower() + "_" + re.sub(r"\W+", "_", path).strip("_"),
        "summary": doc.summary,
        "tags": [doc.tag],
        "security": _SECURITY[doc.auth],
    }
    if body is not None:  # the ``$ref`` of the body's model
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    operation["responses"] = {
        doc.status: {"description": doc.response, "content": {media: {} for media in doc.media}},
        "default": {"$ref": "#/components/responses/Error"},
    }
    return operation
