"""Requests: the recent slowest and the recent failed, with their stage
timings, and one found by its request id (``x-request-id``). What the
gateway keeps is bounded: the slowest and the last failures of the last
minutes, in this instance."""

from __future__ import annotations

from starlette.responses import Response

from interlock.console.context import ConsoleRequest

__all__ = ["page"]

SHOWN = 50


async def page(context: ConsoleRequest) -> Response:
    telemetry = context.services.telemetry
    wanted = context.query("id")
    found = telemetry.find_request(wanted) if wanted else None
    return context.page(
        "requests.html",
        "Requests",
        wanted=wanted,
        found=found,
        slow=telemetry.slow.slowest(SHOWN),
        failed=telemetry.failures.recent(SHOWN),
    )
