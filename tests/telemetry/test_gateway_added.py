"""``interlock_gateway_added_seconds``: what the gateway adds on top of the
upstream, observed once per request a deployment answered."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from interlock.telemetry.metrics import Metrics
from interlock.telemetry.record import RequestRecord

NAME = "interlock_gateway_added_seconds"


def answered(duration_s: float, **stages: float) -> RequestRecord:
    done = RequestRecord("r", "POST", "/v1/chat/completions", status=200, deployment="dep-1")
    done.duration_s = duration_s
    done.stages.update(stages)
    return done


def sample(metrics: Metrics, suffix: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(NAME + suffix, labels)
    return 0.0 if value is None else value


def test_observed_once_per_answered_request_as_duration_less_upstream_and_streaming() -> None:
    metrics = Metrics()
    metrics.record_request(answered(0.5, admission=0.001, upstream=0.2, streaming=0.29), False)
    metrics.record_request(answered(0.003, upstream=0.001), True)
    assert sample(metrics, "_count") == 2
    assert sample(metrics, "_sum") == pytest.approx(0.01 + 0.002)
    assert sample(metrics, "_bucket", le="0.0025") == 1
    assert sample(metrics, "_bucket", le="0.025") == 2


def test_not_observed_for_requests_no_deployment_answered() -> None:
    metrics = Metrics()
    unrouted = RequestRecord("r", "GET", "/v1/models", status=200)
    unrouted.duration_s = 0.01
    metrics.record_request(unrouted, True)
    assert sample(metrics, "_count") == 0


def test_never_negative() -> None:
    metrics = Metrics()
    # Stage timers and the request's own clock can disagree by a hair.
    metrics.record_request(answered(0.1, upstream=0.1000001), False)
    assert sample(metrics, "_sum") == 0
    assert sample(metrics, "_bucket", le="0.0001") == 1


SCRIPT = """
from interlock.telemetry.metrics import Metrics
from interlock.telemetry.record import RequestRecord

metrics = Metrics()
assert metrics.multiprocess
for _ in range(3):
    done = RequestRecord("r", "POST", "/v1/chat/completions", status=200, deployment="d")
    done.duration_s = 0.004
    metrics.record_request(done, False)
print(metrics.render().decode())  # read back from the shared files
"""


def test_multiprocess_mode_aggregates_it(tmp_path: Path) -> None:
    # prometheus-client picks its value store at import: a fresh interpreter.
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert f"{NAME}_count 3.0" in done.stdout
    assert f'{NAME}_bucket{{le="0.005"}} 3.0' in done.stdout
