"""bench/telemetry_cost.py builds its gateways through the composition root:
a changed signature there must fail here, not months later in a bench run."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def telemetry_cost() -> Iterator[ModuleType]:
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("telemetry_cost")
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize(("access_log", "tracing"), [(False, False), (True, False), (True, True)])
async def test_each_variant_serves_one_request(
    telemetry_cost: ModuleType, access_log: bool, tracing: bool
) -> None:
    telemetry = telemetry_cost._telemetry(access_log, tracing)
    try:
        telemetry_cost._request(telemetry)
    finally:
        telemetry.shutdown()
