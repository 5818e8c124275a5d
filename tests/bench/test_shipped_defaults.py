"""The suite's "shipped defaults" gateway must be what a user gets from
``interlock serve`` with a models list and a key: nothing tuned."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from interlock.config import GatewayConfig, parse_config

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def stand() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("stand")
    finally:
        sys.path.remove(str(BENCH))


def test_the_defaults_config_holds_only_models_and_a_key(stand: ModuleType) -> None:
    options = stand.GatewayOptions(
        stream_models=("mock-stream-50x20",),
        max_connections=12_000,
        sections={"limits": {"max_in_flight": 12_000}},
        shipped_defaults=True,
    )
    raw = stand.gateway_config("http://127.0.0.1:9", options)
    assert set(raw) == {"models", "keys"}
    assert options.tag == "defaults"
    config = parse_config(raw, env={"BENCH_KEY": "sk-bench"})
    shipped = GatewayConfig.model_fields
    assert config.server == shipped["server"].get_default(call_default_factory=True)
    assert config.limits == shipped["limits"].get_default(call_default_factory=True)
    assert config.store.url is None and config.server.access_log
    assert [m.name for m in config.models] == ["mock", "mock-embed", "mock-stream-50x20"]
    pools = {d.max_connections for m in config.models for d in m.deployments}
    assert len(pools) == 1 and 12_000 not in pools


def test_the_tuned_config_turns_the_access_log_off(stand: ModuleType) -> None:
    raw = stand.gateway_config("http://127.0.0.1:9", stand.GatewayOptions(max_connections=12_000))
    config = parse_config(raw, env={"BENCH_KEY": "sk-bench"})
    assert not config.server.access_log
    assert {d.max_connections for m in config.models for d in m.deployments} == {12_000}
