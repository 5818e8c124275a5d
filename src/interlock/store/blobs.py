"""File contents on the local disk: one file per id under a directory of
the data directory (``files/``), written to a temporary name then renamed,
so a reader never sees half a file. Blocking file work runs in threads."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path
from typing import BinaryIO

__all__ = ["LocalBlobStore"]

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class LocalBlobStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, blob_id: str) -> Path:
        if not _ID.match(blob_id):  # ids are ours; a path out of the root is never built
            raise ValueError(f"not a blob id: {blob_id!r}")
        return self.root / blob_id

    async def put(self, blob_id: str, source: BinaryIO) -> None:
        """Copy ``source`` (from its start) in as ``blob_id``."""
        await asyncio.to_thread(self._put, self.path(blob_id), source)

    def _put(self, target: Path, source: BinaryIO) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        source.seek(0)
        with partial.open("wb") as out:
            shutil.copyfileobj(source, out, 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(target)

    async def delete(self, blob_id: str) -> None:
        await asyncio.to_thread(self.path(blob_id).unlink, missing_ok=True)
