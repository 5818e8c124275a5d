"""``bench/dialects_cost.py --quick`` runs end to end: a served gateway under
wrk and one in process, every route unary and streamed, each answer a 200
(the benchmark fails on any other), and the report written. No target is
asserted (speed belongs to the benchmark), only that every route and mode
was measured."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROUTES = ("/v1/chat/completions", "/v1/messages", "/v1/responses")


@pytest.mark.timeout(240)
def test_the_quick_run_measures_every_dialect(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        reason = "wrk not found; `make tools` installs it"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{reason}; on CI the dialects benchmark must run")
        pytest.skip(reason)
    report = tmp_path / "dialects.md"
    cmd = [sys.executable, "bench/dialects_cost.py", "--quick", "--out", str(report)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=210)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    text = report.read_text()
    # Three tables (served CPU, served latency, in-process CPU), four routes each.
    rows = [line for line in text.splitlines() if line.startswith("| ") and "`/v1/" in line]
    assert len(rows) == 3 * 4
    for route in ROUTES:
        assert sum(f"`{route}`" in row for row in rows) >= 3, route
    for row in rows:
        figures = [float(f) for f in re.findall(r"\| ([0-9.]+) \|", row)]
        assert len(figures) == 2 and all(f > 0 for f in figures), row
