"""The engines every multi-instance test shares: one scratch PostgreSQL
cluster for the session (a database per fleet), and a way to start a fleet."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fleet import (
    Fleet,
    FleetUpstream,
    PostgresCluster,
    RedisServer,
    require_engines,
)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    try:
        cluster.init()
        print(f"figure: initdb took {cluster.initdb_s:.2f} s")
        cluster.start()
        yield cluster
    finally:
        cluster.close()


@contextlib.contextmanager
def running_fleet(
    directory: Path, postgres: PostgresCluster, keys: list[dict[str, Any]]
) -> Iterator[Fleet]:
    """nginx, two gateways and a worker, on a Redis of their own and a fresh
    database; everything stopped on the way out, whatever happened."""
    require_engines()
    upstream = FleetUpstream()
    redis = RedisServer(directory)
    fleet: Fleet | None = None
    try:
        redis.start()
        database = f"fleet_{uuid.uuid4().hex[:10]}"
        fleet = Fleet(directory, redis, postgres, upstream, database, keys)
        fleet.start()
        yield fleet
    finally:
        if fleet is not None:
            fleet.close()
        redis.stop()
        upstream.close()
