"""The API reference page: every route of the OpenAPI document the gateway
serves at ``GET /openapi.json``, built the same way without a server."""

from __future__ import annotations

import json
from typing import Any

OPENAPI_FILE = "openapi.json"  # the document, written into the site beside the pages


def openapi_document() -> dict[str, Any]:
    """The document ``GET /openapi.json`` serves, built without a server."""
    from interlock.api.openapi import document_bytes

    document: dict[str, Any] = json.loads(document_bytes())
    return document


_METHODS = ("get", "post", "put", "patch", "delete")


def api_routes(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every (METHOD, path, operation) of the document, sorted by path."""
    return [
        (method.upper(), path, item[method])
        for path, item in sorted(document["paths"].items())
        for method in _METHODS
        if method in item
    ]


def _ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def api_page(document: dict[str, Any]) -> str:
    out = [
        "# API reference",
        "",
        f"Generated when the site is built from the OpenAPI {document['openapi']} "
        "document the gateway serves at `GET /openapi.json` "
        "(`interlock.api.openapi`: request schemas from the pydantic models the edges "
        "validate with, the rest from `api/openapi_routes.py`). "
        f"Download it: [openapi.json](../{OPENAPI_FILE}). A running gateway also "
        "serves it browsable at `/docs` (Swagger UI, offline). "
        "[HTTP API](../guide/http-api.md) describes what every endpoint shares "
        "(authentication, errors, bounds).",
        "",
        "Every error answer is an `InterlockError` (OpenAI's error shape; "
        "Anthropic's on `/v1/messages`).",
        "",
    ]
    tags = {tag["name"]: tag.get("description", "") for tag in document.get("tags", [])}
    routes = api_routes(document)
    by_tag: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for route in routes:
        by_tag.setdefault(route[2].get("tags", ["Other"])[0], []).append(route)
    for tag in [*tags, *sorted(set(by_tag) - set(tags))]:
        if tag not in by_tag:
            continue
        out += [f"## {tag}", ""]
        if tags.get(tag):
            out += [tags[tag], ""]
        for method, path, operation in by_tag[tag]:
            out.append(f"### `{method} {path}`")
            out.append("")
            out.append(operation.get("summary", ""))
            out.append("")
            auth = [
                " and ".join(f"`{name}`" for name in option) or "none"
                for option in operation.get("security", [])
            ]
            out.append(f"- Operation: `{operation.get('operationId', '')}`")
            out.append(f"- Authentication: {', or '.join(auth) if auth else 'none'}")
            body = operation.get("requestBody")
            if body:
                for media, content in body.get("content", {}).items():
                    name = _ref_name(content.get("schema", {})) or "inline"
                    out.append(f"- Request body ({media}): schema `{name}`")
            else:
                out.append("- Request body: none")
            for status, response in operation.get("responses", {}).items():
                if status == "default":
                    ref = _ref_name(response) or "Error"
                    out.append(f"- Otherwise: `{ref}` (`InterlockError`)")
                    continue
                media = ", ".join(f"`{m}`" for m in response.get("content", {})) or "no body"
                out.append(f"- Response {status} ({media}): {response.get('description', '')}")
            out.append("")
    schemas = sorted(document["components"].get("schemas", {}))
    out += ["## Schemas", "", "Components of the document, by name:", ""]
    out += [f"- `{name}`" for name in schemas]
    return "\n".join(out) + "\n"
