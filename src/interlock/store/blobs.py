"""File contents (uploads, batch results) by id: a ``BlobStore``.

Two stores: ``LocalBlobStore``, one file per id under a directory of the
data directory (``files/``), and ``S3BlobStore``, one object per id in an
S3-compatible bucket. Either way a reader never sees half a blob: a local
file is written to a temporary name then renamed, and an S3 object (also
one uploaded in parts) appears whole when its upload completes. Blocking
work (disk, boto3's sync client) runs in threads.

Errors: an absent blob is ``None`` from ``size`` and ``FileNotFoundError``
from ``chunks`` and ``copy_to``; a bucket that does not answer, or refuses,
is ``BlobStoreUnavailable`` (503), mapped once, in ``S3BlobStore._call``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TypeVar

from interlock.config.base import ConfigError
from interlock.config.files import FilesConfig
from interlock.errors import ServiceUnavailable

__all__ = [
    "CHUNK_BYTES",
    "BlobStore",
    "BlobStoreUnavailable",
    "LocalBlobStore",
    "S3BlobStore",
    "build_blob_store",
]

CHUNK_BYTES = 1024 * 1024
# Above this an S3 upload goes in parts of this size (boto3's own default;
# S3 refuses parts under 5 MiB). At most _PART_THREADS parts in flight
# bound the memory one upload holds.
_PART_BYTES = 8 * 1024 * 1024
_PART_THREADS = 4
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_T = TypeVar("_T")


def _checked(blob_id: str) -> str:
    if not _ID.match(blob_id):  # ids are ours; a path out of the root is never built
        raise ValueError(f"not a blob id: {blob_id!r}")
    return blob_id


class BlobStoreUnavailable(ServiceUnavailable):
    """The blob store did not answer in time, or refused the request."""


class BlobStore(Protocol):
    """Whole blobs by id: written once, read (streamed or copied), deleted."""

    async def put(self, blob_id: str, source: BinaryIO) -> None:
        """Copy ``source`` (from its start) in as ``blob_id``."""

    async def size(self, blob_id: str) -> int | None:
        """The blob's length in bytes; ``None`` if there is none."""

    def chunks(self, blob_id: str, chunk_bytes: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
        """The blob's bytes in pieces (``FileNotFoundError`` if absent)."""
        ...

    async def copy_to(self, blob_id: str, target: BinaryIO) -> None:
        """The whole blob into ``target`` at its position, e.g. a temporary
        file a batch worker then reads line by line."""

    async def delete(self, blob_id: str) -> None:
        """Remove the blob; one that is absent is no error."""


class LocalBlobStore:
    """A ``BlobStore`` on the local disk: one file per id under ``root``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, blob_id: str) -> Path:
        return self.root / _checked(blob_id)

    async def put(self, blob_id: str, source: BinaryIO) -> None:
        await asyncio.to_thread(self._put, self.path(blob_id), source)

    def _put(self, target: Path, source: BinaryIO) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        source.seek(0)
        with partial.open("wb") as out:
            shutil.copyfileobj(source, out, CHUNK_BYTES)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(target)

    async def size(self, blob_id: str) -> int | None:
        try:
            stat = await asyncio.to_thread(self.path(blob_id).stat)
        except FileNotFoundError:
            return None
        return stat.st_size

    async def chunks(self, blob_id: str, chunk_bytes: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
        file = await asyncio.to_thread(self.path(blob_id).open, "rb")
        try:
            while chunk := await asyncio.to_thread(file.read, chunk_bytes):
                yield chunk
        finally:
            file.close()

    async def copy_to(self, blob_id: str, target: BinaryIO) -> None:
        await asyncio.to_thread(self._copy_to, self.path(blob_id), target)

    def _copy_to(self, path: Path, target: BinaryIO) -> None:
        with path.open("rb") as source:
            shutil.copyfileobj(source, target, CHUNK_BYTES)

    async def delete(self, blob_id: str) -> None:
        await asyncio.to_thread(self.path(blob_id).unlink, missing_ok=True)


class S3BlobStore:
    """A ``BlobStore`` in an S3-compatible bucket: the object ``prefix +
    blob_id`` per blob, through boto3 (the optional extra ``s3``).

    Credentials come from boto3's standard chain (environment, shared
    config, instance role). Every request ends within the timeouts, after
    at most ``max_attempts`` tries (boto3's "standard" retries).
    """

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        addressing_style: str | None = None,
        connect_timeout_s: float = 5,
        read_timeout_s: float = 30,
        max_attempts: int = 3,
    ):
        # Only looked for here: importing boto3 is slow, and it is an extra.
        if importlib.util.find_spec("boto3") is None:
            raise ConfigError("files.blobs.backend 's3' needs boto3: pip install 'interlock[s3]'")
        self.bucket = bucket
        self.prefix = prefix
        self._endpoint_url = endpoint_url
        self._region = region
        self._addressing_style = addressing_style
        self._timeouts = (connect_timeout_s, read_timeout_s)
        self._max_attempts = max_attempts
        # Built at first use, from a worker thread: creating a client is slow
        # (it loads the service model) and boto3 sessions are not thread-safe.
        self._client: Any = None
        self._lock = threading.Lock()

    def key(self, blob_id: str) -> str:
        return self.prefix + _checked(blob_id)

    async def put(self, blob_id: str, source: BinaryIO) -> None:
        await self._call(self._put, self.key(blob_id), source)

    def _put(self, key: str, source: BinaryIO) -> None:
        source.seek(0)
        self._s3().upload_fileobj(source, self.bucket, key, Config=self._parts())

    async def size(self, blob_id: str) -> int | None:
        try:
            head = await self._call(self._head, self.key(blob_id))
        except FileNotFoundError:
            return None
        return int(head["ContentLength"])

    def _head(self, key: str) -> Any:
        return self._s3().head_object(Bucket=self.bucket, Key=key)

    async def chunks(self, blob_id: str, chunk_bytes: int = CHUNK_BYTES) -> AsyncIterator[bytes]:
        body = await self._call(self._body, self.key(blob_id))
        try:
            while chunk := await self._call(body.read, chunk_bytes):
                yield chunk
        finally:
            body.close()

    def _body(self, key: str) -> Any:
        return self._s3().get_object(Bucket=self.bucket, Key=key)["Body"]

    async def copy_to(self, blob_id: str, target: BinaryIO) -> None:
        await self._call(self._copy_to, self.key(blob_id), target)

    def _copy_to(self, key: str, target: BinaryIO) -> None:
        # One streamed GET, not boto3's parallel ranged download: that one
        # seeks ``target`` to absolute offsets, which would write over
        # whatever it holds before its position.
        body = self._s3().get_object(Bucket=self.bucket, Key=key)["Body"]
        with body:
            shutil.copyfileobj(body, target, CHUNK_BYTES)

    async def delete(self, blob_id: str) -> None:
        # S3 answers a delete of an absent key with success.
        await self._call(self._delete, self.key(blob_id))

    def _delete(self, key: str) -> None:
        self._s3().delete_object(Bucket=self.bucket, Key=key)

    async def _call(self, work: Callable[..., _T], *args: Any) -> _T:
        """``work(*args)`` in a thread, boto3's errors mapped to ours."""
        from boto3.exceptions import Boto3Error  # type: ignore[import-untyped]
        from botocore.exceptions import (  # type: ignore[import-untyped]
            BotoCoreError,
            ClientError,
        )

        try:
            return await asyncio.to_thread(work, *args)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "unknown"))
            # HEAD answers a bare 404 (no body to carry NoSuchKey).
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(f"no such blob in bucket {self.bucket}") from None
            raise BlobStoreUnavailable(f"The file store refused the request ({code}).") from exc
        except (BotoCoreError, Boto3Error) as exc:
            # Not the exception's text: it can quote the endpoint's URL.
            raise BlobStoreUnavailable(
                f"The file store did not answer ({type(exc).__name__}); retry shortly."
            ) from exc

    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._new_client()
            return self._client

    def _new_client(self) -> Any:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]

        config = Config(
            connect_timeout=self._timeouts[0],
            read_timeout=self._timeouts[1],
            retries={"max_attempts": self._max_attempts, "mode": "standard"},
            s3={"addressing_style": self._addressing_style} if self._addressing_style else None,
        )
        # A session per client: the default session is shared, mutable state.
        return boto3.session.Session().client(
            "s3", endpoint_url=self._endpoint_url, region_name=self._region, config=config
        )

    def _parts(self) -> Any:
        from boto3.s3.transfer import TransferConfig  # type: ignore[import-untyped]

        return TransferConfig(
            multipart_threshold=_PART_BYTES,
            multipart_chunksize=_PART_BYTES,
            max_concurrency=_PART_THREADS,
        )


def build_blob_store(settings: FilesConfig, default_root: Path) -> BlobStore:
    """The blob store ``files.blobs`` names; the local one under ``files.dir``
    or else ``default_root``."""
    blobs = settings.blobs
    if blobs.backend == "s3":
        assert blobs.bucket is not None  # BlobsConfig refuses s3 without one
        return S3BlobStore(
            blobs.bucket,
            prefix=blobs.prefix,
            endpoint_url=blobs.endpoint_url,
            region=blobs.region,
            addressing_style=blobs.addressing_style,
        )
    return LocalBlobStore(Path(settings.dir).expanduser() if settings.dir else default_root)
