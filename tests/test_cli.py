"""The ``interlock`` command as a whole: exit statuses, the ``--json``
reports added with the Typer CLI, and a light start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from interlock.cli import main

VALID = (
    "models:\n  - name: sim\n    deployments:\n      - id: sim-1\n        provider: simulator\n"
    "keys:\n  - name: ops\n    key: sk-ops\n"
)


def test_usage_errors_exit_2_as_argparse_did(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["no-such-command"], ["keys"], ["serve", "--port", "http"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2, argv
    assert "No such command 'no-such-command'" in capsys.readouterr().err


def test_check_config_reports_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(VALID)
    assert main(["check-config", str(config), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {"config": str(config), "models": 1, "deployments": 1}


def test_chaos_list_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    from interlock.config.chaos import SCENARIOS

    assert main(["chaos", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in listed] == list(SCENARIOS)
    assert all(s["description"] and s["rule"] == SCENARIOS[s["name"]] for s in listed)


def test_building_the_cli_imports_no_heavy_module() -> None:
    """`interlock serve` pays for the CLI only: rich, the HTTP clients and the
    config models come with the commands that use them."""
    code = (
        "import sys; from interlock.cli.app import command; command(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} "
        "& {'rich', 'pydantic', 'sqlalchemy', 'uvicorn', 'http', 'yaml'}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert out.strip() == "[]"
