"""``bench/infer_throughput.py --quick`` runs end to end: the fake v2 server, a
gateway with a registered version, every scenario under load, the routing
micro-benchmark, and a report. No target is asserted, only sane figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = 4


@pytest.mark.timeout(240)
def test_the_quick_run_measures_every_scenario(tmp_path: Path) -> None:
    # The driver's own client: wrk (the full run's) is not installed on CI.
    client = "aiohttp"
    out = tmp_path / "report.md"
    cmd = [sys.executable, "-m", "bench.infer_throughput", "--quick", "--client", client]
    cmd += ["--work-dir", str(tmp_path / "work"), "--out", str(out)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stdout + done.stderr

    figures = json.loads((tmp_path / "work" / "infer-throughput.json").read_text())
    assert figures["client"] == client
    [runs] = figures["runs"]
    assert [run["scenario"] for run in runs] == list(range(1, SCENARIOS + 1))
    for run in runs:
        load = run["load"]
        assert load["requests"] > 0 and load["errors"] == 0, run
        assert 0 < load["p50_ms"] <= load["p95_ms"] <= load["p99_ms"], run
        assert run["gateway_us"] > 0, run
    onnx = [run for run in runs if run["scenario"] != 3]
    assert all(run["batch_rows"] >= 1 for run in onnx), onnx
    assert runs[2]["upstream_pct"] > 0  # the kserve scenario reached the fake server
    for what in ("run", "choose"):
        assert all(ns > 0 for ns in figures["micro"][what].values()), figures["micro"]

    report = out.read_text()
    assert "| 4 | ONNX via the registry (admin API) |" in report
    assert report in done.stdout
