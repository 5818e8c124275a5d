"""Documents named by a file id in an online request, read from the
caller's uploads (``files/documents.py`` has the rules)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from interlock.api.services import Services
from interlock.api.wire import caller_name
from interlock.files.documents import MAX_INLINE_BYTES, Documents, names_file_ids

__all__ = ["MAX_INLINE_BYTES", "inline_file_ids", "names_file_ids"]


async def inline_file_ids(
    request: Request, services: Services, messages: list[dict[str, Any]], param: str | None = None
) -> None:
    """Each ``file`` part naming one of the caller's file ids given the
    file's bytes instead (in place); ``param``: what errors name."""
    key = caller_name(request, services)
    documents = Documents(services.records.get().files, services.blobs)
    await documents.inline(key, messages, param)
