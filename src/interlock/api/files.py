"""The OpenAI Files API: ``/v1/files`` (upload, list) and ``/v1/files/{id}``
(retrieve, ``/content``, delete). Every file belongs to the key that
uploaded it; another key's file answers 404, as one that never existed.

An upload is ``multipart/form-data`` with ``file`` and ``purpose``
(``batch``, or ``user_data``: a document requests name by its id), at most
``files.max_bytes``; a batch input file is checked line by line
(``files/batch_input.py``) before anything is stored. The
bytes go to the blob store (``store/blobs.py``), the record to the records
store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any
from urllib.parse import quote

from python_multipart.exceptions import MultipartParseError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Message

from interlock.api.services import Services
from interlock.api.wire import caller_name, int_param, json_response, list_response
from interlock.errors import InvalidRequest, NotFound, PayloadTooLarge, ServiceUnavailable
from interlock.files.batch_input import check_batch_lines
from interlock.store import FileRecord, FileStore, new_file_id
from interlock.store.blobs import BlobStore

__all__ = ["file_route", "files_root"]

_PREFIX = "/v1/files/"
# batch: a Batch API input file; user_data: a document a request names by
# its id (``api/file_inputs.py``).
_PURPOSES = ("batch", "user_data")
# Room for the multipart framing and the other fields around the file.
_FRAMING_BYTES = 64 * 1024
_MAX_LIST = 10_000


def _store(services: Services) -> FileStore:
    store = services.records.store
    if store is None:
        raise ServiceUnavailable("The records store is not open yet; retry shortly.")
    return store.files


async def files_root(request: Request, services: Services) -> ASGIApp:
    if request.method == "POST":
        return await _upload(request, services)
    return await _list(request, services)


async def file_route(request: Request, services: Services) -> ASGIApp:
    rest = request.scope["path"].removeprefix(_PREFIX)
    file_id, _, tail = rest.partition("/")
    key = caller_name(request, services)
    store = _store(services)
    if tail not in ("", "content") or (tail and request.method != "GET"):
        raise NotFound(f"Unknown route {request.method} {request.scope['path']}.")
    record = await store.get(key, file_id)
    if record is None:
        raise NotFound(f"No such File object: {file_id}", code="file_not_found")
    if request.method == "DELETE":
        await store.delete(key, file_id)
        await services.blobs.delete(file_id)
        return json_response({"id": file_id, "object": "file", "deleted": True})
    if tail == "content":
        return await _content(services.blobs, file_id, record.filename)
    return json_response(record.to_json())


async def _content(blobs: BlobStore, file_id: str, filename: str) -> ASGIApp:
    """The file's bytes, streamed from the blob store."""
    size = await blobs.size(file_id)
    chunks = blobs.chunks(file_id)
    try:
        # The first read before the status line: a blob deleted meanwhile is
        # a 404, an unreachable store a 503, not a response cut short.
        first = await anext(chunks, b"") if size is not None else b""
    except FileNotFoundError:
        size = None
    if size is None:
        raise NotFound(f"No such File object: {file_id}", code="file_not_found")
    return StreamingResponse(
        _resumed(first, chunks),
        media_type="application/octet-stream",
        headers={"content-length": str(size), "content-disposition": _attachment(filename)},
    )


async def _resumed(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk


def _attachment(filename: str) -> str:
    """``Content-Disposition`` as Starlette's ``FileResponse`` writes it."""
    quoted = quote(filename)
    if quoted != filename:
        return f"attachment; filename*=utf-8''{quoted}"
    return f'attachment; filename="{filename}"'


async def _list(request: Request, services: Services) -> ASGIApp:
    key = caller_name(request, services)
    params = request.query_params
    limit = int_param(params.get("limit"), "limit", 10_000, 1, _MAX_LIST)
    order = params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("`order` must be asc or desc.", param="order")
    records, more = await _store(services).list(
        key,
        limit=limit,
        after=params.get("after") or None,
        purpose=params.get("purpose") or None,
        newest_first=order == "desc",
    )
    return list_response([r.to_json() for r in records], more)


async def _upload(request: Request, services: Services) -> ASGIApp:
    key = caller_name(request, services)
    store = _store(services)
    settings = services.files
    limit = settings.max_bytes + _FRAMING_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"The file is larger than the {settings.max_bytes:,}-byte limit.")
    counted = Request(request.scope, _counting(request.receive, limit, settings.max_bytes))
    try:
        form = await counted.form(max_files=1, max_fields=8)
    except (MultiPartException, MultipartParseError) as exc:
        raise InvalidRequest(f"The upload is not valid multipart/form-data: {exc}.") from None
    try:
        purpose = form.get("purpose")
        if purpose not in _PURPOSES:
            raise InvalidRequest(
                f"`purpose` must be one of: {', '.join(_PURPOSES)}.", param="purpose"
            )
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("Send the file as the `file` field.", param="file")
        size = upload.size or 0
        if size > settings.max_bytes:
            raise PayloadTooLarge(f"The file is larger than the {settings.max_bytes:,}-byte limit.")
        lines = 0
        if purpose == "batch":
            # Parsing up to max_bytes of JSON is CPU work: off the event loop.
            lines = await asyncio.to_thread(
                check_batch_lines, _lines(upload.file), settings.max_lines
            )
        record = FileRecord(
            id=new_file_id(),
            key_name=key,
            filename=(upload.filename or ("upload.jsonl" if purpose == "batch" else "upload"))[
                :255
            ],
            purpose=str(purpose),
            bytes=size,
            lines=lines,
            created_at=int(time.time()),
        )
        await services.blobs.put(record.id, upload.file)
        try:
            await store.add(record)
        except BaseException:
            await services.blobs.delete(record.id)
            raise
    finally:
        await form.close()
    return json_response(record.to_json())


def _lines(file: IO[bytes]) -> Iterator[bytes]:
    file.seek(0)
    yield from file


def _counting(receive: Any, limit: int, max_bytes: int) -> Any:
    """``receive``, refusing a body past ``limit`` bytes (a chunked upload
    declares no length)."""
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message: Message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(f"The file is larger than the {max_bytes:,}-byte limit.")
        return message

    return counted
