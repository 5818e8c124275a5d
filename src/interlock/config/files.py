"""Uploaded files (``files:``): the OpenAI Files API's limits and where the
bytes are kept (``files.blobs``: the local disk, or an S3-compatible bucket)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from interlock.config.base import _Strict

__all__ = ["BlobsConfig", "FilesConfig"]

_S3_ONLY = ("bucket", "prefix", "endpoint_url", "region", "addressing_style")


class BlobsConfig(_Strict):
    """Where file contents (uploads, batch results) are kept. S3 credentials
    come from the standard AWS chain (environment, ``~/.aws``, instance
    role), never from this file."""

    # local: one file per blob under files.dir; s3: one object per blob in a bucket
    # (needs the s3 extra, boto3).
    backend: Literal["local", "s3"] = "local"
    # The bucket's name; required for s3.
    bucket: str | None = Field(default=None, min_length=1)
    # Put before every blob id to make the object key.
    prefix: str = ""
    # An S3-compatible server (MinIO, R2, ...).
    endpoint_url: str | None = None
    # The bucket's region, given to boto3; unset: boto3's own default.
    region: str | None = None
    # boto3's S3 addressing style: path (endpoint/bucket/key), virtual
    # (bucket.endpoint/key) or auto; unset: boto3's default.
    addressing_style: Literal["path", "virtual", "auto"] | None = None

    @model_validator(mode="after")
    def _backend_settings(self) -> BlobsConfig:
        if self.backend == "s3" and not self.bucket:
            raise ValueError("blobs.backend 's3' needs `bucket`")
        # A bucket under the default backend is most likely a forgotten
        # `backend: s3`; storing on the local disk then would go unnoticed.
        stray = [name for name in _S3_ONLY if name in self.model_fields_set]
        if self.backend == "local" and stray:
            raise ValueError(f"{', '.join(stray)}: only for blobs.backend 's3'")
        return self


class FilesConfig(_Strict):
    # Largest upload, in bytes; a larger one gets 413. OpenAI's limit: 200 MB.
    max_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    # Most requests (non-blank lines) an uploaded batch input file may hold; more: 400.
    # OpenAI's limit: 50,000.
    max_lines: int = Field(default=50_000, ge=1)
    # The local backend's directory; default: files/ in the data directory.
    dir: str | None = None
    # Where file contents (uploads, batch results) are kept: local disk or an S3 bucket.
    blobs: BlobsConfig = Field(default_factory=BlobsConfig)

    @model_validator(mode="after")
    def _dir_is_local(self) -> FilesConfig:
        if self.dir is not None and self.blobs.backend != "local":
            raise ValueError(
                "`dir` is the local backend's directory; unset it for blobs.backend 's3'"
            )
        return self
