"""Documents named by a file id: ``{"type": "file", "file": {"file_id": ...}}``
in a chat message (a Responses ``input_file`` with a ``file_id`` becomes one),
read from the key's uploads (``/v1/files``, purpose ``user_data``) and
sent inline as ``file_data``, since no upstream can read the gateway's files.

This is OpenAI's way to send a PDF: upload it once, name it in requests,
online or in a batch's lines. The file must be the key's (another key's is
as absent as an unknown one: 404), a PDF or plain text by its name (the
types every provider reads as a document), and at most
``MAX_INLINE_BYTES``: the bytes travel in the request to the upstream,
base64-encoded.
"""

from __future__ import annotations

import base64
from pathlib import PurePosixPath
from typing import Any, TypeGuard

from interlock.errors import InvalidRequest, NotFound
from interlock.store.blobs import BlobStore
from interlock.store.files import FileStore

__all__ = ["MAX_INLINE_BYTES", "Documents", "names_file_ids"]

JSONDict = dict[str, Any]

# OpenAI's bound on the files one request may carry.
MAX_INLINE_BYTES = 32 * 1024 * 1024
_MEDIA_TYPES = {".pdf": "application/pdf", ".txt": "text/plain", ".md": "text/plain"}


def names_file_ids(messages: Any) -> TypeGuard[list[JSONDict]]:
    """Whether any message has a ``file`` part naming a file id (the usual
    request has none: one pass over the messages, no allocation). Runs
    before the body is validated: anything else is left to validation."""
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "file" and _file_id(part):
                    return True
    return False


class Documents:
    """The uploaded files a request names, read for it."""

    def __init__(self, files: FileStore, blobs: BlobStore):
        self._files = files
        self._blobs = blobs

    async def inline(self, key: str, messages: list[JSONDict], param: str | None = None) -> None:
        """Each ``file`` part naming a file id of ``key``'s given the file's
        bytes instead (in place). ``param``: what errors name (the client's
        field, where the messages were translated from another shape)."""
        total = 0
        for i, message in enumerate(messages):
            content = message.get("content")
            if not isinstance(content, list):
                continue
            for j, part in enumerate(content):
                file_id = _file_id(part) if isinstance(part, dict) else None
                if file_id is None:
                    continue
                where = param or f"messages[{i}].content[{j}].file.file_id"
                record = await self._files.get(key, file_id)
                if record is None:
                    raise NotFound(
                        f"No such File object: {file_id}", param=where, code="file_not_found"
                    )
                media_type = _MEDIA_TYPES.get(PurePosixPath(record.filename).suffix.lower())
                if record.purpose != "user_data" or media_type is None:
                    raise InvalidRequest(
                        f"File {file_id} cannot be read as a document: upload a PDF or "
                        "plain-text file (.pdf, .txt, .md) with purpose `user_data`.",
                        param=where,
                    )
                total += record.bytes
                if total > MAX_INLINE_BYTES:
                    raise InvalidRequest(
                        f"The files one request names may hold {MAX_INLINE_BYTES:,} bytes at most.",
                        param=where,
                    )
                data = b"".join([chunk async for chunk in self._blobs.chunks(file_id)])
                encoded = base64.b64encode(data).decode()
                file = {
                    "file_data": f"data:{media_type};base64,{encoded}",
                    "filename": record.filename,
                }
                content[j] = {**part, "file": file}


def _file_id(part: JSONDict) -> str | None:
    spec = part.get("file")
    if part.get("type") != "file" or not isinstance(spec, dict) or spec.get("file_data"):
        return None
    found = spec.get("file_id")
    return found if isinstance(found, str) and found else None
