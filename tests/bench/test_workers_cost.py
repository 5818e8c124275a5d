"""``bench/workers_cost.py --quick`` runs end to end: one process (memory
and Redis state) and ``--workers 2`` served under wrk, every answer a 200
(wrk's run fails on any other), each gateway drained with exit 0, and the
report holding a figure for each. No target is asserted (speed belongs to
the benchmark)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.redis_scratch import require_redis

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.mark.timeout(240)
def test_the_quick_run_measures_one_process_and_two_workers(tmp_path: Path) -> None:
    require_redis(REDIS_URL)
    if shutil.which("wrk") is None:
        reason = "wrk not found; `make tools` installs it"
        if os.environ.get("CI", "").lower() in ("true", "1"):
            pytest.fail(f"{reason}; on CI the workers benchmark must run")
        pytest.skip(reason)
    report = tmp_path / "workers.md"
    cmd = [sys.executable, "bench/workers_cost.py", "--quick", "--redis", REDIS_URL]
    cmd += ["--out", str(report)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=210)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    rows = [line for line in report.read_text().splitlines() if re.match(r"\| .*state \|", line)]
    assert [row.split("|")[1].strip() for row in rows] == [
        "1 process, memory state",
        "1 process, Redis state",
        "`--workers 2`, Redis state",
    ]
    for row in rows:
        throughput, gateway_cpu = (row.split("|")[i].strip() for i in (2, 4))
        assert float(throughput.replace(",", "")) > 0 and float(gateway_cpu) > 0, row
