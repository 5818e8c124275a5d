"""Batches, message batches and async jobs of every key, newest first, with their progress."""

from __future__ import annotations

from starlette.responses import Response

from interlock.console.context import ConsoleRequest

__all__ = ["page"]

SHOWN = 100


async def page(context: ConsoleRequest) -> Response:
    service = context.services.batches.service
    rows = []
    if service is not None:
        for batch in await service.store.recent(SHOWN):
            counts = batch.counts
            done = counts.succeeded + counts.failed
            rows.append(
                {
                    **(batch.to_job_json() if batch.kind == "job" else batch.to_json()),
                    "kind": batch.kind,
                    "key": batch.key_name,
                    "done": done,
                    "total": counts.total,
                    "succeeded": counts.succeeded,
                    "failed": counts.failed,
                }
            )
    return context.page("batches.html", "Batches", enabled=service is not None, batches=rows)
