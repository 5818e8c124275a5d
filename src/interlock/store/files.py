"""Uploaded files' records (the OpenAI Files API), one row per file, scoped
to the key that uploaded it; the bytes live in the blob store (``blobs.py``)
under the same id. Every query names the key: a file of another key is as
absent as one that never existed."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from interlock.store.paging import page_after
from interlock.store.schema import files

__all__ = ["FileRecord", "FileStore", "new_file_id"]


def new_file_id() -> str:
    """Time first (microseconds), then randomness: ids sort in upload order,
    which keeps a list's order stable among files uploaded in one second."""
    return f"file-{time.time_ns() // 1000:014x}{secrets.token_hex(6)}"


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: str
    key_name: str
    filename: str
    purpose: str
    bytes: int
    lines: int
    created_at: int

    def to_json(self) -> dict[str, Any]:
        """OpenAI's file object."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
        }


class FileStore:
    def __init__(self, engine: AsyncEngine):
        self._engine = engine

    async def add(self, record: FileRecord) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(sa.insert(files).values(**_row(record)))

    async def get(self, key_name: str, file_id: str) -> FileRecord | None:
        query = sa.select(files).where(files.c.id == file_id, files.c.key_name == key_name)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return FileRecord(**row) if row is not None else None

    async def list(
        self,
        key_name: str,
        *,
        limit: int,
        after: str | None = None,
        purpose: str | None = None,
        newest_first: bool = True,
    ) -> tuple[list[FileRecord], bool]:
        """At most ``limit`` of the key's files after the file ``after`` in
        the order asked, and whether there are more."""
        where = [files.c.purpose == purpose] if purpose is not None else []
        async with self._engine.connect() as conn:
            rows, more = await page_after(
                conn,
                files,
                files.c.key_name == key_name,
                limit=limit,
                after=after,
                newest_first=newest_first,
                where=where,
            )
        return [FileRecord(**row) for row in rows], more

    async def delete(self, key_name: str, file_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(
                sa.delete(files).where(files.c.id == file_id, files.c.key_name == key_name)
            )
        return bool(result.rowcount)


def _row(record: FileRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "key_name": record.key_name,
        "filename": record.filename,
        "purpose": record.purpose,
        "bytes": record.bytes,
        "lines": record.lines,
        "created_at": record.created_at,
    }
