"""``bench/translate_stream.py --quick`` runs end to end: its upstream serves
every vendor's stream format, each adapter drains a stream, and the report
is written. No target is asserted (speed belongs to the benchmark), only
that every scenario streamed every delta and measured something."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_the_quick_run_measures_every_adapter(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "bench.translate_stream", "--quick"]
    cmd += ["--work-dir", str(tmp_path), "--out", str(tmp_path / "report.md")]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr

    figures = json.loads((tmp_path / "translate-stream.json").read_text())
    results = figures["results"]
    assert list(results) == [
        "openai (passthrough)",
        "anthropic text",
        "anthropic tool call",
        "gemini text",
        "bedrock text",
        "bedrock tool call",
    ]
    for name, got in results.items():
        # 200 deltas, plus the role chunk and the finish chunk (tool calls: the opening too).
        assert got["chunks"] >= figures["chunks"] + 2, name
        assert got["us_per_chunk"] > 0, name
    assert "| anthropic text |" in (tmp_path / "report.md").read_text()
