"""The admin API's kept requests: ``GET /admin/requests/slow`` and
``/admin/requests/failed`` list the recent slowest and the most recent
failed requests, ``GET /admin/requests/{request_id}`` answers one of them by
its ``x-request-id``. Each needs the admin key.

Exact routes are matched before the ``/admin/requests/`` prefix, so neither
list shadows an id.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp

from interlock.api.admin import require_admin
from interlock.api.services import Services
from interlock.api.wire import int_param, json_response
from interlock.errors import NotFound

__all__ = ["failed_requests", "kept_request", "slow_requests"]


def _limit(request: Request) -> int:
    return int_param(request.query_params.get("limit"), "limit", 20, 1, 1000)


async def slow_requests(request: Request, services: Services) -> ASGIApp:
    """The slowest requests of the last minutes, slowest first."""
    require_admin(request, services)
    entries = services.telemetry.slow.slowest(_limit(request))
    return json_response({"object": "list", "data": entries})


async def failed_requests(request: Request, services: Services) -> ASGIApp:
    """The most recent failed requests (status >= 400), newest first."""
    require_admin(request, services)
    entries = services.telemetry.failures.recent(_limit(request))
    return json_response({"object": "list", "data": entries})


async def kept_request(request: Request, services: Services) -> ASGIApp:
    """One recent failed or slow request, as its access-log line with stages."""
    require_admin(request, services)
    request_id = request.scope["path"].removeprefix("/admin/requests/")
    entry = services.telemetry.find_request(request_id)
    if entry is None:
        raise NotFound(f"No recent failed or slow request `{request_id}` is kept.")
    return json_response(entry)
