"""The admin API's kept requests: ``GET /admin/requests/failed`` lists the
most recent failed requests, ``GET /admin/requests/{request_id}`` answers one
kept failed or slow request by its ``x-request-id``. Both need the admin key.

``/admin/requests/slow`` stays in ``api.admin``; exact routes are matched
before the ``/admin/requests/`` prefix, so neither list shadows an id.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.admin import require_admin
from interlock.api.services import Services
from interlock.api.wire import json_response
from interlock.errors import InvalidRequest, NotFound

__all__ = ["failed_requests", "kept_request"]


async def failed_requests(request: Request, services: Services) -> ASGIApp:
    """The most recent failed requests (status >= 400), newest first."""
    require_admin(request, services)
    limit = request.query_params.get("limit", "20")
    if not limit.isdigit() or not 1 <= int(limit) <= 1000:
        raise InvalidRequest("limit must be an integer from 1 to 1000.", param="limit")
    entries = services.telemetry.failures.recent(int(limit))
    return json_response({"object": "list", "data": entries})


async def kept_request(request: Request, services: Services) -> ASGIApp:
    """One recent failed or slow request, as its access-log line with stages."""
    require_admin(request, services)
    request_id = request.scope["path"].removeprefix("/admin/requests/")
    entry = services.telemetry.find_request(request_id)
    if entry is None:
        raise NotFound(f"No recent failed or slow request `{request_id}` is kept.")
    return json_response(entry)
