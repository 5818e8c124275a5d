"""``GET /docs``: ``/openapi.json`` rendered by Swagger UI, served whole by
the gateway: Swagger UI's script and stylesheet come from the swagger-ui-py
package's bundled copy, so the page works with no network and loads
nothing from elsewhere (its content security policy says so too). No key,
like the document itself.

Its URLs are relative (``docs/...``, ``openapi.json``), so the page also
works behind a proxy that serves the gateway under a path prefix.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from interlock.api.services import Services
from interlock.errors import NotFound

__all__ = ["DOCS_FILES", "docs_file"]

# The page itself: no inline script or style (the policy below allows none).
_PAGE = b"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Interlock API</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="docs/swagger-ui-bundle.js"></script>
  <script src="docs/init.js"></script>
</body>
</html>
"""
# validatorUrl null: Swagger UI would otherwise send the document to
# validator.swagger.io for a badge.
_INIT = b"""window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: new URL("openapi.json", document.baseURI).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
"""
_HTML = "text/html; charset=utf-8"
_JS = "text/javascript; charset=utf-8"
_CSS = "text/css; charset=utf-8"
# URL path -> (Swagger UI's file, or None for ours, content type).
DOCS_FILES: dict[str, tuple[str | None, str]] = {
    "/docs": (None, _HTML),
    "/docs/init.js": (None, _JS),
    "/docs/swagger-ui.css": ("swagger-ui.css", _CSS),
    "/docs/swagger-ui-bundle.js": ("swagger-ui-bundle.js", _JS),
}
_OURS = {"/docs": _PAGE, "/docs/init.js": _INIT}
_HEADERS = {
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
    # Swagger UI sets style attributes as it renders; scripts are only these.
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; "
    "frame-ancestors 'none'",
}


async def docs_file(request: Request, services: Services) -> ASGIApp:
    path = request.scope["path"]
    found = DOCS_FILES.get(path)
    if found is None:
        raise NotFound("No such page.")
    name, media_type = found
    content = _OURS[path] if name is None else _swagger_file(name)
    return Response(content, media_type=media_type, headers=_HEADERS)


@cache
def _swagger_file(name: str) -> bytes:
    # Read once, at the first request. The package is found, not imported:
    # importing it would load its web-framework glue, which is not needed.
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise NotFound("The API docs page needs the swagger-ui-py package.")
    return (Path(spec.submodule_search_locations[0]) / "static" / name).read_bytes()
