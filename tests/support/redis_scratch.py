"""Tests on the real Redis at 127.0.0.1:6379: required on CI (a failure),
skipped elsewhere when it is not running, and each test's keys under a
prefix of its own, deleted afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis


def require_redis(url: str) -> None:
    """Fail on CI, skip elsewhere, unless Redis at ``url`` answers."""
    try:
        with redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5) as client:
            client.ping()
    except redis.RedisError:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {url} is required on CI")
        pytest.skip(f"Redis at {url} is not reachable")


@contextmanager
def scratch_prefix(url: str, name: str) -> Iterator[str]:
    """A key prefix of the test's own (``test-<name>-<random>:``), its keys
    deleted on the way out."""
    require_redis(url)
    prefix = f"test-{name}-{uuid.uuid4().hex}:"
    try:
        yield prefix
    finally:
        with redis.Redis.from_url(url) as client:
            stale = list(client.scan_iter(match=f"{prefix}*"))
            if stale:
                client.delete(*stale)
