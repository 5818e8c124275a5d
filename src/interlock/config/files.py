"""Uploaded files (``files:``): the OpenAI Files API's limits and where the
bytes are kept."""

from __future__ import annotations

from pydantic import Field

from interlock.config.base import _Strict

__all__ = ["FilesConfig"]


class FilesConfig(_Strict):
    # OpenAI's limits for a batch input file: 200 MB and 50,000 requests.
    max_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    max_lines: int = Field(default=50_000, ge=1)
    # Where the bytes are kept; default: files/ in the data directory.
    dir: str | None = None
