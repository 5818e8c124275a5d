from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import settings

from tests.state.harness import BACKENDS, StoreHarness, open_harness
from tests.support.sdk_clients import close_registered
from tests.support.servers import FakeUpstream, GatewayProcess

TEST_KEY = "sk-test-interlock"

# Property tests explore new examples on every local run; on CI they replay
# the same ones, so a submission passes or fails on its code, not on luck.
settings.register_profile("ci", derandomize=True, database=None, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")

# Every gateway a test starts (in process or as a child) keeps its SQLite
# records here, not in the checkout.
os.environ.setdefault("INTERLOCK_DATA_DIR", tempfile.mkdtemp(prefix="interlock-test-"))
# Upstreams in tests are on loopback: a proxy set in the developer's
# environment must not carry them (the proxy tests set their own).
for _name in ("http_proxy", "https_proxy", "no_proxy", "all_proxy"):
    os.environ.pop(_name, None)
    os.environ.pop(_name.upper(), None)


def simulator_config(**params: Any) -> dict[str, Any]:
    """A minimal valid config: one simulator model, one key from the environment."""
    return {
        "models": [
            {
                "name": "sim",
                "deployments": [{"id": "sim-1", "provider": "simulator", "params": params}],
            },
            {
                "name": "embed",
                "deployments": [
                    {"id": "emb-1", "provider": "simulator", "params": {"dimensions": 8}}
                ],
            },
        ],
        "keys": [{"name": "test", "key": "os.environ/TEST_KEY"}],
    }


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    started: list[GatewayProcess] = []

    def start(config: dict[str, Any] | None, **kwargs: Any) -> GatewayProcess:
        env = {"TEST_KEY": TEST_KEY, **kwargs.pop("env", {})}
        gateway = GatewayProcess(config, tmp_path, env=env, **kwargs)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.close()


@pytest.fixture
def fake_upstream() -> Iterator[Callable[[web.Application], FakeUpstream]]:
    started: list[FakeUpstream] = []

    def start(app: web.Application) -> FakeUpstream:
        upstream = FakeUpstream(app)
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        upstream.close()


@pytest.fixture(params=BACKENDS)
async def store_harness(request: pytest.FixtureRequest) -> AsyncIterator[StoreHarness]:
    """Each state-store test runs against memory and Redis (db 15, a prefix per test)."""
    async with open_harness(request.param) as harness:
        yield harness


@pytest.fixture(autouse=True)
def _sdk_clients_closed() -> Iterator[None]:
    """Every SDK client a test registered (``tests/support/sdk_clients.py``), closed."""
    yield
    close_registered()


@pytest.fixture(autouse=True)
def _no_sqlite_connection_outlives_its_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """aiosqlite runs each connection on a non-daemon thread: one left open
    keeps a gateway process from exiting, and warns in whichever later test
    the collector happens to run. Caught here, in the test that leaked it.

    A module marked ``shared_gateway`` runs its tests on one in-process
    gateway, whose connection pool may grow in any of them (two queries at
    once: a request and the key refresh): checked once, after the module's
    gateway closed (``_no_sqlite_connection_outlives_its_module``)."""
    if request.node.get_closest_marker("shared_gateway") is not None:
        yield
        return
    before = set(sqlite_workers())
    yield
    _assert_none_left(before, "this test")


@pytest.fixture(scope="module", autouse=True)
def _no_sqlite_connection_outlives_its_module(request: pytest.FixtureRequest) -> Iterator[None]:
    # Autouse: set up before the module's gateway fixture, so torn down after it.
    if request.node.get_closest_marker("shared_gateway") is None:
        yield
        return
    before = set(sqlite_workers())
    yield
    _assert_none_left(before, "this module")


def _assert_none_left(before: set[threading.Thread], who: str) -> None:
    deadline = time.monotonic() + 2
    while (leaked := set(sqlite_workers()) - before) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not leaked, f"{len(leaked)} SQLite connection(s) left open by {who}"


def sqlite_workers() -> list[threading.Thread]:
    """aiosqlite's worker threads, one per open connection."""
    return [t for t in threading.enumerate() if "_connection_worker_thread" in t.name]
